"""The rehearsal task, secret, step functions and states (mode rehearse), as synthesized from settings where
sprint_reports_v2 has `rehearsal` (tests/infra/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.settings import SettingsError, load_settings
from tests.infra.conftest import Synth, make_base_dir, settings_dict

SECRET_NAME = "dbops-test/sprint_reports_v2/rehearsal"


def _task_definition(synthesized: Synth) -> dict[str, Any]:
    [task] = [
        r
        for r in synthesized.resources("AWS::ECS::TaskDefinition").values()
        if {c["Name"] for c in r["Properties"]["ContainerDefinitions"]} == {"watcher", "migration"}
    ]
    return task


def _secret_id(synthesized: Synth) -> str:
    secrets = synthesized.resources("AWS::SecretsManager::Secret")
    [lid] = [k for k, v in secrets.items() if v["Properties"]["Name"] == SECRET_NAME]
    return lid


def test_the_migration_and_the_watcher_get_the_url_from_the_secret_never_from_the_environment(
    synthesized: Synth,
) -> None:
    containers = {c["Name"]: c for c in _task_definition(synthesized)["Properties"]["ContainerDefinitions"]}
    migration, watcher = containers["migration"], containers["watcher"]
    secret = {"Ref": _secret_id(synthesized)}
    assert migration["Secrets"] == [{"Name": "SQLALCHEMY_URL", "ValueFrom": {"Fn::Join": ["", [secret, ":url::"]]}}]
    assert watcher["Secrets"] == [{"Name": "DBOPS_REHEARSAL_URL", "ValueFrom": {"Fn::Join": ["", [secret, ":url::"]]}}]
    assert migration["Environment"] == [{"Name": "APP_ENV", "Value": "rehearsal"}]
    assert "postgresql://" not in json.dumps(containers)
    # the watcher starts first and the migration waits until it samples
    assert migration["Essential"] is True and watcher["Essential"] is False
    assert migration["DependsOn"] == [{"ContainerName": "watcher", "Condition": "HEALTHY"}]
    assert "dbops-watching" in watcher["HealthCheck"]["Command"][1]
    assert migration["Command"] == ["alembic", "-c", "/app/alembic.ini", "upgrade", "head"]
    assert watcher["Command"] == ["python", "-m", "handlers.rehearsal_watch"]


def test_the_secret_is_encrypted_with_the_backup_key(synthesized: Synth) -> None:
    secret = synthesized.resources("AWS::SecretsManager::Secret")[_secret_id(synthesized)]
    key = synthesized.logical_id(synthesized.stack.storage.key)
    assert secret["Properties"]["KmsKeyId"] == {"Fn::GetAtt": [key, "Arn"]}
    # ECS reads it with the task's execution role, which may decrypt with that key (its key policy says so)
    execution_role = _task_definition(synthesized)["Properties"]["ExecutionRoleArn"]["Fn::GetAtt"][0]
    key_policy = json.dumps(synthesized.json["Resources"][key]["Properties"]["KeyPolicy"])
    assert execution_role in key_policy
    statements = _statements_of_role(synthesized, execution_role)
    reads = [s for s in statements if "secretsmanager:GetSecretValue" in s["Action"]]
    assert [s["Resource"] for s in reads] == [{"Ref": _secret_id(synthesized)}]


def _statements_of_role(synthesized: Synth, role: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in synthesized.resources("AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_the_task_may_only_write_the_watchers_observations(synthesized: Synth) -> None:
    task_role = _task_definition(synthesized)["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    statements = _statements_of_role(synthesized, task_role)
    actions = sorted(a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))
    assert actions == ["kms:GenerateDataKey", "s3:PutObject"]
    [put] = [s for s in statements if s["Action"] == "s3:PutObject"]
    assert put["Resource"]["Fn::Join"][1][-1] == "/rehearsals/sprint_reports_v2/*"


def test_only_the_rehearsal_steps_may_write_the_secret(synthesized: Synth) -> None:
    writers = {
        lid
        for lid, policy in synthesized.resources("AWS::IAM::Policy").items()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if "secretsmanager:PutSecretValue" in s["Action"]
    }
    assert writers and all(lid.startswith("FunctionsRehearsal") for lid in writers)
    assert len(writers) == 5
    functions = synthesized.resources("AWS::Lambda::Function")
    [prepare] = [f for f in functions.values() if f["Properties"]["Handler"] == "handlers.rehearsal.prepare"]
    databases = prepare["Properties"]["Environment"]["Variables"]["DBOPS_DATABASES"]
    text = databases if isinstance(databases, str) else json.dumps(databases)
    assert SECRET_NAME in text and '"max_lock_s":3.0' in text and '"max_duration_s":1200.0' in text


def test_the_state_machine_runs_the_task_with_the_runs_command_and_limit(synthesized: Synth) -> None:
    [machine] = [
        m for lid, m in synthesized.resources("AWS::StepFunctions::StateMachine").items() if lid.startswith("Restore")
    ]
    definition = json.dumps(machine["Properties"]["DefinitionString"])
    for state in ("RestoreOrRehearse", "PrepareRehearsal", "FillWhere", "FillOnFargate", "SurveyScratch",
                  "WhichMigration", "RunMigration-Rehearsal0", "AfterRun", "NextRun", "JudgeRehearsal", "Verdict",
                  "RehearsalCleanup"):  # fmt: skip
        assert f'\\"{state}\\"' in definition, state
    assert '\\"TimeoutSecondsPath\\":\\"$.run_timeout_s\\"' in definition
    assert '\\"Command.$\\":\\"$.run_command\\"' in definition


def test_rehearsals_need_the_watcher_image_and_a_vpc(tmp_path: Path) -> None:
    settings = settings_dict()
    del settings["restore_task_image"]
    with pytest.raises(SettingsError, match="rehearsal settings: rehearsals run on Fargate"):
        load_settings(settings, make_base_dir(tmp_path))
