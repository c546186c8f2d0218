"""cdk.json settings: defaults from the guide, and every mistake named with its path before anything is built."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.schedule_settings import check_schedule
from infra.settings import SettingsError, load_settings
from tests.infra.conftest import make_base_dir, settings_dict

ROOT = Path(__file__).resolve().parents[2]


def _load(raw: dict[str, Any], tmp_path: Path) -> Any:
    settings, _ = load_settings(raw, make_base_dir(tmp_path))
    return settings


def test_the_shipped_cdk_json_is_valid_and_keeps_the_guides_defaults() -> None:
    context = json.loads((ROOT / "cdk.json").read_text())["context"]["dbops"]
    settings, _ = load_settings(context, ROOT)
    assert settings.architecture == "arm64"
    assert settings.retention_days.nightly == 30
    assert settings.retention_days.keep_newest_verified == 3
    assert settings.schedules.backup == "cron(0 2 * * ? *)"
    assert settings.alarms.thresholds.backup_age_hours == 26


def test_minimal_settings_get_verify_full_defaults_and_need_a_ca_bundle(tmp_path: Path) -> None:
    raw = {"databases": [{"name": "app", "secret_arn": settings_dict()["databases"][0]["secret_arn"]}]}
    with pytest.raises(SettingsError, match=r"dbops\.databases\.0: sslmode verify-full needs ca_bundle"):
        _load(raw, tmp_path)
    raw["databases"][0]["ca_bundle"] = "test-ca.pem"
    settings = _load(raw, tmp_path)
    assert settings.databases[0].function_config()["sslrootcert"] == "/opt/certs/test-ca.pem"
    assert settings.placement() is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda s: s["databases"][0].update(secret_arn="dbops/secret"),
            r"dbops\.databases\.0\.secret_arn: String should match",
        ),
        (lambda s: s["databases"][0]["vpc"].update(subnet_ids=["subnet-1"]), r"'subnet-1' is not a subnet id"),
        (lambda s: s["databases"][1]["vpc"].update(vpc_id="vpc-0123456789abcdef0"), r"different VPCs"),
        (lambda s: s["databases"][1].pop("vpc"), r"either every database has a vpc placement or none"),
        (lambda s: s["databases"][1].update(name="sprint_reports_v2"), r"repeated: sprint_reports_v2"),
        (lambda s: s["schedules"].update(backup="cron(0 2 * * *)"), r"6 fields"),
        (lambda s: s["schedules"].update(health="rate(1 minutes)"), r"rate\(1 minute\)"),
        (lambda s: s["schedules"].update(health="every 5 minutes"), r"not an EventBridge schedule"),
        (lambda s: s["retention_days"].update(logs=45), r"retention_days\.logs: 45 is not a CloudWatch Logs retention"),
        (
            lambda s: s["retention_days"].update(keep_newest_verified=0),
            r"retention_days\.keep_newest_verified: Input should be greater than or equal to 1",
        ),
        (lambda s: s["alarms"].update(topic_arn="arn:aws:sns:eu-west-1:123456789012:ops"), r"not both"),
        (lambda s: s.update(architecture="sparc"), r"dbops\.architecture: Input should be 'arm64' or 'x86_64'"),
        (lambda s: s.update(databses=[]), r"dbops\.databses: Extra inputs are not permitted"),
        (lambda s: s["databases"][0].update(ca_bundle="missing.pem"), r"ca_bundle 'missing.pem' is not a file in"),
        (lambda s: s["databases"][0].update(ca_bundle="../etc/passwd"), r"give a \.pem or \.crt file name"),
        # per-database settings, each named by its path
        (
            lambda s: s["databases"][1]["maintenance"]["rules"][0].update(table=""),
            r"dbops\.databases\.1\.maintenance\.rules\.0\.table: String should match pattern",
        ),
        (
            lambda s: s["databases"][0]["maintenance"]["rules"][1].update(mode="drop"),
            r"dbops\.databases\.0\.maintenance\.rules\.1\.mode: Input should be 'delete' or 'archive'",
        ),
        (
            lambda s: s["databases"][1]["maintenance"].update(lock_retries=50),
            r"dbops\.databases\.1\.maintenance\.lock_retries: Input should be less than or equal to 10",
        ),
        (
            lambda s: s["databases"][1]["health_thresholds"].update(connections_warn_percent=120),
            r"dbops\.databases\.1\.health_thresholds\.connections_warn_percent: Input should be less than or equal",
        ),
        (
            lambda s: s["databases"][1]["health_thresholds"].update(connections_warn_percent=90),
            r"dbops\.databases\.1\.health_thresholds: warning must come before critical",
        ),
        (
            lambda s: s["databases"][1]["health_thresholds"].update(conections_warn_percent=90),
            r"dbops\.databases\.1\.health_thresholds\.conections_warn_percent: Extra inputs are not permitted",
        ),
        (
            lambda s: s["databases"][1]["alarms"]["thresholds"].update(connections_used_percent=0),
            r"dbops\.databases\.1\.alarms\.thresholds\.connections_used_percent: Input should be greater than 0",
        ),
        (
            lambda s: s["databases"][1]["backup"].update(schedule="cron(0 2 * * *)"),
            r"dbops\.databases\.1\.backup\.schedule: .*6 fields",
        ),
        (
            lambda s: s["databases"][1]["backup"].update(format="fast"),
            r"dbops\.databases\.1\.backup\.format: Input should be 'single', 'parallel' or 'auto'",
        ),
        (
            lambda s: s["databases"][1]["backup"].update(max_streams=0),
            r"dbops\.databases\.1\.backup\.max_streams: Input should be greater than or equal to 1",
        ),
        (
            lambda s: s["databases"][1]["backup"].update(runner="ec2"),
            r"dbops\.databases\.1\.backup\.runner: Input should be 'auto', 'lambda' or 'fargate'",
        ),
        (
            lambda s: s["databases"][1]["alarms"]["thresholds"].update(backup_age_hours=169),
            r"dbops\.databases\.1\.alarms\.thresholds\.backup_age_hours: Input should be less than or equal to 168",
        ),
        (  # billing alarms after 30 hours without a backup
            lambda s: s["databases"][1]["backup"].update(schedule="rate(2 days)"),
            r"database billing: its backups run every 48 hours \(rate\(2 days\)\) but BackupMissing alarms after 30",
        ),
        (
            lambda s: s.update(functions={"backup": {"memory_mb": 64}}),
            r"dbops\.functions\.backup\.memory_mb: Input should be greater than or equal to 128",
        ),
    ],
)
def test_a_bad_setting_is_refused_with_its_path(tmp_path: Path, change: Any, message: str) -> None:
    raw = settings_dict()
    change(raw)
    with pytest.raises(SettingsError, match=message):
        _load(raw, tmp_path)


def test_missing_context_says_where_settings_go(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r'cdk\.json has no "dbops" object'):
        load_settings(None, tmp_path)


def test_placement_joins_the_databases_subnets_and_groups_in_order(tmp_path: Path) -> None:
    placement = _load(settings_dict(), tmp_path).placement()
    assert placement.subnet_ids == [
        "subnet-0a1b2c3d4e5f60001",
        "subnet-0a1b2c3d4e5f60002",
        "subnet-0a1b2c3d4e5f60003",
    ]
    assert placement.security_group_ids == ["sg-0a1b2c3d4e5f60001", "sg-0a1b2c3d4e5f60002"]


@pytest.mark.parametrize(
    "good", ["rate(1 minute)", "rate(5 minutes)", "rate(2 days)", "cron(0 2 * * ? *)", "cron(0 4 ? * SUN *)"]
)
def test_valid_schedule_expressions(good: str) -> None:
    assert check_schedule(good) == good


def test_backup_schedules_group_the_databases_on_the_stacks_schedule(tmp_path: Path) -> None:
    raw = settings_dict()
    assert [(b.name, b.expression, b.databases) for b in _load(raw, tmp_path).backup_schedules()] == [
        ("Backup", "cron(0 2 * * ? *)", None)  # every database: the state machine's own default
    ]
    raw["databases"][0]["backup"] = {"schedule": "off"}
    raw["databases"][1]["backup"] = {"schedule": "rate(12 hours)"}
    settings = _load(raw, tmp_path)
    assert [(b.name, b.expression, b.databases) for b in settings.backup_schedules()] == [
        ("Backup1", "rate(12 hours)", ("billing",))
    ]
    # BackupMissing watches the scheduled ones only: sprint_reports_v2 is backed up on request
    assert settings.scheduled_backups() == {"billing": "rate(12 hours)"}


def test_the_shipped_cdk_json_gives_the_sample_database_the_guides_rules() -> None:
    context = json.loads((ROOT / "cdk.json").read_text())["context"]["dbops"]
    settings, _ = load_settings(context, ROOT)
    (database,) = settings.databases
    assert [r.table for r in database.maintenance.rules] == ["report_snapshots", "sprints"]


def test_restore_swap_settings_read_durations_and_keep_the_lock_timeout_under_the_deadlock_timeout() -> None:
    from pydantic import ValidationError

    from infra.restore_settings import RestoreSettings

    assert RestoreSettings().environment() == {
        "DBOPS_RESTORE_LOCK_TIMEOUT_S": "0.2",
        "DBOPS_RESTORE_LOCK_WAIT_BUDGET_S": "60",
        "DBOPS_RESTORE_MAX_PAUSE_S": "5",
    }
    assert RestoreSettings(lock_timeout="50ms", max_pause="1m").environment()["DBOPS_RESTORE_MAX_PAUSE_S"] == "60"
    for bad in ({"lock_timeout": "1s"}, {"lock_timeout": 0}, {"lock_wait_budget": "11m"}, {"max_pause": "5"}):
        with pytest.raises(ValidationError):
            RestoreSettings.model_validate(bad)
