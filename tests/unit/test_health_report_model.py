"""The report model: worst-first order, the overall status, exit codes, metric names and units, the text."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dbops.health import HealthReport, ProbeResult, Status, format_report
from dbops.health.model import metric_name, metric_unit


def report(*statuses: Status) -> HealthReport:
    probes = [
        ProbeResult(name=f"p{i}", status=s, message=f"{s.value} thing", values={f"v{i}_percent": i}, details=["d"])
        for i, s in enumerate(statuses)
    ]
    return HealthReport(
        database="db",
        checked_at=datetime(2026, 1, 1, tzinfo=UTC),
        seconds=0.1,
        probes=sorted(probes, key=lambda p: -p.status.rank),
    )


@pytest.mark.parametrize(
    ("statuses", "status", "exit_code"),
    [
        ((Status.OK, Status.OK), Status.OK, 0),
        ((Status.OK, Status.UNKNOWN), Status.OK, 0),  # a probe that does not apply changes nothing
        ((Status.OK, Status.WARN), Status.WARN, 1),
        ((Status.WARN, Status.CRITICAL), Status.CRITICAL, 2),
        ((Status.WARN, Status.ERROR), Status.WARN, 3),  # a probe that failed may hide worse: 3 beats warn
        ((Status.ERROR, Status.CRITICAL), Status.CRITICAL, 2),  # ... but not a certain critical
    ],
)
def test_status_and_exit_code(statuses: tuple[Status, ...], status: Status, exit_code: int) -> None:
    r = report(*statuses)
    assert r.status is status
    assert r.exit_code == exit_code


def test_health_status_metric_is_0_1_2_and_errors_are_counted_apart() -> None:
    r = report(Status.WARN, Status.ERROR, Status.OK)
    metrics = {m.name: m for m in r.metrics()}
    assert metrics["HealthStatus"].value == 1
    assert metrics["HealthProbeErrors"].value == 1
    assert metrics["V0Percent"].unit == "Percent"


@pytest.mark.parametrize(
    ("key", "name", "unit"),
    [
        ("connections_used_percent", "ConnectionsUsedPercent", "Percent"),
        ("blocked_queries", "BlockedQueries", "Count"),
        ("xid_wraparound_age", "XidWraparoundAge", "Count"),
        ("backup_age_hours", "BackupAgeHours", "None"),
        ("database_size_bytes", "DatabaseSizeBytes", "Bytes"),
        ("round_trip_ms", "RoundTripMs", "Milliseconds"),
        ("longest_lock_wait_seconds", "LongestLockWaitSeconds", "Seconds"),
    ],
)
def test_value_keys_map_to_the_metric_contract(key: str, name: str, unit: str) -> None:
    assert (metric_name(key), metric_unit(key)) == (name, unit)


def test_a_value_key_used_twice_is_refused() -> None:
    r = report(Status.OK, Status.OK)
    r.probes[1].values = dict(r.probes[0].values)
    with pytest.raises(ValueError, match="not a unique snake_case name"):
        r.metrics()


def test_text_report_is_worst_first_with_details_for_problems_only() -> None:
    text = format_report(report(Status.OK, Status.CRITICAL, Status.UNKNOWN))
    lines = text.splitlines()
    assert lines[0] == "Health of db at 2026-01-01 00:00:00 UTC: CRITICAL — 1 critical, 1 unknown, 1 ok in 0.10s"
    assert lines[1].split() == ["CRITICAL", "p1", "critical", "thing"]
    assert lines[2].split() == ["·", "d"]
    assert lines[3].split()[:2] == ["UNKNOWN", "p2"]
    assert lines[5].split()[:2] == ["OK", "p0"]
    assert len(lines) == 6  # the ok probe's detail is not shown
