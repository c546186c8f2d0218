"""The backup: pg_dump -Fc -Z0 | zstd | sha256 | S3 multipart, then the manifest as the commit marker.

pg_dump runs on a snapshot exported by a holding transaction, which also counts every table's rows in that
same snapshot: the manifest's row counts are exactly what the archive holds, so a restore can be checked.
Nothing touches local disk and memory stays at a few upload parts whatever the database's size.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import zstandard
from pydantic import BaseModel, Field

from dbops.aws import s3stream
from dbops.backup import catalog
from dbops.backup.catalog import BackupKind, BackupManifest, StoredObject
from dbops.backup.deadline import Deadline
from dbops.backup.lock import lock_out_other_backups
from dbops.backup.snapshot import SnapshotHolder
from dbops.config.backup import BackupLock
from dbops.config.databases import CATALOG_NAME
from dbops.errors import BackupError, DbopsError, ToolError
from dbops.postgres import pipes
from dbops.postgres.connection import ConnectionSpec, connect, describe_error, server_version_num
from dbops.postgres.tools import StderrTail, find_tool, require_compatible, tool_version

READ_CHUNK = 4 * 1024 * 1024
PROGRESS_EVERY = 64 * 1024 * 1024

Progress = Callable[[str, int], None]


class BackupRequest(BaseModel):
    database: str = Field(pattern=CATALOG_NAME, description="the database's name in the catalog")
    bucket: str
    kind: BackupKind = "nightly"
    compression_level: int = Field(default=1, ge=-7, le=19)
    compression_threads: int = Field(default=2, ge=0, le=16)
    pg_bin_dir: str | None = None
    lock_wait_timeout_s: int = 120
    labels: dict[str, str] = Field(default_factory=dict)
    lock: BackupLock | None = Field(default=None, description="S3 Object Lock on every object written")

    def object_lock(self) -> s3stream.ObjectLock | None:
        """The lock of an object written now: a nightly backup's for the lock's days, another kind's for its age."""
        if self.lock is None:
            return None
        return s3stream.ObjectLock(mode=self.lock.mode, until=self.lock.until(self.kind, datetime.now(UTC)))


def _stream_dump(
    proc: subprocess.Popen[bytes],
    upload: s3stream.MultipartUpload,
    request: BackupRequest,
    deadline: Deadline,
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
    deadline: Deadline,
    progress: Progress | None,
    what: str,
) -> StoredObject:
    """pg_dump into one object. pg_dump starts first: it reads the catalog while the upload is being set up."""
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    pipes.widen(proc.stdout)
    try:
        part_size = s3stream.part_size_for(expected_bytes)
        lock = request.object_lock()
        with s3stream.MultipartUpload(request.bucket, key, part_size=part_size, lock=lock) as upload:
            raw = _stream_dump(proc, upload, request, deadline, progress, what)
            digest = upload.complete()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return StoredObject(key=key, size=upload.size, sha256=digest, raw_size=raw)


def _dump_in_snapshot(
    holder: SnapshotHolder,
    spec: ConnectionSpec,
    pg_dump: Path,
    prefix: str,
    request: BackupRequest,
    limit: Deadline,
    progress: Progress | None,
) -> tuple[StoredObject, StoredObject | None]:
    """pg_dump of the holder's exported snapshot into the bucket (and its schema-only SQL for predeploy), while the
    holder counts the rows; returns the objects written."""
    snapshot = holder.export()
    holder.start_counting()
    env = spec.libpq_env()
    common = [
        str(pg_dump),
        "--no-password",
        f"--snapshot={snapshot}",
        f"--lock-wait-timeout={holder.lock_wait_timeout_s}s",
    ]
    expected = sum(t.bytes for t in holder.tables)  # the archive is never larger than the tables
    dump_argv = [*common, "--format=custom", "--compress=0"]
    dump = _upload_dump(expected, dump_argv, env, prefix + "database.dump.zst", request, limit, progress, "pg_dump")
    if request.kind != "predeploy":
        return dump, None
    try:
        schema_argv = [*common, "--schema-only", "--format=plain"]
        key = prefix + "schema.sql.zst"
        return dump, _upload_dump(0, schema_argv, env, key, request, limit, progress, "pg_dump --schema-only")
    except BaseException:
        _discard(request.bucket, [dump.key])
        raise


def run_backup(
    spec: ConnectionSpec,
    request: BackupRequest,
    *,
    deadline: float | None = None,
    progress: Progress | None = None,
) -> BackupManifest:
    """Dump one database into the bucket; returns the committed manifest or raises BackupError."""
    limit = Deadline(deadline)
    started = datetime.now(UTC)
    t0 = time.monotonic()
    backup_id = catalog.new_backup_id(started)
    prefix = catalog.backup_prefix(request.kind, request.database, backup_id)
    written: list[str] = []
    try:
        pg_dump = tool_version(find_tool("pg_dump", request.pg_bin_dir))
        with connect(spec, autocommit=True, statement_timeout_ms=0) as conn:
            lock_out_other_backups(conn, request.database)
            server_num = server_version_num(conn)
            server_text = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
            require_compatible(pg_dump, server_num, request.database)
            lock_wait_s = limit.bound(request.lock_wait_timeout_s)  # a lock held by a migration, say
            with SnapshotHolder(conn, lock_wait_s) as holder:
                try:
                    dump, schema_sql = _dump_in_snapshot(holder, spec, pg_dump.path, prefix, request, limit, progress)
                    written.extend(o.key for o in (dump, schema_sql) if o is not None)
                    tables = holder.stats(request.database)
                except BaseException as exc:
                    # the first failure is the one reported: counts that failed end the snapshot pg_dump imports
                    first = exc if limit.expired() else holder.first_cause(request.database, exc)
                    if first is exc:
                        raise
                    raise first from exc
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
            # committed, and only then the (advisory) lock released
            catalog.write_manifest(request.bucket, manifest, request.object_lock())
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
