"""The contract between the stack and the functions: each synthesized function's environment, fed into that
function's own settings classes, validates; each database's own rules and thresholds reach it, and only it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from dbops import contract
from dbops.config.thresholds import Thresholds
from dbops.settings import FunctionSettings, HealthEnvironment, MaintenanceSettings
from tests.infra.conftest import BILLING_RULE, GUIDE_RULES, Synth, settings_dict, synth

# what each handler module builds from its environment (tests/unit/test_contract.py: every name they read)
SETTINGS_BY_HANDLER: dict[str, tuple[type[BaseSettings], ...]] = {
    "handlers.backup": (FunctionSettings,),
    "handlers.health": (FunctionSettings, HealthEnvironment),
    "handlers.maintenance": (MaintenanceSettings,),
    "handlers.restore": (FunctionSettings,),
    "handlers.rehearsal": (FunctionSettings,),
}


def _resolved(value: Any, name: str) -> str:
    """A CloudFormation token (Ref, Fn::GetAtt, Fn::Join) becomes a stand-in string, as deployed it is one."""
    return value if isinstance(value, str) else f"resolved-{name.lower()}"


def _environments(result: Synth) -> dict[str, tuple[str, dict[str, str]]]:
    """construct id -> (handler module, environment with tokens resolved), for every function of the stack."""
    found = {}
    for name, function in result.stack.functions.by_name.items():
        props = result.json["Resources"][result.logical_id(function)]["Properties"]
        env = {k: _resolved(v, k) for k, v in props["Environment"]["Variables"].items()}
        found[name] = (props["Handler"].rsplit(".", 1)[0], env)
    return found


def _load(cls: type[BaseSettings], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as patch:
        for key in os.environ:
            if key.startswith(contract.ENV_PREFIX):
                patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        return cls()


def _settings(result: Synth, name: str, cls: type[BaseSettings], monkeypatch: pytest.MonkeyPatch) -> Any:
    return _load(cls, _environments(result)[name][1], monkeypatch)


def test_every_functions_environment_validates_in_its_settings_classes(
    synthesized: Synth, monkeypatch: pytest.MonkeyPatch
) -> None:
    environments = _environments(synthesized)
    assert {"Backup", "Health", "Maintenance", "RestoreValidate", "RestoreDropExpiredCopies"} <= set(environments)
    for name, (module, env) in environments.items():
        assert module in SETTINGS_BY_HANDLER, f"{name}: {module} has no settings classes in this test"
        for cls in SETTINGS_BY_HANDLER[module]:
            settings = _load(cls, env, monkeypatch)
            databases = getattr(settings, "databases", None)
            if databases is not None:
                assert [db.name for db in databases] == ["sprint_reports_v2", "billing"], name
        # powertools' names come from the contract too
        assert env[contract.ENV_POWERTOOLS_METRICS_NAMESPACE] == contract.METRICS_NAMESPACE


def test_each_database_runs_its_own_maintenance_rules_and_no_others(
    synthesized: Synth, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings: MaintenanceSettings = _settings(synthesized, "Maintenance", MaintenanceSettings, monkeypatch)
    billing = settings.config_for("billing")
    assert [r.model_dump(by_alias=True, exclude_defaults=True) for r in billing.rules] == [BILLING_RULE]
    assert billing.rules_for("cleanup")[0].schema_name == "audit"
    assert billing.rules_for("archive") == []
    assert billing.lock_timeout_s == 2
    sprint = settings.config_for("sprint_reports_v2")
    assert [r.table for r in sprint.rules] == [r["table"] for r in GUIDE_RULES]
    assert sprint.lock_timeout_s == 5  # the default: billing's timeout is billing's alone
    # only the maintenance function carries the rules
    assert contract.ENV_MAINTENANCE_BY_DATABASE not in _environments(synthesized)["Backup"][1]


def test_each_database_gets_its_own_health_thresholds(synthesized: Synth, monkeypatch: pytest.MonkeyPatch) -> None:
    health: HealthEnvironment = _settings(synthesized, "Health", HealthEnvironment, monkeypatch)
    billing = health.for_database("billing", "bucket").thresholds
    assert (billing.connections_warn_percent, billing.connections_critical_percent) == (70, 85)
    assert billing.long_query_warn_seconds == Thresholds().long_query_warn_seconds
    assert health.for_database("sprint_reports_v2", "bucket").thresholds == Thresholds()


def test_each_database_gets_its_own_alarm_thresholds(synthesized: Synth) -> None:
    alarms = synthesized.stack.monitoring.alarms
    resources = synthesized.json["Resources"]

    def threshold(alarm_id: str) -> float:
        return float(resources[synthesized.logical_id(alarms[alarm_id])]["Properties"]["Threshold"])

    assert threshold("ConnectionsHigh-billing") == 80
    assert threshold("ConnectionsHigh-sprint_reports_v2") == 95
    assert threshold("BackupStale-billing") == 30
    assert threshold("BackupStale-sprint_reports_v2") == 26


def test_the_restore_swap_settings_reach_the_restore_steps(synthesized: Synth, monkeypatch: pytest.MonkeyPatch) -> None:
    settings: FunctionSettings = _settings(synthesized, "RestoreSwap", FunctionSettings, monkeypatch)
    limits = (settings.restore_lock_timeout_s, settings.restore_lock_wait_budget_s, settings.restore_max_pause_s)
    assert limits == (0.15, 30.0, 2.0)  # cdk.json restore: 150ms, 30s, 2s


def test_backup_runner_reaches_the_backup_function(synthesized: Synth, monkeypatch: pytest.MonkeyPatch) -> None:
    settings: FunctionSettings = _settings(synthesized, "Backup", FunctionSettings, monkeypatch)
    runners = {db.name: db.model_dump().get("backup_runner") for db in settings.databases}
    assert runners == {"sprint_reports_v2": "auto", "billing": "fargate"}


def test_a_database_without_maintenance_settings_gets_no_rules_own_schedules_and_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = settings_dict()
    del raw["databases"][0]["maintenance"]
    raw["databases"][1]["backup"] = {"schedule": "cron(0 23 * * ? *)"}
    raw["functions"] = {"backup": {"memory_mb": 3008}, "maintenance": {"memory_mb": 256}}
    result = synth(tmp_path, raw)

    maintenance: MaintenanceSettings = _settings(result, "Maintenance", MaintenanceSettings, monkeypatch)
    assert maintenance.config_for("sprint_reports_v2").rules == []  # never the guide's rules by default
    assert [r.table for r in maintenance.config_for("billing").rules] == ["audit_events"]

    rules = result.stack.schedules.rules
    targets = {
        name: (
            result.json["Resources"][result.logical_id(rule)]["Properties"]["ScheduleExpression"],
            json.loads(result.json["Resources"][result.logical_id(rule)]["Properties"]["Targets"][0]["Input"]),
        )
        for name, rule in rules.items()
        if name.startswith("Backup")
    }
    assert targets == {
        "Backup": ("cron(0 2 * * ? *)", {"kind": "nightly", "databases": ["sprint_reports_v2"]}),
        "Backup1": ("cron(0 23 * * ? *)", {"kind": "nightly", "databases": ["billing"]}),
    }

    memory = {
        name: result.json["Resources"][result.logical_id(f)]["Properties"]["MemorySize"]
        for name, f in result.stack.functions.by_name.items()
    }
    assert (memory["Backup"], memory["Maintenance"], memory["Health"], memory["RestoreStage"]) == (3008, 256, 512, 2048)
