"""The maintenance Lambda handler run with a real scheduled event: EMF metrics per database and task."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from dbops.maintenance import DEFAULT_RULES, MaintenanceConfig
from dbops.postgres.connection import ConnectionSpec, connect
from handlers.maintenance import handler
from local_stack.lambda_runtime import LocalLambdaContext, scheduled_event
from tests.integration.maintenance_helpers import execute
from tests.support import emf_metrics


def _configure(monkeypatch: pytest.MonkeyPatch, spec: ConnectionSpec, config: MaintenanceConfig) -> None:
    assert spec.password is not None
    url = f"postgresql://{spec.user}:{spec.password.get_secret_value()}@{spec.host}:{spec.port}/{spec.dbname}"
    monkeypatch.setenv("DBOPS_DATABASES", json.dumps([{"name": "sprint_reports", "url": url}]))
    monkeypatch.setenv("DBOPS_MAINTENANCE", config.model_dump_json())


def _metrics(stdout: str) -> dict[str, tuple[float, dict[str, str]]]:
    """name -> (value, dimensions); EMF carries each value as a list of one."""
    found = {}
    for m in emf_metrics(stdout):
        (value,) = m["value"] if isinstance(m["value"], list) else [m["value"]]
        found[m["name"]] = (value, m["dimensions"])
    return found


def _expired(spec: ConnectionSpec) -> int:
    with connect(spec) as conn:
        row = conn.execute(
            "SELECT count(*) FROM report_snapshots WHERE created_at < now() - interval '6 months' AND NOT is_baseline"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_scheduled_cleanup_emits_task_metrics_and_returns_the_summary(
    sample_db: ConnectionSpec, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    expired = _expired(sample_db)
    _configure(
        monkeypatch, sample_db, MaintenanceConfig(rules=[DEFAULT_RULES[0].model_copy(update={"batch_size": 500})])
    )

    response = handler(scheduled_event("dbops-maintenance-cleanup", {"task": "cleanup"}), LocalLambdaContext())

    (summary,) = response["summaries"]
    assert (summary["task"], summary["database"], summary["failed"], summary["rows_deleted"]) == (
        "cleanup",
        "sprint_reports",
        0,
        expired,
    )
    assert _expired(sample_db) == 0
    metrics = _metrics(capsys.readouterr().out)
    assert set(metrics) == {"MaintenanceFailed", "RowsDeleted", "RowsArchived", "DurationSeconds"}
    assert all(dims == {"database": "sprint_reports", "task": "cleanup"} for _, dims in metrics.values())
    assert (metrics["MaintenanceFailed"][0], metrics["RowsDeleted"][0], metrics["RowsArchived"][0]) == (0, expired, 0)


def test_refused_rule_is_a_failure_metric_and_changes_nothing(
    sample_db: ConnectionSpec, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    expired = _expired(sample_db)
    bad = DEFAULT_RULES[0].model_copy(update={"keep": "is_baseline OR"})
    _configure(monkeypatch, sample_db, MaintenanceConfig(rules=[bad]))

    response = handler({"task": "cleanup", "database": "sprint_reports"}, LocalLambdaContext())

    (summary,) = response["summaries"]
    assert summary["failed"] == 1 and "rules refused" in summary["error"]
    assert _expired(sample_db) == expired
    assert _metrics(capsys.readouterr().out)["MaintenanceFailed"][0] == 1


def test_dry_run_invoke_plans_without_changes(
    sample_db: ConnectionSpec, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    expired = _expired(sample_db)
    _configure(monkeypatch, sample_db, MaintenanceConfig())

    response = handler({"task": "archive", "dry_run": True}, LocalLambdaContext())

    (summary,) = response["summaries"]
    assert summary["dry_run"] and [o["status"] for o in summary["objects"]] == ["planned"]
    assert _expired(sample_db) == expired
    with connect(sample_db) as conn:
        assert conn.execute("SELECT to_regclass('sprints_archive')").fetchone() == (None,)


def _url(spec: ConnectionSpec) -> str:
    assert spec.password is not None
    return f"postgresql://{spec.user}:{spec.password.get_secret_value()}@{spec.host}:{spec.port}/{spec.dbname}"


def test_each_database_runs_its_own_cleanup_rule_from_the_stacks_settings(
    make_database: Callable[..., ConnectionSpec], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three databases as cdk.json configures them: Sprint Reports with the guide's rules, an audit database whose
    one rule names its own table, and one with no maintenance settings. The maintenance environment is the one
    the stack synthesizes (infra.settings); cleanup runs each database's own rule and no other."""
    from infra.settings import StackSettings
    from tests.infra.conftest import BILLING_RULE, GUIDE_RULES, secret_arn

    sprint, audit, plain = make_database(), make_database(empty=True), make_database(empty=True)
    execute(
        audit,
        "CREATE SCHEMA audit",
        "CREATE TABLE audit.audit_events (id bigserial PRIMARY KEY, recorded_at timestamptz NOT NULL, what text)",
        "INSERT INTO audit.audit_events (recorded_at, what) "
        "SELECT now() - make_interval(days => d), 'event ' || d FROM generate_series(0, 59) AS d",
    )
    expired_snapshots = _expired(sprint)
    assert expired_snapshots > 0
    stack = StackSettings.model_validate(
        {
            "databases": [
                {
                    "name": "sprint_reports",
                    "secret_arn": secret_arn("sprint_reports"),
                    "sslmode": "disable",
                    "maintenance": {"rules": GUIDE_RULES},
                },
                {
                    "name": "audit",
                    "secret_arn": secret_arn("audit"),
                    "sslmode": "disable",
                    "maintenance": {"rules": [BILLING_RULE]},
                },
                {"name": "plain", "secret_arn": secret_arn("plain"), "sslmode": "disable"},
            ]
        }
    )
    monkeypatch.setenv(
        "DBOPS_DATABASES",
        json.dumps(
            [{"name": n, "url": _url(s)} for n, s in (("sprint_reports", sprint), ("audit", audit), ("plain", plain))]
        ),
    )
    monkeypatch.setenv("DBOPS_MAINTENANCE_BY_DATABASE", stack.maintenance_by_database_json())
    monkeypatch.delenv("DBOPS_MAINTENANCE", raising=False)

    response = handler(scheduled_event("dbops-maintenance-cleanup", {"task": "cleanup"}), LocalLambdaContext())

    by_db = {s["database"]: s for s in response["summaries"]}
    assert [s["failed"] for s in by_db.values()] == [0, 0, 0]
    assert [o["name"] for o in by_db["sprint_reports"]["objects"]] == [GUIDE_RULES[0]["name"]]
    assert by_db["sprint_reports"]["rows_deleted"] == expired_snapshots
    assert _expired(sprint) == 0
    # the audit database ran its own rule, on its own table, and the guide's rule was never tried there
    assert [o["name"] for o in by_db["audit"]["objects"]] == [BILLING_RULE["name"]]
    with connect(audit) as conn:
        assert conn.execute(
            "SELECT count(*), min(recorded_at) > now() - interval '30 days 1 minute' FROM audit.audit_events"
        ).fetchone() == (30, True)
    assert by_db["audit"]["rows_deleted"] == 30  # days 30 to 59
    # no rules of its own: nothing to clean, and no one else's rules
    assert by_db["plain"]["objects"] == [] and by_db["plain"]["rows_deleted"] == 0
    metrics = [m for m in emf_metrics(capsys.readouterr().out) if m["name"] == "MaintenanceFailed"]
    assert sorted(m["dimensions"]["database"] for m in metrics) == ["audit", "plain", "sprint_reports"]
