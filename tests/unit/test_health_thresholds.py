"""Thresholds: the documented defaults, warning before critical, overrides from the environment."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError

from dbops.health import Status, Thresholds
from dbops.health.thresholds import grade, grade_low
from dbops.settings import HealthEnvironment


def test_defaults_come_from_check_postgres_and_pghero() -> None:
    t = Thresholds()
    assert (t.long_query_warn_seconds, t.long_query_critical_seconds) == (60, 300)
    assert (t.connections_warn_percent, t.connections_critical_percent) == (90, 95)
    assert (t.lock_wait_warn_seconds, t.lock_wait_critical_seconds) == (60, 120)
    assert (t.xid_age_warn, t.xid_age_critical) == (1_300_000_000, 1_400_000_000)
    assert t.sequence_warn_percent == 90
    assert t.cache_hit_warn_percent == 99
    assert t.unused_index_min_bytes == 10 * 1024 * 1024
    assert (t.slow_query_min_calls, t.slow_query_warn_ms) == (100, 20)
    assert (t.vacuum_age_warn_seconds, t.vacuum_age_critical_seconds) == (86_400, 172_800)
    assert (t.backup_age_warn_hours, t.backup_age_critical_hours) == (24, 26)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"connections_warn_percent": 96}, "connections_warn_percent (96.0) is above connections_critical_percent"),
        ({"cache_hit_critical_percent": 99.5}, "cache_hit_warn_percent (99.0) is below cache_hit_critical_percent"),
        ({"xid_age_warn": 1_500_000_000}, "xid_age_warn (1500000000) is above xid_age_critical"),
        ({"backup_age_critical_hours": 12}, "backup_age_warn_hours (24.0) is above backup_age_critical_hours"),
        ({"connection_warn_percent": 80}, "Extra inputs are not permitted"),
        ({"connections_warn_percent": 120}, "less than or equal to 100"),
    ],
)
def test_inconsistent_or_unknown_thresholds_are_refused_clearly(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        Thresholds.model_validate(overrides)


def test_environment_overrides_thresholds_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBOPS_HEALTH_THRESHOLDS", json.dumps({"connections_warn_percent": 80}))
    monkeypatch.setenv("DBOPS_HEALTH_STATEMENT_TIMEOUT_MS", "2500")

    settings = HealthEnvironment().for_database("sprint_reports_v2", "bucket-1")

    assert settings.thresholds.connections_warn_percent == 80
    assert settings.thresholds.connections_critical_percent == 95
    assert (settings.statement_timeout_ms, settings.bucket, settings.database_name) == (
        2500,
        "bucket-1",
        "sprint_reports_v2",
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, Status.OK), (89.9, Status.OK), (90, Status.WARN), (94.9, Status.WARN), (95, Status.CRITICAL)],
)
def test_grade_higher_is_worse(value: float | None, expected: Status) -> None:
    assert grade(value, 90, 95) is expected


@pytest.mark.parametrize(
    ("value", "expected"), [(None, Status.OK), (99.5, Status.OK), (98.9, Status.WARN), (94.9, Status.CRITICAL)]
)
def test_grade_low_lower_is_worse(value: float | None, expected: Status) -> None:
    assert grade_low(value, 99, 95) is expected
