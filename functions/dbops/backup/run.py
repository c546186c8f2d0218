"""The backup: pg_dump -Fc -Z0 | zstd | sha256 | S3 multipart, then the manifest as the commit marker.

pg_dump runs on a snapshot exported by a holding transaction, which also counts every table's rows in that
same snapshot: the manifest's row counts are exactly what the archive holds, so a restore can be checked.
Nothing touches local disk and memory stays at a few upload parts whatever the database's size.
"""

from __future__ import annotations

import subprocess
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
from dbops.backup.snapshot import SnapshotHolder
from dbops.backup.source import open_source
from dbops.config.backup import BackupLock
from dbops.config.databases import CATALOG_NAME
from dbops.errors import BackupError, DbopsError, ToolError
from dbops.postgres import pipes
from dbops.postgres.connection import ConnectionSpec, describe_error
from dbops.postgres.tools import StderrTail

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
    tables: list[tuple[str, str]] | None = Field(
        default=None,
        description="parallel format only: (schema, name) of the tables whose rows to back up, with their partitions "
        "and inheritance children (a selective restore's safety backup); None: every table",
    )
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


def upload_dump(
    expected_bytes: int,
    argv: list[str],
    env: dict[str, str],
    key: str,
    request: BackupRequest,
    deadline: Deadline,
    progress: Progress | None,
    what: str,
    started: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> StoredObject:
    """pg_dump into one object. pg_dump starts first: it reads the catalog while the upload is being set up.
    `started` is handed the running pg_dump (a parallel backup stops it when a COPY fails)."""
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    if started is not None:
        started(proc)
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
    dump = upload_dump(expected, dump_argv, env, prefix + "database.dump.zst", request, limit, progress, "pg_dump")
    if request.kind != "predeploy":
        return dump, None
    try:
        schema_argv = [*common, "--schema-only", "--format=plain"]
        key = prefix + "schema.sql.zst"
        return dump, upload_dump(0, schema_argv, env, key, request, limit, progress, "pg_dump --schema-only")
    except BaseException:
        discard(request.bucket, [dump.key])
        raise


def run_backup(
    spec: ConnectionSpec,
    request: BackupRequest,
    *,
    deadline: float | None = None,
    progress: Progress | None = None,
) -> BackupManifest:
    """Dump one database into the bucket; returns the committed manifest or raises BackupError."""
    if request.tables is not None:
        raise BackupError(f"backup of {request.database}: only the parallel format backs up some tables alone")
    limit = Deadline(deadline)
    backup_id = catalog.new_backup_id()
    prefix = catalog.backup_prefix(request.kind, request.database, backup_id)
    written: list[str] = []
    try:
        with open_source(spec, request.database, request.pg_bin_dir, request.lock_wait_timeout_s, limit) as source:
            # the first failure is the one reported: counts that failed end the snapshot pg_dump imports
            with (
                SnapshotHolder(source.conn, source.lock_wait_s) as holder,
                holder.first_failure(request.database, limit),
            ):
                pg_dump = source.pg_dump.path
                dump, schema_sql = _dump_in_snapshot(holder, spec, pg_dump, prefix, request, limit, progress)
                written.extend(o.key for o in (dump, schema_sql) if o is not None)
                tables = holder.stats(request.database)
            manifest = source.manifest(
                id=backup_id,
                database=request.database,
                kind=request.kind,
                dump=dump,
                schema_sql=schema_sql,
                tables=tables,
                labels=request.labels,
            )
            limit.check(request.database)
            # committed, and only then the (advisory) lock released
            catalog.write_manifest(request.bucket, manifest, request.object_lock())
        return manifest
    except BaseException as exc:
        discard(request.bucket, written)
        raise failure(exc, limit, request.database) from None


def failure(exc: BaseException, limit: Deadline, database: str) -> BaseException:
    """What a failed backup raises: a BackupError naming the database and the cause (the time limit when it
    had passed); anything that is not a database, tool or storage failure as it was."""
    if isinstance(exc, BackupError):
        return exc
    if isinstance(exc, DbopsError | psycopg.Error):
        reason = describe_error(exc)
        if limit.expired():  # a lock wait or a statement cut short by the deadline
            return limit.error(database, reason)
        unreached = isinstance(exc, DbopsError) and exc.could_not_run
        if isinstance(exc, ToolError):
            return BackupError(reason, could_not_run=unreached)
        return BackupError(f"backup of database {database} failed: {reason}", could_not_run=unreached)
    return exc


def discard(bucket: str, keys: list[str]) -> None:
    """Remove objects of a backup that did not commit: no manifest, no leftovers that look whole."""
    for key in keys:
        try:
            s3stream.delete_object(bucket, key)
        except DbopsError:
            pass  # no manifest was written, so the catalog never shows it; lifecycle expires it
