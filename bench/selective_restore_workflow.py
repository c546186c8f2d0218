"""Selective against full restore through the restore state machine, by the executions' own times:

    python -m bench.selective_restore_workflow [--scale 9] [--jobs 2] [--repeat 1]

The sample is backed up once in the parallel format (2 COPY workers) into a moto bucket; then the synthesized
restore state machine runs on the local stack (moto in this process, the step functions dispatched to their
handlers, as `make demo` and tests/workflow run it), the two sides alternating:

- a selective restore of the smallest table with rows (`teams`) into the live database, damaged a little before
  each run (10 % of its names edited), so the swap has work: Validate, **its safety backup** (the table's rows
  alone, a parallel backup of its own kind), Stage (the schema archive's TOC filtered, the table's one object read
  from S3), Check, Swap, Finish;
- a full restore of the same backup into a new database (`target`): no safety backup and no swap rename, the
  cheapest full restore there is (the ratio would be lower against a full restore over the live database, whose
  safety backup is a whole one). The new database is dropped after each run, outside the timing.

Each side's time is its execution's stopDate - startDate as moto's Step Functions records them; the time spent
in each state (entry to exit; SafetyBackup and Stage overlap inside SafetyBackupAndStage) is printed from the
execution history. After each selective run the table must hold the backup's
rows again. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import datetime
from typing import Any

from psycopg import sql

from bench.common import SAMPLE, mb, sample_server
from bench.selective_restore import damage_for, execute
from dbops import aws
from dbops.aws.stepfunctions import follow
from dbops.backup import catalog
from dbops.backup.parallel.run import run_parallel_backup
from dbops.backup.run import BackupRequest
from dbops.backup.verify import verify_entry
from dbops.postgres.connection import ConnectionSpec
from dbops.restore import databases
from dbops.restore.models import RestoreRequest
from dbops.restore.runner import start_restore
from local_stack.aws import LocalAws

FULL_TARGET = "bench_full_restore"
TABLE = "teams"  # the sample's smallest table with rows (100 rows at any scale)


def _spans(arn: str) -> tuple[list[tuple[str, float]], datetime]:
    """Each state and the seconds from its entry to its exit, in the order they were left (the branches of a
    Parallel overlap: the Parallel's own span is the longer one's), and when the first state was entered."""
    events = aws.client("stepfunctions").get_execution_history(executionArn=arn, maxResults=1000)["events"]
    entered: dict[str, datetime] = {}
    spans: list[tuple[str, float]] = []
    first = min(e["timestamp"] for e in events if "stateEnteredEventDetails" in e)
    for event in events:
        if "stateEnteredEventDetails" in event:
            entered[event["stateEnteredEventDetails"]["name"]] = event["timestamp"]
        elif "stateExitedEventDetails" in event:
            name = event["stateExitedEventDetails"]["name"]
            spans.append((name, (event["timestamp"] - entered.pop(name)).total_seconds()))
    return spans, first


def _run(machine: str, request: RestoreRequest, label: str) -> tuple[float, dict[str, Any]]:
    arn = start_restore(machine, request)
    description = follow(arn, poll_s=0.2)
    if description["status"] != "SUCCEEDED":
        raise SystemExit(f"{label}: {description['status']}: {description.get('cause')}")
    output = json.loads(description["output"])
    if output.get("status") == "refused":
        raise SystemExit(f"{label}: {output}")
    seconds = (description["stopDate"] - description["startDate"]).total_seconds()
    spans, first = _spans(arn)
    shown = ", ".join(f"{name} {s:.2f}" for name, s in spans if s >= 0.05)
    small = [s for _, s in spans if s < 0.05]
    before = (first - description["startDate"]).total_seconds()
    print(
        f"# {label}: {seconds:.2f} s: {shown}; {len(small)} other states {sum(small):.2f}; before the first state "
        f"{before:.2f}",
        flush=True,
    )
    return seconds, output


def selective(machine: str, spec: ConnectionSpec, backup_id: str, expected_rows: int, scale: float) -> float:
    damage = damage_for(TABLE)
    for query in damage.apply:
        execute(spec, query, scale)
    os.sync()
    seconds, output = _run(machine, RestoreRequest(backup=backup_id, tables=[TABLE]), f"selective {TABLE}")
    left = execute(spec, damage.left, scale)
    rows = execute(spec, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(TABLE)))
    if left or rows != expected_rows:
        raise SystemExit(
            f"after the selective restore {TABLE} has {rows} rows (backup {expected_rows}), {left} damaged"
        )
    if not output.get("safety_backup_id"):
        raise SystemExit(f"the selective restore took no safety backup: {output}")
    return seconds


def full(machine: str, spec: ConnectionSpec, backup_id: str) -> float:
    os.sync()
    seconds, _ = _run(machine, RestoreRequest(backup=backup_id, target=FULL_TARGET), "full into a new database")
    databases.drop(spec, FULL_TARGET)
    os.sync()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=9.0, help="9 is about 1 GB")
    parser.add_argument("--jobs", type=int, default=2, help="COPY workers of the backup; pg_restore -j and loads")
    parser.add_argument("--repeat", type=int, default=1, help="best of N, the sides alternating")
    args = parser.parse_args()
    with LocalAws(), sample_server({SAMPLE: args.scale}) as (pg, specs):
        spec = specs[SAMPLE]
        bucket = "dbops-bench-selective"
        aws.client("s3").create_bucket(Bucket=bucket)
        manifest = run_parallel_backup(spec, BackupRequest(database=SAMPLE, bucket=bucket), workers=args.jobs)
        verify_entry(bucket, catalog.find_backup(bucket, manifest.id))
        print(
            f"# parallel backup {manifest.id}: {len(manifest.data)} data objects, {mb(manifest.raw_bytes)} of COPY "
            f"text and schema, {mb(manifest.archive_bytes)} stored, in {manifest.duration_seconds:.1f}s",
            flush=True,
        )
        os.environ.update(
            {
                "DBOPS_BUCKET": bucket,
                "DBOPS_RESTORE_JOBS": str(args.jobs),
                "DBOPS_MAX_STREAMS": str(args.jobs),
                "DBOPS_DATABASES": json.dumps([{"name": SAMPLE, "url": pg.url(SAMPLE)}]),
            }
        )
        from local_stack import workflow  # synthesizes with CDK

        machine = workflow.deploy_restore_workflow(retry_interval_s=1, retry_attempts=1)
        rows = next(t.rows for t in manifest.tables if t.name == TABLE)
        runs: dict[str, list[float]] = {"selective": [], "full": []}
        for i in range(args.repeat):
            for side in ("selective", "full") if i % 2 == 0 else ("full", "selective"):
                if side == "selective":
                    runs[side].append(selective(machine, spec, manifest.id, rows, args.scale))
                else:
                    runs[side].append(full(machine, spec, manifest.id))
    best = {side: min(times) for side, times in runs.items()}
    print()
    print(f"| execution (startDate to stopDate), best of {args.repeat} | seconds |")
    print("|---|---|")
    print(f"| selective restore of `{TABLE}` ({rows} rows) into the live database, safety backup included | "
          f"{best['selective']:.2f} |")  # fmt: skip
    print(f"| full restore into a new database | {best['full']:.2f} |")
    print(f"| ratio selective / full (target < 0.05) | {best['selective'] / best['full']:.3f}x |")


if __name__ == "__main__":
    main()
