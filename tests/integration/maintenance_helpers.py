"""Real concurrent sessions for the maintenance tests: writers that keep committing, lock holders, stats waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from dbops.maintenance import ProgressEvent
from dbops.postgres.connection import ConnectionSpec, connect

Statement = str | sql.Composable


def execute(spec: ConnectionSpec, *statements: Statement) -> None:
    with connect(spec) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def dead_tuples(spec: ConnectionSpec) -> dict[str, tuple[int, int]]:
    """relname -> (n_live_tup, n_dead_tup) as the statistics system reports them now."""
    with connect(spec) as conn:
        rows = conn.execute("SELECT relname, n_live_tup, n_dead_tup FROM pg_stat_user_tables").fetchall()
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


def stat_counts(spec: ConnectionSpec, column: str) -> dict[str, int]:
    """relname -> vacuum_count / analyze_count (manual runs only)."""
    with connect(spec) as conn:
        rows = conn.execute(
            sql.SQL("SELECT relname, {} FROM pg_stat_user_tables").format(sql.Identifier(column))
        ).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def rows_checksum(spec: ConnectionSpec, *tables: str) -> tuple[int, str]:
    """Count and md5 over the rows of the given tables together (UNION ALL keeps duplicates visible)."""
    union = sql.SQL(" UNION ALL ").join(sql.SQL("SELECT * FROM {}").format(sql.Identifier(t)) for t in tables)
    query = sql.SQL(
        "SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') FROM ({}) t"
    ).format(union)
    with connect(spec) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


class LockHolder:
    """Another session holding a lock in an open transaction until release()."""

    def __init__(self, spec: ConnectionSpec, *statements: Statement) -> None:
        self.conn = psycopg.connect(**spec.connect_kwargs(), autocommit=False)
        for statement in statements:
            self.conn.execute(statement)  # type: ignore[arg-type]

    def release(self) -> None:
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()

    def __enter__(self) -> LockHolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Writer:
    """A thread that keeps running `step(conn)` in its own session, recording when each one committed."""

    def __init__(self, spec: ConnectionSpec, step: Callable[[psycopg.Connection[Any]], None]) -> None:
        self.spec, self.step = spec, step
        self.commits: list[float] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with connect(self.spec) as conn:
                while not self._stop.is_set():
                    with conn.transaction():
                        self.step(conn)
                    self.commits.append(time.monotonic())
        except BaseException as exc:  # surfaced by the test through .errors
            self.errors.append(exc)

    def __enter__(self) -> Writer:
        self._thread.start()
        wait_until(lambda: bool(self.commits) or bool(self.errors), "the writer's first commit")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def committed_between(self, start: float, end: float) -> int:
        return sum(1 for t in self.commits if start < t < end)


class Timeline:
    """Progress callback recording when each object started and finished (monotonic clock)."""

    def __init__(self, on_event: Callable[[ProgressEvent], None] | None = None) -> None:
        self.events: list[tuple[float, ProgressEvent]] = []
        self.on_event = on_event

    def __call__(self, event: ProgressEvent) -> None:
        self.events.append((time.monotonic(), event))
        if self.on_event:
            self.on_event(event)

    def window(self, name: str) -> tuple[float, float]:
        start = next(t for t, e in self.events if e.object == name and e.event == "start")
        end = next(t for t, e in self.events if e.object == name and e.event == "done")
        return start, end
