"""The healthy case: every probe runs and reports ok on a sound database, with the metric contract's values."""

from __future__ import annotations

from dbops.health import Status, format_report
from dbops.health.probes import PROBE_NAMES
from dbops.postgres.connection import ConnectionSpec
from tests.integration.health_helpers import check

CONTRACT = {"HealthStatus", "HealthProbeErrors", "ConnectionsUsedPercent", "BlockedQueries", "XidWraparoundAge"}


def test_healthy_database_reports_ok_on_every_probe_that_applies(sample_db: ConnectionSpec) -> None:
    report = check(sample_db)

    assert [p.name for p in report.probes if p.status is not Status.OK] == ["slow_queries", "backup_freshness"]
    assert {p.status for p in report.probes if p.status is not Status.OK} == {Status.UNKNOWN}  # no extension, bucket
    assert sorted(p.name for p in report.probes) == sorted(PROBE_NAMES)
    assert report.status is Status.OK
    assert report.exit_code == 0
    assert report.server_version
    assert report.probe("wal_archiving").message.startswith("archive_mode is off")
    assert report.probe("connections").values["connections_used"] >= 1  # type: ignore[operator]


def test_every_probe_value_becomes_one_uniquely_named_metric(sample_db: ConnectionSpec) -> None:
    report = check(sample_db)

    metrics = report.metrics()
    names = [m.name for m in metrics]
    assert len(names) == len(set(names))
    assert set(names) >= CONTRACT
    assert {m.name: m.value for m in metrics}["HealthStatus"] == 0
    assert {m.name: m.unit for m in metrics}["ConnectionsUsedPercent"] == "Percent"
    values = sum(1 for p in report.probes for v in p.values.values() if v is not None)
    assert len(metrics) == values + 2


def test_readable_report_lists_worst_first_and_details_only_for_problems(sample_db: ConnectionSpec) -> None:
    report = check(sample_db, xid_age_warn=1, xid_age_critical=2_000_000_000)

    lines = format_report(report).splitlines()

    assert lines[0].startswith(f"Health of {sample_db.dbname} (PostgreSQL ")
    assert ": WARN — 1 warn, 2 unknown, 24 ok in " in lines[0]
    assert lines[1].startswith("WARN      wraparound")
    assert lines[2].strip().startswith("· database ")
    assert not any(line.strip().startswith("· public.") for line in lines)  # sizes is ok: no details
