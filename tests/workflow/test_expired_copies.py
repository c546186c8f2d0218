"""The daily drop of expired pre-restore copies: the restore function's scheduled handler, without any restore."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg import sql

from dbops.errors import ConfigError
from dbops.postgres.connection import ConnectionSpec, connect
from dbops.restore import databases, records
from handlers.restore import drop_expired_copies
from local_stack.lambda_runtime import LocalLambdaContext, scheduled_event
from tests.support import emf_metrics

pytestmark = pytest.mark.any_server_version  # the flow, not the server: PostgreSQL 18 alone


@pytest.fixture
def made(sample_db: ConnectionSpec) -> Iterator[list[str]]:
    """Databases the test creates; whatever is left of them is dropped afterwards."""
    names: list[str] = []
    yield names
    with connect(sample_db.for_database("postgres")) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def _present(spec: ConnectionSpec) -> set[str]:
    with connect(spec.for_database("postgres")) as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}


def test_expired_copies_are_dropped_by_the_daily_schedule_and_nothing_else_is(
    sample_db: ConnectionSpec,
    bucket: str,
    configure: Callable[..., None],
    made: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(sample_db)
    now = datetime.now(UTC)

    def create(name: str) -> str:
        with connect(sample_db.for_database("postgres")) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        made.append(name)
        return name

    def record(restore_id: str, **outcome: Any) -> None:
        """A restore's record, written as Finish or NotifyFailure writes it, eight days ago."""
        run = {"started_at": now - timedelta(days=8), "finished_at": now - timedelta(days=8), "seconds": 60.0}
        records.save(
            bucket,
            records.RestoreRecord(
                restore_id=restore_id,
                kind="restore",
                database="sprint_reports_v2",
                backup_id="20261101T020000Z-aaaaaa",
                target_db=sample_db.dbname,
                tables=[],
                ok=True,
                detail="restored",
                **run,
                **outcome,
            ),
        )

    def kept(restore_id: str, keep_until: datetime, name: str | None = None) -> str:
        """A restore record keeping a previous database (created here) until `keep_until`."""
        copy = create(name or databases.work_name(sample_db.dbname, restore_id, "pre_restore"))
        record(restore_id, pre_restore_db=copy, keep_until=keep_until)
        return copy

    # a rehearsal killed a day ago left its scratch database (no keeper session); one under way keeps its own
    dead = create(f"{sample_db.dbname}__rehearse_{(now - timedelta(days=1)).strftime('%Y%m%d%H%M%S')}_dead")
    with connect(sample_db.for_database("postgres")) as conn:
        server_now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    running = create(f"{sample_db.dbname}__rehearse_{server_now.astimezone(UTC).strftime('%Y%m%d%H%M%S')}_beef")
    expired = kept("r1", now - timedelta(hours=1))
    still_kept = kept("r2", now + timedelta(days=3))
    # a record naming a database no restore of ours would have kept (altered by hand, say): never dropped
    foreign = kept("r3", now - timedelta(hours=1), name=f"{sample_db.dbname}_reporting")
    # named as a kept copy, but no restore recorded keeping it (made by hand, or another database's): never dropped
    unrecorded = create(databases.work_name(sample_db.dbname, "r9", "pre_restore"))
    # a work database whose restore has ended (its record names it: a stage that ran on after the safety backup
    # beside it failed), and one of a restore still running (no record yet)
    ended_work = create(databases.work_name(sample_db.dbname, "r5", "restore"))
    record("r5", work_db=ended_work)
    staging = create(databases.work_name(sample_db.dbname, "r6", "restore"))

    result = drop_expired_copies(scheduled_event("dbops-expired-copies"), LocalLambdaContext())

    assert result == {
        "dropped": {"sprint_reports_v2": [expired]},
        "stale_rehearsals": {"sprint_reports_v2": [dead]},
        "orphaned_work": {"sprint_reports_v2": [ended_work]},
    }
    present = _present(sample_db)
    assert expired not in present and dead not in present and ended_work not in present
    assert {still_kept, foreign, unrecorded, running, staging, sample_db.dbname} <= present
    [metric] = [m for m in emf_metrics(capsys.readouterr().out) if m["name"] == "PreRestoreCopiesDropped"]
    assert metric["value"] in (1, [1]) and metric["dimensions"] == {"database": "sprint_reports_v2"}

    again = drop_expired_copies({"database": "sprint_reports_v2"}, LocalLambdaContext())  # a direct invoke
    assert again["dropped"] == {"sprint_reports_v2": []}  # already gone: nothing to do, no error


def test_an_unknown_database_is_refused_before_anything_is_dropped(
    sample_db: ConnectionSpec, bucket: str, configure: Callable[..., None]
) -> None:
    configure(sample_db)
    with pytest.raises(ConfigError, match="unknown database 'no_such_db'"):
        drop_expired_copies({"database": "no_such_db"}, LocalLambdaContext())
