"""Sessions in trouble, induced for real in other sessions: blocked queries, idle transactions, long queries,
connections near the limit (both server versions)."""

from __future__ import annotations

import math
import time

import pytest

from dbops.health import Status
from dbops.postgres.connection import ConnectionSpec, connect
from tests.integration.health_helpers import (
    BackgroundStatement,
    check,
    open_transaction,
    session,
    wait_for_state,
)


def test_blocked_query_is_reported_with_the_session_blocking_it(sample_db: ConnectionSpec) -> None:
    with open_transaction(sample_db, "UPDATE teams SET name = name || ' (renamed)' WHERE id = 1") as holder:
        holder_pid = holder.info.backend_pid
        with BackgroundStatement(sample_db, "UPDATE teams SET name = 'waiting' WHERE id = 1") as blocked:
            wait_for_state(sample_db, blocked.pid, lock_wait=True)

            quiet = check(sample_db).probe("blocked_queries")  # default thresholds: waiting, not for long yet
            time.sleep(0.3)
            report = check(sample_db, lock_wait_warn_seconds=0.2, lock_wait_critical_seconds=60)
            holder.rollback()
            blocked.finish()

    assert quiet.status is Status.OK
    assert quiet.values["blocked_queries"] == 1
    probe = report.probe("blocked_queries")
    assert probe.status is Status.WARN
    assert probe.values["blocked_queries"] == 1
    assert probe.values["longest_lock_wait_seconds"] is not None
    assert f"root blocker pid {holder_pid}" in probe.message
    [detail] = probe.details
    assert detail.startswith(f"pid {blocked.pid} ")
    assert f"blocked by pid {holder_pid} " in detail
    assert "idle in transaction" in detail
    assert "UPDATE teams SET name = name || '…'" in detail  # the blocker's query, literals hidden
    assert blocked.error is None  # it went through once the holder rolled back


def test_blocked_query_past_the_critical_wait_is_critical(sample_db: ConnectionSpec) -> None:
    with (
        open_transaction(sample_db, "LOCK TABLE sprints IN ACCESS EXCLUSIVE MODE"),
        BackgroundStatement(sample_db, "SELECT count(*) FROM sprints") as blocked,
    ):
        wait_for_state(sample_db, blocked.pid, lock_wait=True)
        time.sleep(0.3)
        probe = check(sample_db, lock_wait_warn_seconds=0.1, lock_wait_critical_seconds=0.2).probe("blocked_queries")

    assert probe.status is Status.CRITICAL
    assert probe.values["longest_lock_wait_seconds"] >= 0.2  # type: ignore[operator]


def test_session_idle_in_transaction_is_reported(sample_db: ConnectionSpec) -> None:
    with open_transaction(sample_db, "SELECT id FROM users LIMIT 1") as idle:
        idle_pid = idle.info.backend_pid
        wait_for_state(sample_db, idle_pid, state="idle in transaction")
        time.sleep(0.3)
        report = check(
            sample_db,
            idle_in_transaction_warn_seconds=0.2,
            idle_in_transaction_critical_seconds=60,
            long_transaction_warn_seconds=0.1,
            long_transaction_critical_seconds=0.2,
        )

    probe = report.probe("idle_in_transaction")
    assert probe.status is Status.WARN
    assert probe.values["idle_in_transaction"] == 1
    assert f"pid {idle_pid} " in probe.details[0]
    assert "last query: SELECT id FROM users LIMIT 1" in probe.details[0]
    transactions = report.probe("long_transactions")
    assert transactions.status is Status.CRITICAL
    assert transactions.values["long_transactions"] == 1


def test_long_running_query_is_reported_and_ours_is_not(sample_db: ConnectionSpec) -> None:
    with BackgroundStatement(sample_db, "SELECT pg_sleep(30)") as sleeper:
        wait_for_state(sample_db, sleeper.pid)
        time.sleep(0.3)
        report = check(sample_db, long_query_warn_seconds=0.1, long_query_critical_seconds=0.2)

    probe = report.probe("long_running_queries")
    assert probe.status is Status.CRITICAL
    assert probe.values["long_queries"] == 1  # the probe's own session is never counted
    assert f"pid {sleeper.pid} " in probe.details[0]
    assert "SELECT pg_sleep(30)" in probe.details[0]


def test_connections_near_max_connections_warn(sample_db: ConnectionSpec) -> None:
    with connect(sample_db) as conn:
        row = conn.execute(
            "SELECT current_setting('max_connections')::int,"
            " count(*) FILTER (WHERE backend_type = 'client backend') FROM pg_stat_activity"
        ).fetchone()
    assert row is not None
    limit, used = row
    target = math.ceil(limit * 0.91)  # the health session itself makes one more
    extra = [session(sample_db) for _ in range(target - used)]
    try:
        report = check(sample_db)
    finally:
        for conn in extra:
            conn.close()

    probe = report.probe("connections")
    assert probe.status is Status.WARN, probe.message
    assert probe.values["max_connections"] == limit
    assert 90 <= probe.values["connections_used_percent"] < 95  # type: ignore[operator]


@pytest.mark.parametrize("state", ["active", "idle"])
def test_healthy_sessions_are_not_reported(sample_db: ConnectionSpec, state: str) -> None:
    statement = "SELECT pg_sleep(5)" if state == "active" else "SELECT 1"
    with BackgroundStatement(sample_db, statement) as other:
        wait_for_state(sample_db, other.pid, state=state)
        report = check(sample_db)

    for name in ("long_running_queries", "long_transactions", "idle_in_transaction", "blocked_queries"):
        assert report.probe(name).status is Status.OK
