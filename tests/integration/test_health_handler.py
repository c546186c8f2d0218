"""The health Lambda handler on a real scheduled event: EMF metrics per database, the report logged and
returned, configuration from DBOPS_* variables."""

from __future__ import annotations

import json

import pytest

from dbops.postgres.connection import ConnectionSpec
from handlers.health import handler
from local_stack.postgres import LocalPostgres
from tests.integration.test_health_backups import DATABASE, write_backup
from tests.support import LocalLambdaContext, emf_metrics, scheduled_event

CONTRACT = {
    "HealthStatus",
    "HealthProbeErrors",
    "BackupAgeHours",
    "ConnectionsUsedPercent",
    "BlockedQueries",
    "XidWraparoundAge",
}


@pytest.fixture
def configured(
    sample_db: ConnectionSpec, pg: LocalPostgres, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> LocalPostgres:
    databases = [{"name": DATABASE, "url": pg.url(sample_db.dbname)}, {"name": "unreachable", "url": pg.url("nope")}]
    monkeypatch.setenv("DBOPS_BUCKET", bucket)
    monkeypatch.setenv("DBOPS_DATABASES", json.dumps(databases))
    monkeypatch.setenv(
        "DBOPS_HEALTH_THRESHOLDS", json.dumps({"backup_age_warn_hours": 2, "backup_age_critical_hours": 3})
    )
    return pg


def test_scheduled_event_checks_every_database_and_emits_the_contract_metrics(
    configured: LocalPostgres, bucket: str, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    write_backup(bucket, hours_ago=2.5, verified=True)  # past the RPO set through the environment

    result = handler(scheduled_event("dbops-health"), LocalLambdaContext())

    out = capfd.readouterr().out
    assert configured.password not in out
    metrics = emf_metrics(out)
    ours = {m["name"]: m["value"][0] for m in metrics if m["dimensions"] == {"database": DATABASE}}
    assert set(ours) >= CONTRACT
    assert ours["HealthStatus"] == 1  # the backup is 2.5 h old: a warning under these thresholds
    assert ours["BackupAgeHours"] == pytest.approx(2.5, abs=0.05)
    assert ours["HealthProbeErrors"] == 0
    assert ours["BlockedQueries"] == 0
    unreachable = {m["name"]: m["value"][0] for m in metrics if m["dimensions"] == {"database": "unreachable"}}
    assert unreachable["HealthStatus"] == 2  # the database does not exist: connectivity is critical
    assert "ConnectionsUsedPercent" not in unreachable  # probes that did not run emit nothing

    [first, second] = result["reports"]
    assert (first["database"], first["status"]) == (DATABASE, "warn")
    assert first["probes"][0]["name"] == "backup_freshness"
    assert (second["database"], second["status"]) == ("unreachable", "critical")
    logged = [r.__dict__ for r in caplog.records if r.getMessage() == "health report"]
    assert [(entry["database"], entry["status"]) for entry in logged] == [
        (DATABASE, "warn"),
        ("unreachable", "critical"),
    ]
    assert logged[0]["report"]["probes"] == first["probes"]
    assert configured.password not in json.dumps([entry["report"] for entry in logged])


def test_direct_invoke_names_one_database(configured: LocalPostgres, capfd: pytest.CaptureFixture[str]) -> None:
    result = handler({"database": DATABASE}, LocalLambdaContext())

    assert [r["database"] for r in result["reports"]] == [DATABASE]
    names = {m["dimensions"]["database"] for m in emf_metrics(capfd.readouterr().out)}
    assert names == {DATABASE}


def test_unknown_database_is_refused_before_any_work(configured: LocalPostgres) -> None:
    with pytest.raises(Exception, match="unknown database 'other'"):
        handler({"database": "other"}, LocalLambdaContext())
