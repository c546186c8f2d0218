"""A parallel backup: pg_dump's archive without the tables' rows, the rows as COPY ranges N at a time, manifest last.

One repeatable-read transaction exports the snapshot and holds it (and an ACCESS SHARE lock on every copied table,
as pg_dump takes) until the last object is written. pg_dump writes, in that snapshot, everything but the copied
tables' rows (`--exclude-table-data` for each, by exact quoted name): the schema, sequence values, large objects,
materialized views' REFRESH, extension configuration tables, and the rows of the small tables (`plan.in_archive`:
a COPY job of their own would cost more than their rows). The workers COPY each other table's own rows (a leaf
partition's, not a partitioned parent's; generated columns left out) in heap-page ranges into objects of their
own. Memory: each worker holds its read buffer (4 MB), up to three upload parts (8 MB each, passed on from one
object to the next) and a zstd context: about 45 MB a worker over the process's own, as measured (bench/README.md).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import partial
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from dbops.aws import s3stream
from dbops.backup import catalog
from dbops.backup.catalog import BackupManifest, DataObject, StoredObject, TableStat
from dbops.backup.deadline import Deadline
from dbops.backup.parallel.plan import (
    SMALL_TABLE_BYTES,
    Job,
    SourceTable,
    copied_tables,
    in_archive,
    named_tables,
    plan_jobs,
    range_bytes_for,
)
from dbops.backup.parallel.worker import CopySession, Running, copy_job
from dbops.backup.run import BackupRequest, Progress, discard, failure, upload_dump
from dbops.backup.snapshot import SnapshotHolder
from dbops.backup.source import open_source
from dbops.errors import StorageError
from dbops.postgres.connection import ConnectionSpec
from dbops.postgres.tools import find_tool

LOCK_BATCH = 500  # tables locked a statement at a time
T = TypeVar("T")


def _pattern(table: SourceTable) -> str:
    """The table's exact name as a pg_dump pattern: each part double-quoted (quotes doubled), so no character in
    it is a wildcard."""
    return '"' + table.schema_name.replace('"', '""') + '"."' + table.name.replace('"', '""') + '"'


def _lock(conn: psycopg.Connection[Any], tables: list[SourceTable]) -> None:
    """ACCESS SHARE on every copied table for the whole backup, as pg_dump: no TRUNCATE or DROP while it reads."""
    for i in range(0, len(tables), LOCK_BATCH):
        names = sql.SQL(", ").join(sql.Identifier(t.schema_name, t.name) for t in tables[i : i + LOCK_BATCH])
        conn.execute(sql.SQL("LOCK TABLE ONLY {} IN ACCESS SHARE MODE").format(names))


def _run_all(
    jobs: list[Job],
    work: Callable[[Job], DataObject],
    running: Running,
    workers: int,
    schema_dump: Callable[[], StoredObject],
) -> tuple[StoredObject, list[DataObject]]:
    """The schema dump beside the jobs, `workers` COPYs at a time. The first failure stops everything running
    and is the one raised (it names its table and range; what the others then fail of is its consequence)."""

    def guarded(step: Callable[[], T]) -> T:
        try:
            return step()
        except BaseException as exc:
            running.fail(exc)
            raise

    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="dbops-schema") as one,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dbops-copy") as pool,
    ):
        dump = one.submit(guarded, schema_dump)
        copies = [pool.submit(guarded, partial(work, job)) for job in jobs]
        futures: list[Future[Any]] = [dump, *copies]
        wait(futures)
    if running.cause is not None:
        raise running.cause
    return dump.result(), [f.result() for f in copies]


def run_parallel_backup(
    spec: ConnectionSpec,
    request: BackupRequest,
    *,
    workers: int,
    deadline: float | None = None,
    progress: Progress | None = None,
    range_bytes: int | None = None,
    small_bytes: int = SMALL_TABLE_BYTES,
) -> BackupManifest:
    """Back up one database in the parallel format; returns the committed manifest or raises BackupError.
    `range_bytes`: the size of a COPY range (default: `range_bytes_for`); `small_bytes`: tables under it have their
    rows in pg_dump's archive (see `plan.in_archive`), 0 puts every table into COPY jobs."""
    limit = Deadline(deadline)
    backup_id = catalog.new_backup_id()
    prefix = catalog.backup_prefix(request.kind, request.database, backup_id)
    try:
        psql = find_tool("psql", request.pg_bin_dir)
        with open_source(spec, request.database, request.pg_bin_dir, request.lock_wait_timeout_s, limit) as source:
            conn, lock_wait_s = source.conn, source.lock_wait_s
            encoding = str(conn.execute("SHOW server_encoding").fetchone()[0])  # type: ignore[index]
            with SnapshotHolder(conn, lock_wait_s) as holder:
                snapshot = holder.export()
                tables = copied_tables(conn, source.server_num)
                keep = None if request.tables is None else named_tables(conn, request.tables)
                kept = tables if keep is None else [t for t in tables if t.oid in keep]
                small = in_archive(kept, small_bytes, range_bytes_for(kept, workers))
                copied = [t for t in kept if t.oid not in small]
                excluded = [t for t in tables if t.oid not in small]  # pg_dump writes the small tables' rows only
                _lock(conn, copied)
                # a limited backup reads no other table's rows, not even to count them; the holder counts the
                # small tables' rows, COPY the others'
                outside = [] if keep is None else [t.oid for t in holder.tables if t.oid not in keep]
                holder.start_counting(skip=[*(t.oid for t in copied), *(o for o in outside if o is not None)])
                jobs = plan_jobs(copied, range_bytes or range_bytes_for(copied, workers))
                session = CopySession(
                    psql,
                    spec.libpq_env(),
                    snapshot,
                    encoding,
                    lock_wait_s,
                    request.bucket,
                    prefix,
                    request.compression_level,
                    request.object_lock(),
                )
                running = Running()
                argv = [
                    str(source.pg_dump.path), "--no-password", f"--snapshot={snapshot}",
                    f"--lock-wait-timeout={lock_wait_s}s", "--format=custom", "--compress=0",
                    *(f"--exclude-table-data={_pattern(t)}" for t in excluded),
                    *([] if keep is None else ["-B"]),  # no large objects: they belong to no table
                ]  # fmt: skip

                def schema_dump() -> StoredObject:
                    key = prefix + "schema.dump.zst"
                    env = {**spec.libpq_env(), "PGAPPNAME": "dbops-schema"}
                    return upload_dump(0, argv, env, key, request, limit, progress, "pg_dump", running.adopt)

                def work(job: Job) -> DataObject:
                    obj = copy_job(session, job, running, limit)
                    if progress:
                        progress(f"copy of {job.what}", obj.raw_size)
                    return obj

                # counts that failed end the snapshot the COPYs and pg_dump import: theirs is the error reported
                with holder.first_failure(request.database, limit):
                    dump, objects = _run_all(jobs, work, running, workers, schema_dump)
                    stats = _with_rows(holder.stats(request.database), objects)
                if keep is not None:
                    stats = [t for t in stats if t.oid in keep]
            manifest = source.manifest(
                id=backup_id,
                database=request.database,
                kind=request.kind,
                format="parallel",
                dump=dump,
                data=sorted(objects, key=lambda o: (o.table_oid, o.first_page or 0)),
                workers=workers,
                encoding=encoding,
                tables=stats,
                tables_only=keep is not None,
                labels=request.labels,
            )
            limit.check(request.database)
            catalog.write_manifest(request.bucket, manifest, request.object_lock())
        return manifest
    except BaseException as exc:
        _clean_up(request.bucket, prefix)
        raise failure(exc, limit, request.database) from None


def _clean_up(bucket: str, prefix: str) -> None:
    """Every upload of this backup still open aborted and every object it completed deleted (no manifest was
    written, so none of them is a backup). S3 unreachable: the lifecycle aborts and expires what is left."""
    try:
        s3stream.abort_uploads(bucket, prefix)
        discard(bucket, list(s3stream.list_keys(bucket, prefix)))
    except StorageError:
        pass


def _with_rows(tables: list[TableStat], objects: list[DataObject]) -> list[TableStat]:
    """The manifest's tables, a copied table's rows the sum of its ranges' (counted by COPY in the snapshot)."""
    rows: dict[int, int] = {}
    for obj in objects:
        rows[obj.table_oid] = rows.get(obj.table_oid, 0) + obj.rows
    for table in tables:
        if table.oid in rows:
            table.rows = rows[table.oid]
    return tables
