"""The session a backup reads through: its backup lock, pg_dump checked against the server, the manifest's facts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from dbops.backup import catalog
from dbops.backup.catalog import BackupManifest
from dbops.backup.deadline import Deadline
from dbops.backup.lock import lock_out_other_backups
from dbops.postgres.connection import ConnectionSpec, connect, server_version_num
from dbops.postgres.tools import ToolVersion, find_tool, require_compatible, tool_version


@dataclass
class Source:
    conn: psycopg.Connection[Any]
    pg_dump: ToolVersion
    server_num: int
    server_text: str
    lock_wait_s: int  # pg_dump's and the snapshot holder's lock waits, bounded by the deadline
    started: datetime
    t0: float

    def manifest(self, **fields: Any) -> BackupManifest:
        """The manifest, with what every backup records about its tools, its server and its timing."""
        return BackupManifest(
            format_version=catalog.IDENTITY_FORMAT,
            pg_dump_version=self.pg_dump.number,
            server_version=self.server_text,
            server_version_num=self.server_num,
            started_at=self.started,
            finished_at=datetime.now(UTC),
            duration_seconds=round(time.monotonic() - self.t0, 3),
            **fields,
        )


@contextmanager
def open_source(
    spec: ConnectionSpec, database: str, pg_bin_dir: str | None, lock_wait_timeout_s: int, limit: Deadline
) -> Iterator[Source]:
    """A session on the database holding its backup lock (until the block ends), pg_dump new enough for it."""
    started, t0 = datetime.now(UTC), time.monotonic()
    pg_dump = tool_version(find_tool("pg_dump", pg_bin_dir))
    with connect(spec, autocommit=True, statement_timeout_ms=0) as conn:
        lock_out_other_backups(conn, database)
        server_num = server_version_num(conn)
        server_text = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        require_compatible(pg_dump, server_num, database)
        lock_wait_s = limit.bound(lock_wait_timeout_s)  # a lock held by a migration, say
        yield Source(conn, pg_dump, server_num, server_text, lock_wait_s, started, t0)
