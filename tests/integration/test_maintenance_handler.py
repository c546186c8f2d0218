"""The maintenance Lambda handler run with a real scheduled event: EMF metrics per database and task."""

from __future__ import annotations

import json

import pytest

from dbops.connection import ConnectionSpec, connect
from dbops.local.lambda_runtime import LocalLambdaContext, scheduled_event
from dbops.maintenance import DEFAULT_RULES, MaintenanceConfig
from handlers.maintenance import handler
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
