"""Rehearsal benchmark: the test suite's Alembic project (tests/fixtures/alembic_sprint_reports) rehearsed on a
~0.5 GB sample restored from a backup, with the report and each phase's time.

    python -m bench.rehearsal [--scale 5] [--revision 0003] [--interval 20ms] [--deployed]

The sample is stamped at the revision before `--revision` and backed up (predeploy) into a moto bucket; then
`dbops rehearse`'s engine runs `alembic upgrade <revision>` on a scratch copy. 0003 rewrites report_snapshots
(the largest table) under ACCESS EXCLUSIVE: the figure to record is its measured lock time against the table's
size. With --deployed, the same rehearsal then runs through the restore state machine's mode rehearse on the
local stack (the migration and the watcher as the task's two containers), and the two are compared: time per
state, the lock measured by each, the ratio of the totals. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import SAMPLE, mb, moto_process, sample_server
from dbops import aws
from dbops.backup.run import BackupRequest, run_backup
from dbops.rehearsal import RehearsalRequest, RehearsalResult, format_report, parse_duration, run_rehearsal
from dbops.rehearsal.command import database_url
from local_stack.aws import LocalAws

ALEMBIC_INI = Path(__file__).parents[1] / "tests" / "fixtures" / "alembic_sprint_reports" / "alembic.ini"
ALEMBIC = [sys.executable, "-m", "alembic", "-c", str(ALEMBIC_INI)]
PREVIOUS = {"0002": "0001", "0003": "0002", "0004": "0003"}
SECRET = "dbops-local/sprint_reports_v2/rehearsal"


def _deployed(spec: Any, bucket: str, revision: str, interval: str, max_lock: str) -> tuple[RehearsalResult, float]:
    """The same rehearsal through the synthesized restore state machine (moto in this process, as `make demo`);
    returns its result and the execution's time (the synthesis and deployment before it not counted)."""
    from dbops.aws.stepfunctions import follow
    from infra.rehearsal_settings import DatabaseRehearsal
    from local_stack import workflow

    workflow.local_images["bench-migrations:local"] = ALEMBIC_INI.parent
    settings = DatabaseRehearsal(image="bench-migrations:local", interval=interval, max_lock=max_lock)
    machine = workflow.deploy_restore_workflow(rehearsals={SAMPLE: settings})
    config = {"name": SAMPLE, "url": database_url(spec), "rehearsal": settings.function_config(SECRET)}
    os.environ.update({"DBOPS_BUCKET": bucket, "DBOPS_DATABASES": json.dumps([config])})
    sfn = aws.client("stepfunctions")
    request = {"mode": "rehearse", "database": SAMPLE, "command": ["alembic", "upgrade", revision]}
    arn = sfn.start_execution(stateMachineArn=machine, name="bench", input=json.dumps(request))["executionArn"]
    description = follow(arn, poll_s=0.2)
    events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    entered = [
        (e["timestamp"], e["stateEnteredEventDetails"]["name"]) for e in events if "stateEnteredEventDetails" in e
    ]
    ends = [t for t, _ in entered[1:]] + [description["stopDate"]]
    spans = [(name, (end - start).total_seconds()) for (start, name), end in zip(entered, ends, strict=True)]
    shown = ", ".join(f"{name} {seconds:.1f}" for name, seconds in spans if seconds >= 0.1)
    total = (description["stopDate"] - description["startDate"]).total_seconds()
    print(f"# deployed: {description['status']} in {total:.1f}s: {shown}")
    output = json.loads(description["output"])
    body = aws.client("s3").get_object(Bucket=bucket, Key=output["result_key"])["Body"].read()
    return RehearsalResult.model_validate_json(body), total


def _lock_lines(result: RehearsalResult, label: str) -> None:
    for rewrite in result.rewrites:
        locks = [f.lock_s for f in result.findings if f.table == rewrite.table and f.lock_s is not None]
        lock = f"{max(locks):.2f}s" if locks else "unseen"
        print(f"# {label}: rewrite of {rewrite.table}: {mb(rewrite.bytes_before)}, ACCESS EXCLUSIVE held {lock}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=5.0, help="5 is about 0.58 GB")
    parser.add_argument("--revision", default="0003", choices=sorted(PREVIOUS), help="the revision rehearsed")
    parser.add_argument("--interval", default="20ms", help="sampling interval")
    parser.add_argument("--max-lock", default="5s")
    parser.add_argument("--deployed", action="store_true", help="also through the state machine, and compare")
    args = parser.parse_args()
    with LocalAws() if args.deployed else moto_process(), sample_server({SAMPLE: args.scale}) as (_, specs):
        spec = specs[SAMPLE]
        start = PREVIOUS[args.revision]
        subprocess.run([*ALEMBIC, "upgrade", start], env={**os.environ, "DATABASE_URL": database_url(spec)}, check=True)
        bucket = "dbops-bench-rehearsal"
        aws.client("s3").create_bucket(Bucket=bucket)
        t0 = time.perf_counter()
        manifest = run_backup(spec, BackupRequest(database=SAMPLE, bucket=bucket, kind="predeploy"))
        print(
            f"# backup {manifest.id} at revision {start}: {mb(manifest.dump.raw_size)} dumped, "
            f"{mb(manifest.dump.size)} stored, in {time.perf_counter() - t0:.1f}s",
            flush=True,
        )
        request = RehearsalRequest(
            database=SAMPLE,
            command=[*ALEMBIC, "upgrade", args.revision],
            max_lock_s=parse_duration(args.max_lock),
            interval_s=parse_duration(args.interval),
        )
        result = run_rehearsal(spec, request, bucket=bucket, progress=lambda line: print(f"# {line}", flush=True))
        print(format_report(result))
        t = result.timings
        print(
            f"# timings (s): sweep {t.sweep_s}, restore {t.restore_s}, vacuum/analyze {t.vacuum_analyze_s}, schema "
            f"dumps {t.schema_s}, upgrade {t.upgrade_s}, downgrade {t.downgrade_s}, drop {t.drop_s}, total {t.total_s}"
        )
        _lock_lines(result, "dbops rehearse")
        if args.deployed:
            deployed, took = _deployed(spec, bucket, args.revision, args.interval, args.max_lock)
            print(format_report(deployed))
            _lock_lines(deployed, "mode rehearse")
            print(f"# mode rehearse {took:.1f}s vs dbops rehearse {t.total_s:.1f}s: {took / t.total_s:.2f}x")


if __name__ == "__main__":
    main()
