"""The snapshot a backup reads: a repeatable-read transaction that exports it and counts every table's rows in it."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from dbops.backup.catalog import TableStat
from dbops.backup.deadline import Deadline
from dbops.backup.tables import list_tables
from dbops.errors import BackupError
from dbops.postgres.catalog import count_rows
from dbops.postgres.connection import describe_error

FIRST_SLACK_S = 0.25  # a count's error noted this soon after the other failure was seen still came first


class SnapshotHolder:
    """A repeatable-read transaction whose snapshot pg_dump imports; counts rows in the same snapshot."""

    def __init__(self, conn: psycopg.Connection[Any], lock_wait_timeout_s: int) -> None:
        self.conn = conn
        self.lock_wait_timeout_s = lock_wait_timeout_s
        self.tables: list[TableStat] = []
        self.error: BaseException | None = None
        self.error_at = 0.0  # time.monotonic() when the counts failed
        self._thread: threading.Thread | None = None
        self._skip: frozenset[int] = frozenset()

    def __enter__(self) -> SnapshotHolder:
        return self

    def __exit__(self, *exc: object) -> None:
        """On failure a count may still be running (behind a lock, say): cancel it, then wait for the thread."""
        if self._thread is not None and self._thread.is_alive():
            with contextlib.suppress(psycopg.Error):
                self.conn.cancel_safe(timeout=5)
            self._thread.join()

    def export(self) -> str:
        self.conn.execute("SET idle_in_transaction_session_timeout = 0")
        # the counts wait for a table lock no longer than pg_dump does
        self.conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{self.lock_wait_timeout_s}s")))
        # every row counts, as pg_dump dumps every row: a role that row-level security would filter fails here
        self.conn.execute("SET row_security = off")
        self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        row = self.conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        self.tables = list_tables(self.conn)
        return str(row[0])

    def start_counting(self, skip: Collection[int] = ()) -> None:
        """Count every table's rows in a thread; tables in `skip` (OIDs) are counted by whoever copies them."""
        self._skip = frozenset(skip)
        self._thread = threading.Thread(target=self._count, name="row-counter", daemon=True)
        self._thread.start()

    def _count(self) -> None:
        try:
            for table in self.tables:
                if table.relkind != "p" and table.oid not in self._skip:
                    row = self.conn.execute(count_rows(table.schema_name, table.name, table.relkind)).fetchone()
                    table.rows = int(row[0]) if row else 0
        except BaseException as exc:  # reported by stats() or first_cause() on the caller's thread
            self.error_at = time.monotonic()
            self.error = exc

    def first_cause(self, database: str, later: BaseException, wait_s: float = 1.0) -> BaseException:
        """What to report when the backup failed with `later` while the counts ran: their own error if it came
        first (it ends the snapshot's transaction, so pg_dump's snapshot import fails after it), with `later` after
        it and as its cause; else `later`. A count failing now may still be on its way: it is given `wait_s`."""
        observed = time.monotonic()
        if self._thread is not None:
            self._thread.join(wait_s)
        if self.error is None or self.error is later or self.error_at > observed + FIRST_SLACK_S:
            return later
        first = BackupError(
            f"backup of {database}: counting rows failed: {describe_error(self.error)}; then: {describe_error(later)}"
        )
        first.__cause__ = later
        return first

    @contextmanager
    def first_failure(self, database: str, limit: Deadline) -> Iterator[None]:
        """A failure of the block (pg_dump's, a COPY's) reported as `first_cause` has it: the counts' own error
        when it came first; as it was once the deadline passed (what the deadline cut short is the cause)."""
        try:
            yield
        except BaseException as exc:
            first = exc if limit.expired() else self.first_cause(database, exc)
            if first is exc:
                raise
            raise first from exc

    def stats(self, database: str) -> list[TableStat]:
        if self._thread is not None:
            self._thread.join()
        if self.error is not None:
            raise BackupError(f"backup of {database}: counting rows failed: {describe_error(self.error)}")
        return self.tables
