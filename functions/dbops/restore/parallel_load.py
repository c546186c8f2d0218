"""A full restore of a parallel backup: pre-data, the rows streamed from S3 into COPY N at a time, then the rest.

The schema archive is small and pg_restore -j needs a regular file, so it is saved to a temporary folder; the data
objects never touch disk: each is read from S3, checked (size, sha256) and decompressed on the way into a psql
`COPY ... FROM STDIN`, and a copy whose object turns out not to match is killed before its COPY ends, so it
commits nothing. Order, as pg_restore's own: pre-data (tables, types, functions), the rows of the data objects, then
in one pg_restore -j the archive's own data (the small tables' rows, sequence values, large objects, extension
configuration) and post-data (indexes, constraints, triggers, materialized views refreshed). With no data object
to load (a selective restore of tables small enough to be in the archive), one pg_restore does it all.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

from psycopg import sql

from dbops.backup import stored
from dbops.backup.catalog import BackupManifest, DataObject
from dbops.errors import DbopsError, RestoreError, VerificationFailed
from dbops.postgres.connection import ConnectionSpec
from dbops.postgres.pgrestore import run_pg_restore
from dbops.postgres.tools import StderrTail, find_tool
from dbops.restore.archive import ByteCount, Counted, Progress, download, restore_jobs, selective_list

COPY_TIMEOUT_S = 6 * 3600  # one object's COPY: a statement timeout that only a stuck server reaches
LOCK_TIMEOUT_S = 60


def copy_into(obj: DataObject) -> sql.Composed:
    table = sql.Identifier(obj.schema_name, obj.table)
    if not obj.columns:  # no column of its own to name (all generated, or none): the default list is the same
        return sql.SQL("COPY {} FROM STDIN").format(table)
    return sql.SQL("COPY {} ({}) FROM STDIN").format(table, sql.SQL(", ").join(map(sql.Identifier, obj.columns)))


def _what(obj: DataObject) -> str:
    return f"table {obj.schema_name}.{obj.table} {obj.range_text} (s3 object {obj.key})"


def load_object(
    bucket: str, obj: DataObject, target: ConnectionSpec, encoding: str, psql: Path, counted: Counted | None = None
) -> None:
    """Stream one data object into its table (`counted(bytes)` as it goes); raises RestoreError naming the table
    and range."""
    settings = [
        sql.SQL("SET statement_timeout = {}").format(sql.Literal(f"{COPY_TIMEOUT_S}s")),
        sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{LOCK_TIMEOUT_S}s")),
        sql.SQL("SET row_security = off"),
        sql.SQL("SET DateStyle = ISO"),
        sql.SQL("SET IntervalStyle = postgres"),
    ]
    argv = [str(psql), "--no-psqlrc", "--quiet", "--no-password", "-v", "ON_ERROR_STOP=1"]
    for statement in [*settings, copy_into(obj)]:
        argv += ["-c", statement.as_string(None)]
    env = {**target.libpq_env(), "PGCLIENTENCODING": encoding, "PGAPPNAME": "dbops-load"}
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stderr is not None
    stderr = StderrTail(proc.stderr)
    try:
        for data in stored.read_back(bucket, obj):
            proc.stdin.write(data)
            if counted is not None:
                counted(len(data))
        proc.stdin.close()  # the object matched its manifest to the end: only now may the COPY finish
    except BrokenPipeError:
        pass  # psql stopped: its exit code and stderr say why
    except (VerificationFailed, DbopsError) as exc:
        proc.kill()
        proc.wait()
        raise RestoreError(f"loading {_what(obj)} failed: {exc}") from None
    finally:
        if proc.poll() is None and not proc.stdin.closed:
            proc.kill()
    returncode = proc.wait()
    if returncode != 0:
        raise RestoreError(f"loading {_what(obj)} failed (psql exit code {returncode}): {stderr.text()}")


def load_rows(
    bucket: str,
    objects: list[DataObject],
    encoding: str,
    target: ConnectionSpec,
    jobs: int,
    psql: Path,
    counted: Counted | None = None,
) -> None:
    """The data objects, `jobs` at a time, largest first; the first failure is raised once the others ended."""
    objects = sorted(objects, key=lambda o: -o.raw_size)
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="dbops-load") as pool:
        futures = [pool.submit(load_object, bucket, obj, target, encoding, psql, counted) for obj in objects]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in futures if f in done and f.exception() is not None), None)
        if failed is not None:
            for f in futures:
                f.cancel()
            raise failed.exception()  # type: ignore[misc]


def whole_refused(manifest: BackupManifest) -> str:
    names = ", ".join(t.qualified for t in manifest.tables)
    return f"backup {manifest.id} holds the rows of some tables only ({names}): restore those tables from it"


def restore_parallel(
    bucket: str,
    manifest: BackupManifest,
    target: ConnectionSpec,
    *,
    jobs: int = 2,
    pg_bin_dir: str | None = None,
    work_dir: str | None = None,
    chosen: set[int] | None = None,
    progress: Progress | None = None,
) -> None:
    """Restore a parallel backup into `target`, an empty database that exists. `chosen` (pg_class OIDs): only
    those tables, as a selective restore stages them (the schema archive's TOC filtered to them, as
    `archive.selective_list` filters a single archive's), and only their data objects read from S3.
    `progress("restore", bytes)`: the schema archive's and the rows' bytes read from the bucket (decompressed)."""
    if manifest.format != "parallel":
        raise RestoreError(f"backup {manifest.id} is a single-archive backup: restore it with pg_restore")
    if manifest.tables_only and chosen is None:
        raise RestoreError(whole_refused(manifest))
    psql = find_tool("psql", pg_bin_dir)
    folder = Path(tempfile.mkdtemp(prefix="dbops-parallel-", dir=work_dir))
    try:
        counted = ByteCount(progress, "restore")
        archive = download(bucket, manifest.dump, folder / "schema.dump", counted)
        only: list[str] = []
        objects = manifest.data
        if chosen is not None:
            listing = selective_list(archive, manifest.tables, chosen, folder, pg_bin_dir)
            only = [f"--use-list={listing}"]
            objects = [o for o in manifest.data if o.table_oid in chosen]
        parallel = f"--jobs={restore_jobs(manifest.tables, jobs, chosen)}"
        rest: list[str] = []  # every section: no data object to load between pre-data and the rest
        if objects:
            run_pg_restore(target, ["--section=pre-data", *only], archive=archive, pg_bin_dir=pg_bin_dir)
            load_rows(bucket, objects, manifest.encoding or "UTF8", target, jobs, psql, counted)
            rest = ["--section=data", "--section=post-data"]
        # the archive's own data (the small tables' rows, sequence values, large objects, extension
        # configuration), then post-data, in one pg_restore -j that orders them by their dependencies
        run_pg_restore(target, [*rest, parallel, *only], archive=archive, pg_bin_dir=pg_bin_dir)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(folder)
