"""The backup: pg_dump -Fc -Z0 | zstd | sha256 | S3 multipart, then the manifest as the commit marker.

pg_dump runs on a snapshot exported by a holding transaction, which also counts every table's rows in that
same snapshot: the manifest's row counts are exactly what the archive holds, so a restore can be checked.
Nothing touches local disk and memory stays at a few upload parts whatever the database's size.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import zstandard
from psycopg import sql
from pydantic import BaseModel, Field

from dbops.aws import s3stream
from dbops.backup import catalog
from dbops.backup.catalog import BackupKind, BackupManifest, StoredObject, TableStat
from dbops.config.databases import CATALOG_NAME
from dbops.errors import BackupError, DbopsError, ToolError
from dbops.postgres import pipes
from dbops.postgres.connection import ConnectionSpec, connect, describe_error, server_version_num
from dbops.postgres.tools import StderrTail, find_tool, require_compatible, tool_version

READ_CHUNK = 4 * 1024 * 1024
PROGRESS_EVERY = 64 * 1024 * 1024

Progress = Callable[[str, int], None]

# a table's shape as the manifest records it and a restore checks it: its indexes and its constraints
# (primary key, unique, check, exclusion), for the pg_class row `c`
TABLE_SHAPE = sql.SQL("""
    (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid),
    (SELECT count(*) FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype IN ('p', 'u', 'c', 'x'))
""")

# what belongs to a table, by catalog identity: the objects pg_depend ties to it (auto or internal), not other
# tables (partitions are tables of their own) and not objects that merely reference it (views, foreign keys
# of other tables: deptype 'n')
ATTACHED_CATALOGS = (
    "pg_class",  # indexes and owned sequences; tables (partitions) are filtered out below
    "pg_constraint",
    "pg_trigger",
    "pg_rewrite",
    "pg_policy",
    "pg_attrdef",
    "pg_statistic_ext",
    "pg_publication_rel",
)

LIST_TABLES = sql.SQL("""
    SELECT n.nspname, c.relname, pg_total_relation_size(c.oid), {shape}, c.oid, c.relkind::text,
        ARRAY(SELECT i.inhparent::int8 FROM pg_inherits i WHERE i.inhrelid = c.oid ORDER BY i.inhseqno),
        ARRAY(SELECT DISTINCT ARRAY[d.classid::int8, d.objid::int8] FROM pg_depend d
              WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid AND d.deptype NOT IN ('n', 'e')
                AND d.classid = ANY({catalogs}::regclass[])
                AND NOT EXISTS (SELECT 1 FROM pg_class o WHERE d.classid = 'pg_class'::regclass
                                AND o.oid = d.objid AND o.relkind NOT IN ('i', 'I', 'S')))
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'm')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d
                      WHERE d.objid = c.oid AND d.deptype = 'e')
    ORDER BY 1, 2
""").format(shape=TABLE_SHAPE, catalogs=sql.Literal(list(ATTACHED_CATALOGS)))


def list_tables(conn: psycopg.Connection[Any]) -> list[TableStat]:
    """The database's tables, partitioned tables and materialized views as a manifest records them (rows not
    counted)."""
    return [
        TableStat(
            schema_name=r[0],
            name=r[1],
            rows=0,
            bytes=int(r[2]),
            indexes=int(r[3]),
            constraints=int(r[4]),
            oid=int(r[5]),
            relkind=r[6],
            parents=list(r[7]),
            objects=[tuple(pair) for pair in r[8]],
        )
        for r in conn.execute(LIST_TABLES).fetchall()
    ]


def count_rows(schema: str, name: str, relkind: str) -> sql.Composed:
    """A table's own rows (FROM ONLY: an inheritance parent without its children); a partitioned table holds
    none of its own, so it is never counted."""
    only = sql.SQL("ONLY ") if relkind == "r" else sql.SQL("")
    return sql.SQL("SELECT count(*) FROM {}{}").format(only, sql.Identifier(schema, name))


# backups of one database never overlap: each holds this session-level advisory lock on its own connection until
# its manifest is written (advisory locks are per database, and the key also carries the catalog name)
BACKUP_LOCK_CLASS = 0x64627073  # "dbps"


def backup_lock_key(database: str) -> int:
    """The second half of the backup lock's key: a stable signed 32-bit hash of the catalog name."""
    return int.from_bytes(hashlib.sha256(database.encode()).digest()[:4], "big", signed=True)


def _lock_out_other_backups(conn: psycopg.Connection[Any], database: str) -> None:
    """Take the database's backup lock, or refuse at once: another backup of it is running."""
    row = conn.execute(
        "SELECT pg_try_advisory_lock(%s::int4, %s::int4)", [BACKUP_LOCK_CLASS, backup_lock_key(database)]
    ).fetchone()
    if not (row and row[0]):
        raise BackupError(
            f"another backup of {database} is running (it holds the dbops backup lock on the database): this one "
            "stopped before writing anything; the running one commits, or fails, on its own"
        )


class BackupRequest(BaseModel):
    database: str = Field(pattern=CATALOG_NAME, description="the database's name in the catalog")
    bucket: str
    kind: BackupKind = "nightly"
    compression_level: int = Field(default=1, ge=-7, le=19)
    compression_threads: int = Field(default=2, ge=0, le=16)
    pg_bin_dir: str | None = None
    lock_wait_timeout_s: int = 120
    labels: dict[str, str] = Field(default_factory=dict)


@dataclass
class _Deadline:
    """When the backup must have stopped (the Lambda timeout less a margin), or None: no limit."""

    at: float | None

    def expired(self) -> bool:
        return self.at is not None and time.monotonic() > self.at

    def bound(self, seconds: int) -> int:
        """A wait of at most `seconds` that also ends once the deadline has passed (within a second of it),
        so a wait cut short by it is reported as the time limit."""
        if self.at is None:
            return seconds
        return max(1, min(seconds, math.ceil(self.at - time.monotonic()) + 1))

    def watch(self, proc: subprocess.Popen[bytes]) -> threading.Timer | None:
        """Kill the process when the time is up, even while it is stalled (waiting for a lock, say)."""
        if self.at is None:
            return None
        timer = threading.Timer(max(0.0, self.at - time.monotonic()), proc.kill)
        timer.daemon = True
        timer.start()
        return timer

    def error(self, database: str, cause: str | None = None) -> BackupError:
        during = f" (at that moment: {cause})" if cause else ""
        return BackupError(
            f"backup of {database} stopped: the time limit is near (Lambda timeout){during}. "
            "Give the function more time or run the backup as the Fargate task."
        )

    def check(self, database: str) -> None:
        if self.expired():
            raise self.error(database)


class _SnapshotHolder:
    """A repeatable-read transaction whose snapshot pg_dump imports; counts rows in the same snapshot."""

    def __init__(self, conn: psycopg.Connection[Any], lock_wait_timeout_s: int) -> None:
        self.conn = conn
        self.lock_wait_timeout_s = lock_wait_timeout_s
        self.tables: list[TableStat] = []
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _SnapshotHolder:
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

    def start_counting(self) -> None:
        self._thread = threading.Thread(target=self._count, name="row-counter", daemon=True)
        self._thread.start()

    def _count(self) -> None:
        try:
            for table in self.tables:
                if table.relkind != "p":
                    row = self.conn.execute(count_rows(table.schema_name, table.name, table.relkind)).fetchone()
                    table.rows = int(row[0]) if row else 0
        except BaseException as exc:  # reported by stats() on the caller's thread
            self.error = exc

    def stats(self, database: str) -> list[TableStat]:
        if self._thread is not None:
            self._thread.join()
        if self.error is not None:
            raise BackupError(f"backup of {database}: counting rows failed: {describe_error(self.error)}")
        return self.tables


def _stream_dump(
    proc: subprocess.Popen[bytes],
    upload: s3stream.MultipartUpload,
    request: BackupRequest,
    deadline: _Deadline,
    progress: Progress | None,
    what: str,
) -> int:
    """Compress a running pg_dump's output into the upload; returns the bytes pg_dump wrote."""
    assert proc.stdout is not None and proc.stderr is not None
    stderr = StderrTail(proc.stderr)
    compressor = zstandard.ZstdCompressor(
        level=request.compression_level, threads=request.compression_threads
    ).compressobj()
    raw = 0
    reported = -1
    buffer = memoryview(bytearray(READ_CHUNK))  # whole 4 MB chunks: the loop runs ~250 times a GB
    watchdog = deadline.watch(proc)
    try:
        while size := pipes.fill(proc.stdout.fileno(), buffer):
            raw += size
            upload.write(compressor.compress(buffer[:size]))
            if progress and (reported < 0 or raw - reported >= PROGRESS_EVERY):
                progress(what, raw)
                reported = raw
        returncode = proc.wait()
    finally:
        if watchdog is not None:
            watchdog.cancel()
    deadline.check(request.database)  # pg_dump killed by the watchdog: report the time limit
    if returncode != 0:
        reason = f"killed by signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
        detail = stderr.text() or "no error output"
        raise BackupError(f"{what} of database {request.database} failed ({reason}): {detail}")
    upload.write(compressor.flush())
    if progress:
        progress(what, raw)
    return raw


def _upload_dump(
    expected_bytes: int,
    argv: list[str],
    env: dict[str, str],
    key: str,
    request: BackupRequest,
    deadline: _Deadline,
    progress: Progress | None,
    what: str,
) -> StoredObject:
    """pg_dump into one object. pg_dump starts first: it reads the catalog while the upload is being set up."""
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    pipes.widen(proc.stdout)
    try:
        part_size = s3stream.part_size_for(expected_bytes)
        with s3stream.MultipartUpload(request.bucket, key, part_size=part_size) as upload:
            raw = _stream_dump(proc, upload, request, deadline, progress, what)
            digest = upload.complete()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return StoredObject(key=key, size=upload.size, sha256=digest, raw_size=raw)


def run_backup(
    spec: ConnectionSpec,
    request: BackupRequest,
    *,
    deadline: float | None = None,
    progress: Progress | None = None,
) -> BackupManifest:
    """Dump one database into the bucket; returns the committed manifest or raises BackupError."""
    limit = _Deadline(deadline)
    started = datetime.now(UTC)
    t0 = time.monotonic()
    backup_id = catalog.new_backup_id(started)
    prefix = catalog.backup_prefix(request.kind, request.database, backup_id)
    written: list[str] = []
    try:
        pg_dump = tool_version(find_tool("pg_dump", request.pg_bin_dir))
        with connect(spec, autocommit=True, statement_timeout_ms=0) as conn:
            _lock_out_other_backups(conn, request.database)
            server_num = server_version_num(conn)
            server_text = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
            require_compatible(pg_dump, server_num, request.database)
            lock_wait_s = limit.bound(request.lock_wait_timeout_s)  # a lock held by a migration, say
            with _SnapshotHolder(conn, lock_wait_s) as holder:
                snapshot = holder.export()
                holder.start_counting()
                env = spec.libpq_env()
                common = [
                    str(pg_dump.path),
                    "--no-password",
                    f"--snapshot={snapshot}",
                    f"--lock-wait-timeout={lock_wait_s}s",
                ]
                expected = sum(t.bytes for t in holder.tables)  # the archive is never larger than the tables
                dump = _upload_dump(
                    expected,
                    [*common, "--format=custom", "--compress=0"],
                    env,
                    prefix + "database.dump.zst",
                    request,
                    limit,
                    progress,
                    "pg_dump",
                )
                written.append(dump.key)
                schema_sql = None
                if request.kind == "predeploy":
                    schema_sql = _upload_dump(
                        0,
                        [*common, "--schema-only", "--format=plain"],
                        env,
                        prefix + "schema.sql.zst",
                        request,
                        limit,
                        progress,
                        "pg_dump --schema-only",
                    )
                    written.append(schema_sql.key)
                tables = holder.stats(request.database)
            finished = datetime.now(UTC)
            manifest = BackupManifest(
                format_version=catalog.IDENTITY_FORMAT,
                id=backup_id,
                database=request.database,
                kind=request.kind,
                dump=dump,
                schema_sql=schema_sql,
                pg_dump_version=pg_dump.number,
                server_version=server_text,
                server_version_num=server_num,
                started_at=started,
                finished_at=finished,
                duration_seconds=round(time.monotonic() - t0, 3),
                tables=tables,
                labels=request.labels,
            )
            limit.check(request.database)
            catalog.write_manifest(request.bucket, manifest)  # committed, and only then the lock released
        return manifest
    except BaseException as exc:
        _discard(request.bucket, written)
        if isinstance(exc, BackupError):
            raise
        if isinstance(exc, DbopsError | psycopg.Error):
            reason = describe_error(exc)
            if limit.expired():  # a lock wait or a statement cut short by the deadline
                raise limit.error(request.database, reason) from None
            if isinstance(exc, ToolError):
                raise BackupError(reason) from None
            raise BackupError(f"backup of database {request.database} failed: {reason}") from None
        raise


def _discard(bucket: str, keys: list[str]) -> None:
    """Remove objects of a backup that did not commit: no manifest, no leftovers that look whole."""
    for key in keys:
        try:
            s3stream.delete_object(bucket, key)
        except DbopsError:
            pass  # no manifest was written, so the catalog never shows it; lifecycle expires it
