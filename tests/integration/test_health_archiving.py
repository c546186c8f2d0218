"""WAL archiving on a server with archive_mode on (one per version): archiving that works is ok, an archiver
that fails is critical. archive_mode needs a restart, so this module starts its own servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dbops.health import Status
from dbops.postgres.connection import ConnectionSpec, connect
from local_stack.postgres import LocalPostgres
from tests.integration.health_helpers import check, wait_until

SWITCH_WAL = "SELECT pg_switch_wal()"


@pytest.fixture(scope="module")
def archiving(pg: LocalPostgres) -> Iterator[ConnectionSpec]:
    server = LocalPostgres(
        pg.bin_dir,
        settings={
            "wal_level": "replica",
            "archive_mode": "on",
            "archive_command": "/bin/true",
            "max_connections": "20",
        },
    ).start()
    yield ConnectionSpec.from_url(server.url())
    server.destroy()


def _new_segment(spec: ConnectionSpec) -> None:
    with connect(spec) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS wal_filler (n int)")
        conn.execute("INSERT INTO wal_filler SELECT generate_series(1, 100)")
        conn.execute(SWITCH_WAL)


def test_working_archiver_is_ok(archiving: ConnectionSpec) -> None:
    _new_segment(archiving)
    wait_until(archiving, "SELECT archived_count > 0 FROM pg_stat_archiver")

    probe = check(archiving).probe("wal_archiving")

    assert probe.status is Status.OK, probe.message
    assert probe.values["wal_archiving_on"] == 1
    assert probe.values["archive_failed_count"] == 0
    assert probe.values["archive_ready_files"] == 0  # a superuser may list archive_status
    assert probe.message.startswith("archive_mode on: last archived ")


def test_failing_archiver_is_critical(archiving: ConnectionSpec) -> None:
    with connect(archiving) as conn:
        conn.execute("ALTER SYSTEM SET archive_command = '/bin/false'")
        conn.execute("SELECT pg_reload_conf()")
    try:
        _new_segment(archiving)
        # (last_archived_time is NULL when this test runs before the one that archives: tests run in random order)
        wait_until(
            archiving,
            "SELECT last_failed_time > coalesce(last_archived_time, '-infinity') FROM pg_stat_archiver",
        )

        probe = check(archiving).probe("wal_archiving")
    finally:
        with connect(archiving) as conn:
            conn.execute("ALTER SYSTEM RESET archive_command")
            conn.execute("SELECT pg_reload_conf()")

    assert probe.status is Status.CRITICAL
    assert probe.values["archive_failed_count"] >= 1  # type: ignore[operator]
    assert probe.details[0].startswith("the archiver is failing: ")
    assert "check archive_command and the server log" in probe.details[0]
