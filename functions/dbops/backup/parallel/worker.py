"""One job of a parallel backup: psql COPYs a table's range in the shared snapshot, through zstd and sha256, into S3.

psql, not psycopg, reads the rows: libpq hands a client one row per call, which in Python costs more than the
database spends producing it, while psql writes the stream to a pipe read here 4 MB at a time. The session imports
the exported snapshot (REPEATABLE READ, SET TRANSACTION SNAPSHOT) and reads with row security off, as pg_dump does.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import zstandard
from psycopg import sql

from dbops.aws import s3stream
from dbops.aws.part_buffers import PartBuffers
from dbops.backup.catalog import DataObject
from dbops.backup.deadline import Deadline
from dbops.backup.parallel.plan import Job
from dbops.errors import BackupError, DbopsError
from dbops.postgres import pipes
from dbops.postgres.tools import StderrTail

READ_CHUNK = 4 * 1024 * 1024
ROWS_MARKER = "dbops-rows"  # psql's stderr line with the rows of the COPY
APPLICATION = "dbops-copy"  # each worker session's application_name: dbops-copy <table oid>.<range>


@dataclass(frozen=True)
class CopySession:
    """What every COPY session of one backup shares."""

    psql: Path
    env: dict[str, str]  # libpq's environment (the password never in argv)
    snapshot: str
    encoding: str
    lock_wait_s: int
    bucket: str
    prefix: str
    compression_level: int
    lock: s3stream.ObjectLock | None = None  # S3 Object Lock on each object written (backup_lock)
    buffers: PartBuffers = field(default_factory=PartBuffers)  # upload parts, object to object


class Running:
    """The psql processes running now: on the first failure the others are stopped at once."""

    def __init__(self) -> None:
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self.stopped = False
        self.cause: BaseException | None = None

    def start(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with self._lock:
            if self.stopped:
                raise BackupError("stopped: another part of the backup failed")
            proc = subprocess.Popen(
                argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            self._procs.add(proc)
            return proc

    def adopt(self, proc: subprocess.Popen[bytes]) -> None:
        """A process started elsewhere (pg_dump of the schema) stopped with the rest."""
        with self._lock:
            self._procs.add(proc)
            if self.stopped:
                proc.kill()

    def done(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._procs.discard(proc)

    def stop_all(self) -> None:
        with self._lock:
            self.stopped = True
            for proc in self._procs:
                proc.kill()

    def fail(self, exc: BaseException) -> None:
        """Record the first failure (the cause: what the others fail of afterwards is its consequence) and stop
        everything running."""
        with self._lock:
            if self.cause is None and not self.stopped:
                self.cause = exc
        self.stop_all()


def copy_query(job: Job) -> sql.Composed:
    """COPY of the job's rows in text format (pg_dump's own: every type has a text form, and it loads into any
    newer server), the table's own rows only, its pages [first_page, end_page) (a TID range scan from 14)."""
    table = job.table
    bounds: list[sql.Composable] = []
    if job.first_page is not None:
        bounds.append(sql.SQL("ctid >= {}::tid").format(sql.Literal(f"({job.first_page},0)")))
    if job.end_page is not None:
        bounds.append(sql.SQL("ctid < {}::tid").format(sql.Literal(f"({job.end_page},0)")))
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(bounds) if bounds else sql.SQL("")
    return sql.SQL("COPY (SELECT {} FROM ONLY {}{}) TO STDOUT").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in table.columns),
        sql.Identifier(table.schema_name, table.name),
        where,
    )


def _script(session: CopySession, job: Job, statement_timeout_s: int) -> bytes:
    """The session's settings, the snapshot imported, the COPY and its row count. psql sets ROW_COUNT after a COPY
    TO STDOUT only when `\\g` names where the rows go (here its own stdout); `\\warn` writes the count to stderr."""
    statements = [
        sql.SQL("SET statement_timeout = {}").format(sql.Literal(f"{statement_timeout_s}s")),
        sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{session.lock_wait_s}s")),
        sql.SQL("SET idle_in_transaction_session_timeout = 0"),
        sql.SQL("SET row_security = off"),  # every row, as pg_dump: errors when the role would see fewer
        sql.SQL("SET DateStyle = ISO"),
        sql.SQL("SET IntervalStyle = postgres"),
        sql.SQL("SET extra_float_digits = 3"),
        sql.SQL("SET max_parallel_workers_per_gather = 0"),  # the backup's workers are the parallelism
        sql.SQL("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
        sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(session.snapshot)),
    ]
    script = "".join(s.as_string(None) + ";\n" for s in statements)
    script += copy_query(job).as_string(None) + " \\g /dev/stdout\n"
    script += f"\\warn {ROWS_MARKER} :ROW_COUNT\nCOMMIT;\n"
    return script.encode()


def _rows(stderr: str, what: str) -> int:
    """The rows COPY wrote, as psql reported them (the last line of its stderr that carries the count)."""
    for line in reversed(stderr.splitlines()):
        if line.startswith(ROWS_MARKER + " "):
            return int(line.removeprefix(ROWS_MARKER + " "))
    raise BackupError(f"copy of {what}: psql reported no row count ({stderr or 'no output'})")


def _pump(proc: subprocess.Popen[bytes], upload: s3stream.MultipartUpload, level: int) -> int:
    """psql's output compressed into the upload; returns its bytes."""
    assert proc.stdout is not None
    compressor = zstandard.ZstdCompressor(level=level).compressobj()
    view = memoryview(bytearray(READ_CHUNK))
    raw = 0
    while size := pipes.fill(proc.stdout.fileno(), view):
        raw += size
        upload.write(compressor.compress(view[:size]))
    upload.write(compressor.flush())
    return raw


def copy_job(session: CopySession, job: Job, running: Running, deadline: Deadline) -> DataObject:
    """Copy one job into its own object; raises BackupError naming the table and range."""
    key = f"{session.prefix}data-{job.table.oid}.{job.index}.zst"  # beside the manifest: a backup is one folder
    name = f"{APPLICATION} {job.table.oid}.{job.index}"
    env = {**session.env, "PGAPPNAME": name, "PGCLIENTENCODING": session.encoding}
    argv = [str(session.psql), "--no-psqlrc", "--quiet", "--no-password", "-v", "ON_ERROR_STOP=1", "--file=-"]
    timeout_s = 0 if deadline.at is None else max(1, math.ceil(deadline.at - time.monotonic()))
    proc = running.start(argv, env)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stderr = StderrTail(proc.stderr)
    watchdog = deadline.watch(proc)
    try:
        pipes.widen(proc.stdout)
        with contextlib.suppress(BrokenPipeError):  # psql gone at once: its exit code and stderr say why
            proc.stdin.write(_script(session, job, timeout_s))
            proc.stdin.close()
        part_size = s3stream.part_size_for(job.bytes)
        with s3stream.MultipartUpload(
            session.bucket, key, part_size=part_size, lock=session.lock, buffers=session.buffers
        ) as upload:
            raw = _pump(proc, upload, session.compression_level)
            returncode = proc.wait()
            if returncode != 0:
                reason = "stopped" if running.stopped else f"psql exit code {returncode}"
                raise BackupError(f"copy of {job.what} failed ({reason}): {stderr.text() or 'no error output'}")
            rows = _rows(stderr.text(), job.what)
            digest = upload.complete()
    except DbopsError as exc:
        if isinstance(exc, BackupError) and str(exc).startswith(f"copy of {job.what}"):
            raise
        raise BackupError(f"copy of {job.what} failed: {exc}") from None
    finally:
        if watchdog is not None:
            watchdog.cancel()
        proc.kill()
        proc.wait()
        running.done(proc)
    table = job.table
    return DataObject(
        key=key,
        size=upload.size,
        sha256=digest,
        raw_size=raw,
        table_oid=table.oid,
        schema_name=table.schema_name,
        table=table.name,
        columns=list(table.columns),
        first_page=job.first_page,
        end_page=job.end_page,
        rows=rows,
    )
