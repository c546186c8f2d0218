"""Parallel-format restore benchmark, in one run, each side once:

- a full restore of a parallel backup streamed from S3 (`restore_parallel`: the schema archive saved to a
  temporary file, every data object read from the moto server through zstd into `COPY ... FROM STDIN`, N at a
  time; no data on local disk) against `pg_restore -jN` of the same data from a local file (`pg_dump -Fc -Z0` of
  the sample, written before and not timed);
- a selective restore of the smallest table with rows from the same backup (`restore_parallel` with `chosen`,
  as the Stage step runs it) against that full restore.

    python -m bench.restore_parallel [--scale 9] [--jobs 2]

Times are the wall time of the domain calls in this process (the restore state machine's own times are not
used); the moto server runs in a process of its own. Each restore goes into a new empty database, dropped
(and the page cache synced) before the next side starts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from psycopg import sql

from bench.common import SAMPLE, measure, moto_process, sample_server
from dbops import aws
from dbops.backup.catalog import TableStat
from dbops.backup.parallel.run import run_parallel_backup
from dbops.backup.run import BackupRequest
from dbops.postgres.connection import ConnectionSpec, connect
from dbops.postgres.tools import find_tool
from dbops.restore import databases
from dbops.restore.parallel_load import restore_parallel


def _fresh(spec: ConnectionSpec, name: str) -> ConnectionSpec:
    databases.drop(spec, name)
    databases.create(spec, name)
    return spec.for_database(name)


def _rows(spec: ConnectionSpec, table: TableStat) -> int:
    with connect(spec) as conn:
        name = sql.Identifier(table.schema_name, table.name)
        return int(conn.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(name)).fetchone()[0])  # type: ignore[index]


def _settle(spec: ConnectionSpec, name: str) -> None:
    databases.drop(spec, name)
    os.sync()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=9.0, help="9 is about 1 GB")
    parser.add_argument("--jobs", type=int, default=2, help="COPY streams of the backup and of each restore")
    args = parser.parse_args()
    with moto_process(), sample_server({SAMPLE: args.scale}) as (pg, specs):
        spec, bucket = specs[SAMPLE], "dbops-bench"
        aws.client("s3").create_bucket(Bucket=bucket)
        manifest = run_parallel_backup(spec, BackupRequest(database=SAMPLE, bucket=bucket), workers=args.jobs)
        smallest = min((t for t in manifest.tables if t.rows > 0 and t.oid is not None), key=lambda t: t.bytes)
        assert smallest.oid is not None
        objects = [o for o in manifest.data if o.table_oid == smallest.oid]
        bin_dir = str(pg.bin_dir)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "sample.dump"
            pg_dump = find_tool("pg_dump", bin_dir)
            subprocess.run(
                [str(pg_dump), "--no-password", "-Fc", "-Z0", f"--file={local}"], env=spec.libpq_env(), check=True
            )
            os.sync()
            baseline_db = _fresh(spec, "bench_baseline")
            env = {**os.environ, **baseline_db.libpq_env()}
            pg_restore = str(find_tool("pg_restore", bin_dir))
            baseline = measure([pg_restore, f"-j{args.jobs}", "-d", baseline_db.dbname, str(local)], env).seconds
            local_bytes = local.stat().st_size
        _settle(spec, "bench_baseline")

        full_db = _fresh(spec, "bench_full")
        t0 = time.perf_counter()
        restore_parallel(bucket, manifest, full_db, jobs=args.jobs, pg_bin_dir=bin_dir)
        full = time.perf_counter() - t0
        assert _rows(full_db, manifest.tables[0]) == manifest.tables[0].rows
        _settle(spec, "bench_full")

        one_db = _fresh(spec, "bench_one_table")
        t0 = time.perf_counter()
        restore_parallel(bucket, manifest, one_db, jobs=args.jobs, pg_bin_dir=bin_dir, chosen={smallest.oid})
        one = time.perf_counter() - t0
        assert _rows(one_db, smallest) == smallest.rows
        _settle(spec, "bench_one_table")

    stored = sum(o.size for o in manifest.data) + manifest.dump.size
    print()
    print(
        f"| measure (sample {manifest.raw_bytes / 1e9:.2f} GB as COPY text + schema archive, {len(manifest.data)} "
        f"data objects, {stored / 1e6:,.0f} MB stored; {args.jobs} jobs) | seconds |"
    )
    print("|---|---|")
    local_text = f"{local_bytes / 1e9:.2f} GB, pg_dump -Fc -Z0"
    print(f"| pg_restore -j{args.jobs} from a local file ({local_text}) | {baseline:.2f} |")
    schema_text = f"schema archive {manifest.dump.raw_size / 1e3:,.0f} kB on disk"
    print(f"| full parallel restore streamed from S3 ({schema_text}) | {full:.2f} |")
    print(f"| ratio parallel / pg_restore (target <= 1.2) | {full / baseline:.2f}x |")
    print(
        f"| selective restore of {smallest.qualified} ({smallest.rows:,} rows, {len(objects)} object(s) read) "
        f"| {one:.2f} |"
    )
    print(f"| ratio selective / full | {one / full:.3f}x |")


if __name__ == "__main__":
    main()
