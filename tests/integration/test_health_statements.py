"""Slow queries from pg_stat_statements: absent is `unknown`, present is read with the version's columns."""

from __future__ import annotations

from dbops.health import Status
from dbops.health.probes.statements import statement_columns
from dbops.postgres.connection import ConnectionSpec, connect
from tests.integration.health_helpers import check


def test_missing_pg_stat_statements_is_unknown_not_an_error(sample_db: ConnectionSpec) -> None:
    report = check(sample_db)

    probe = report.probe("slow_queries")
    assert probe.status is Status.UNKNOWN
    assert probe.message.startswith(f"pg_stat_statements is not installed in {sample_db.dbname}: CREATE EXTENSION")
    assert report.probe_errors == 0
    assert report.exit_code == 0


def test_slow_queries_are_read_with_the_columns_of_the_server_version(sample_db: ConnectionSpec) -> None:
    with connect(sample_db) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
        version = int(conn.info.server_version)
        view_columns = {
            r[0]
            for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'pg_stat_statements'::regclass AND attnum > 0"
            ).fetchall()
        }
        for _ in range(3):
            conn.execute("SELECT pg_sleep(0.02)")
        conn.execute("SELECT count(*) FROM issues")

    report = check(sample_db, slow_query_min_calls=3, slow_query_warn_ms=15, slow_query_critical_ms=10_000)

    columns = statement_columns(version)
    if version >= 170000:
        assert (columns.mean, columns.total, columns.read) == (
            "mean_exec_time",
            "total_exec_time",
            "shared_blk_read_time",
        )
    else:
        assert (columns.mean, columns.total, columns.read) == ("mean_exec_time", "total_exec_time", "blk_read_time")
    assert {columns.mean, columns.total, columns.read} <= view_columns
    assert "mean_time" not in view_columns  # the pre-13 name the guide's query uses
    probe = report.probe("slow_queries")
    assert probe.status is Status.WARN, probe.message
    assert f"columns {columns.mean}, {columns.total}, {columns.read}" in probe.message
    assert probe.values["slow_queries"] == 1
    assert probe.values["slowest_mean_ms"] >= 20  # type: ignore[operator]
    assert probe.values["statements"] >= 3  # type: ignore[operator]
    [detail] = probe.details
    assert " x 3 calls = " in detail and "pg_sleep($1)" in detail


def test_a_slow_query_past_the_critical_mean_is_critical(sample_db: ConnectionSpec) -> None:
    with connect(sample_db) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
        for _ in range(2):
            conn.execute("SELECT pg_sleep(0.03)")

    probe = check(sample_db, slow_query_min_calls=2, slow_query_warn_ms=5, slow_query_critical_ms=25).probe(
        "slow_queries"
    )

    assert probe.status is Status.CRITICAL
