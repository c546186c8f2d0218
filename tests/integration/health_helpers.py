"""Real conditions for the health probes: other sessions that hold locks, sit idle in a transaction or run a
long query, and a way to make the statistics collector show what just happened."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from dbops.health import HealthReport, HealthSettings, Thresholds, run_health
from dbops.postgres.connection import ConnectionSpec


def check(spec: ConnectionSpec, **settings: Any) -> HealthReport:
    """A health run with threshold overrides given as keywords (other HealthSettings fields pass through)."""
    fields = {k: settings.pop(k) for k in list(settings) if k in HealthSettings.model_fields}
    return run_health(spec, HealthSettings(thresholds=Thresholds(**settings), **fields))


def session(spec: ConnectionSpec, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    return psycopg.connect(**spec.connect_kwargs(), autocommit=autocommit)


@contextmanager
def open_transaction(spec: ConnectionSpec, *statements: str) -> Iterator[psycopg.Connection[Any]]:
    """Another session that runs `statements` in a transaction and leaves it open (idle in transaction)."""
    conn = session(spec, autocommit=False)
    try:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]
        yield conn
    finally:
        conn.rollback()
        conn.close()


class BackgroundStatement:
    """A statement running in its own session on a thread, e.g. one that waits for a lock or sleeps."""

    def __init__(self, spec: ConnectionSpec, statement: str) -> None:
        self.conn = session(spec)
        self.pid = self.conn.info.backend_pid
        self.statement = statement
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.conn.execute(self.statement)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            self.error = exc

    def __enter__(self) -> BackgroundStatement:
        self._thread.start()
        return self

    def finish(self, timeout: float = 15.0) -> None:
        """Wait for the statement to end by itself."""
        self._thread.join(timeout=timeout)
        assert not self._thread.is_alive(), f"still running after {timeout}s: {self.statement}"

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive():
            self.conn.cancel_safe()
        self._thread.join(timeout=30)
        self.conn.close()


def wait_until(spec: ConnectionSpec, query: str, params: Any = None, timeout: float = 15.0) -> None:
    """Poll until `query` returns a true first column (the condition is really there before we probe)."""
    end = time.monotonic() + timeout
    with session(spec) as conn:
        while time.monotonic() < end:
            row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
            if row and row[0]:
                return
            time.sleep(0.02)
    raise AssertionError(f"condition not reached in {timeout}s: {query}")


def wait_for_state(spec: ConnectionSpec, pid: int, *, lock_wait: bool = False, state: str = "active") -> None:
    if lock_wait:
        wait_until(spec, "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", [pid])
    else:
        wait_until(spec, "SELECT state = %s FROM pg_stat_activity WHERE pid = %s", [state, pid])


def flush_stats(conn: psycopg.Connection[Any]) -> None:
    """Make this session's table statistics visible to others now (they are otherwise flushed up to 1 s later)."""
    conn.execute("SELECT pg_stat_force_next_flush()")
