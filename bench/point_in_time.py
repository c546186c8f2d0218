"""Point-in-time table restore benchmark: the RTO of `dbops restore --table issues --as-of T` on the local stack
with a ~1 GB database, split by phase, against the same restore done by hand in the same run.

    python -m bench.point_in_time [--scale 9] [--table issues]

The local stand-in for RDS is real PostgreSQL point-in-time recovery (local_stack.pitr / local_stack.rds): the
server archives its WAL into a directory from a base backup taken after the data is loaded. Then every row of
the table is deleted at a recorded moment T, and:

- dbops: the synthesized restore state machine (moto's Step Functions, the step handlers in-process) restores
  the table as of one second before T. Phases come from the execution's history: recovery to T (restore call to
  the instance available, polled every second), dump of the temporary instance, safety backup of the live
  database, stage, check, swap, and the whole execution.
- by hand, what an operator does on RDS without dbops: recover a copy to the same moment
  (WalArchive.recover_to, the same recovery the stand-in runs), `pg_dump -Fc -t <table>` from it, then
  `TRUNCATE` and `pg_restore --data-only -t <table>` into the live database; no safety backup, no check.

The table must hold exactly its rows of before T after each side (count and md5).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from psycopg import sql

from bench.common import mb
from dbops import aws
from dbops.aws.stepfunctions import follow
from dbops.cli.sample_data import create_sample_data
from dbops.postgres.connection import ConnectionSpec, connect
from dbops.restore.models import RestoreRequest
from dbops.restore.runner import start_restore
from local_stack import rds
from local_stack.aws import LocalAws
from local_stack.fingerprint import table_fingerprints
from local_stack.pitr import WalArchive
from local_stack.postgres import LocalPostgres, embedded_bin_dir
from local_stack.workflow import deploy_restore_workflow

DATABASE = "sprint_reports_v2"
INSTANCE = "bench-pitr"
PHASES = (
    ("recovery to T (instance available)", "RestoreToPointInTime", "DumpPointInTime"),
    ("dump of the temporary instance", "DumpPointInTime", "WhatNext"),
    ("safety backup of the live database", "SafetyBackup", "StopApplication"),
    ("stage", "Stage", "Check"),
    ("check", "Check", "DrillOrSwap"),
    ("swap", "Swap", "StartApplication"),
)


def delete_all(spec: ConnectionSpec, table: str) -> datetime:
    """Delete every row of the table; the deleting transaction's now(), after a second of quiet before it."""
    time.sleep(1.1)
    with connect(spec) as conn:
        row = conn.execute(
            sql.SQL("WITH gone AS (DELETE FROM {} RETURNING 1) SELECT count(*), now() FROM gone").format(
                sql.Identifier(table)
            )
        ).fetchone()
    assert row is not None
    print(f"  deleted {row[0]:,} rows of {table} at {row[1].isoformat()}")
    return row[1].astimezone(UTC)


def phases(execution: str) -> dict[str, float]:
    """Seconds between states entered, from the execution's history, and the whole execution."""
    events = aws.client("stepfunctions").get_execution_history(executionArn=execution, maxResults=1000)["events"]
    entered: dict[str, datetime] = {}
    for event in events:
        name = event.get("stateEnteredEventDetails", {}).get("name")
        if name and name not in entered:
            entered[name] = event["timestamp"]
    found = {label: (entered[b] - entered[a]).total_seconds() for label, a, b in PHASES}
    found["whole execution"] = (events[-1]["timestamp"] - events[0]["timestamp"]).total_seconds()
    return found


def by_hand(
    archive: WalArchive, server: LocalPostgres, spec: ConnectionSpec, table: str, as_of: datetime
) -> dict[str, float]:
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    archive.flush(server)  # as the stand-in's restore call does first (RDS ships the WAL every 5 minutes)
    copy = archive.recover_to(as_of, bin_dir=server.bin_dir)
    times["recovery to T"] = time.perf_counter() - t0
    folder = Path(tempfile.mkdtemp(prefix="bench-pitr-"))
    try:
        env = {**os.environ, "PGPASSWORD": copy.password}
        t0 = time.perf_counter()
        dump = folder / "table.dump"
        subprocess.run(
            [copy.bin("pg_dump"), "-Fc", "-Z0", "-t", f"public.{table}", "-f", str(dump), copy.url(spec.dbname)],
            env=env,
            check=True,
        )
        times["pg_dump -t of the copy"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with connect(spec) as conn:
            conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(table)))
        assert spec.password is not None
        subprocess.run(
            [copy.bin("pg_restore"), "--data-only", "-t", table, "-d", spec_url(spec), str(dump)],
            env={**os.environ, "PGPASSWORD": spec.password.get_secret_value()},
            check=True,
        )
        times["TRUNCATE + pg_restore --data-only"] = time.perf_counter() - t0
    finally:
        copy.destroy()
        shutil.rmtree(folder, ignore_errors=True)
    times["whole"] = sum(times.values())
    return times


def spec_url(spec: ConnectionSpec) -> str:
    return f"postgresql://{spec.user}@{spec.host}:{spec.port}/{spec.dbname}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=9.0, help="9 is about 1 GB")
    parser.add_argument("--table", default="issues")
    args = parser.parse_args()
    bin_dir = embedded_bin_dir()
    archive = WalArchive(Path(tempfile.mkdtemp(prefix="bench-pitr-wal-")))
    server = LocalPostgres(bin_dir, settings=archive.server_settings()).start()
    stack = LocalAws().start()
    try:
        admin = ConnectionSpec.from_url(server.url())
        spec = admin.for_database(DATABASE)
        with connect(admin) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        t0 = time.perf_counter()
        create_sample_data(spec, args.scale)
        with connect(spec) as conn:
            row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        size = int(row[0]) if row else 0
        print(f"sample data: {mb(size)} (scale {args.scale}) in {time.perf_counter() - t0:.0f}s")
        archive.take_base_backup(server)
        rds.create_local_instance(INSTANCE, server, archive)
        aws.client("s3").create_bucket(Bucket="bench-pitr")
        os.environ.update(
            {
                "DBOPS_BUCKET": "bench-pitr",
                "DBOPS_DATABASES": json.dumps(
                    [{"name": DATABASE, "url": server.url(DATABASE), "rds_instance_id": INSTANCE}]
                ),
                "POWERTOOLS_TRACE_DISABLED": "1",
                "POWERTOOLS_LOG_LEVEL": "WARNING",
                "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            }
        )
        machine = deploy_restore_workflow(retry_interval_s=1, retry_attempts=1)
        expected = table_fingerprints(spec)[f"public.{args.table}"]
        print(f"{args.table}: {expected[0]:,} rows")

        moment = delete_all(spec, args.table)
        as_of = moment - timedelta(seconds=1)
        os.sync()
        execution = start_restore(machine, RestoreRequest(tables=[args.table], as_of=as_of))
        description = follow(execution, poll_s=0.5)
        if description["status"] != "SUCCEEDED":
            raise SystemExit(f"dbops restore failed: {description.get('cause')}")
        ours = phases(execution)
        if table_fingerprints(spec)[f"public.{args.table}"] != expected:
            raise SystemExit("after dbops' restore the table differs from before the delete")

        moment = delete_all(spec, args.table)
        os.sync()
        hand = by_hand(archive, server, spec, args.table, moment - timedelta(seconds=1))
        if table_fingerprints(spec)[f"public.{args.table}"] != expected:
            raise SystemExit("after the restore by hand the table differs from before the delete")

        print(f"\npoint-in-time restore of {args.table} ({expected[0]:,} rows) from a {mb(size)} database")
        print(f"{'dbops, by phase':45} {'seconds':>8}")
        for label, seconds in ours.items():
            print(f"  {label:43} {seconds:8.1f}")
        print(f"{'by hand, by phase':45} {'seconds':>8}")
        for label, seconds in hand.items():
            print(f"  {label:43} {seconds:8.1f}")
        print(f"\nratio dbops / by hand (whole): {ours['whole execution'] / hand['whole']:.2f}x")
    finally:
        rds.stop_all()
        stack.stop()
        server.destroy()
        shutil.rmtree(archive.root, ignore_errors=True)


if __name__ == "__main__":
    main()
