"""A probe that fails or times out is reported as such, and every other probe still runs."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import pytest
from psycopg import sql
from pydantic import SecretStr

from dbops.health import HealthSettings, Status, run_health
from dbops.postgres.connection import ConnectionSpec, connect
from local_stack.postgres import free_port
from tests.integration.health_helpers import check, open_transaction

OTHER_PROBES_OK = ("connectivity", "connections", "sizes", "dead_tuples", "wraparound", "sequences", "cache_hit")


@pytest.fixture
def monitoring_role(sample_db: ConnectionSpec) -> Iterator[ConnectionSpec]:
    """A login role with pg_monitor, as operators give a monitoring user; not a superuser."""
    name, password = f"monitor_{secrets.token_hex(4)}", secrets.token_urlsafe(12)
    with connect(sample_db) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE pg_monitor").format(
                sql.Identifier(name), sql.Literal(password)
            )
        )
    yield sample_db.model_copy(update={"user": name, "password": SecretStr(password)})
    with connect(sample_db) as conn:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_a_probe_refused_by_privileges_is_an_error_and_the_others_run(
    sample_db: ConnectionSpec, monitoring_role: ConnectionSpec
) -> None:
    with connect(sample_db) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
        conn.execute("REVOKE ALL ON pg_stat_statements FROM PUBLIC")
        conn.execute("REVOKE EXECUTE ON FUNCTION pg_stat_statements(boolean) FROM PUBLIC")

    report = check(monitoring_role)

    probe = report.probe("slow_queries")
    assert probe.status is Status.ERROR
    assert probe.message.startswith("query failed: permission denied for function pg_stat_statements")
    assert report.probe_errors == 1
    assert report.probes[0].name == "slow_queries"  # worst first
    assert report.exit_code == 3  # a probe failed and nothing is critical
    for name in OTHER_PROBES_OK:
        assert report.probe(name).status is Status.OK, report.probe(name).message
    assert report.probe("sizes").values["tables_size_bytes"] > 0  # type: ignore[operator]


def test_a_probe_that_times_out_is_an_error_and_the_others_run(sample_db: ConnectionSpec) -> None:
    with connect(sample_db) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
    with open_transaction(sample_db, "LOCK TABLE pg_stat_statements IN ACCESS EXCLUSIVE MODE"):
        report = check(sample_db, statement_timeout_ms=1000, lock_timeout_ms=0)

    probe = report.probe("slow_queries")
    assert probe.status is Status.ERROR
    assert probe.message == "query failed: canceling statement due to statement timeout"
    assert report.probe_errors == 1
    for name in OTHER_PROBES_OK:
        assert report.probe(name).status is Status.OK, report.probe(name).message


def test_an_unreachable_database_is_critical_and_never_shows_the_password(sample_db: ConnectionSpec) -> None:
    nowhere = sample_db.model_copy(update={"port": free_port(), "connect_timeout": 2})

    report = check(nowhere)

    connectivity = report.probe("connectivity")
    assert connectivity.status is Status.CRITICAL
    assert connectivity.message.startswith(f"database unreachable: cannot connect to {nowhere.describe()}")
    assert {p.status for p in report.probes if p.name != "connectivity"} == {Status.UNKNOWN}
    assert report.exit_code == 2
    assert nowhere.password is not None
    assert nowhere.password.get_secret_value() not in report.model_dump_json()


def test_probes_past_the_deadline_are_not_run_and_count_as_errors(sample_db: ConnectionSpec) -> None:
    report = run_health(sample_db, HealthSettings(), deadline=time.monotonic() - 1)

    skipped = [p for p in report.probes if p.message == "not run: out of time for this health run"]
    assert len(skipped) == len(report.probes) - 1  # all but backup freshness, which needs no database time
    assert {p.status for p in skipped} == {Status.ERROR}
    assert report.probe_errors == len(skipped)
    assert report.exit_code == 3
