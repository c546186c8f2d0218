"""Rehearsal benchmark: the test suite's Alembic project (tests/fixtures/alembic_sprint_reports) rehearsed on a
~0.5 GB sample restored from a backup, with the report and each phase's time.

    python -m bench.rehearsal [--scale 5] [--revision 0003] [--interval 20ms]

The sample is stamped at the revision before `--revision` and backed up (predeploy) into a moto bucket; then
`dbops rehearse`'s engine runs `alembic upgrade <revision>` on a scratch copy. 0003 rewrites report_snapshots
(the largest table) under ACCESS EXCLUSIVE: the figure to record is its measured lock time against the table's
size. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import SAMPLE, mb, moto_process, sample_server
from dbops import aws
from dbops.backup import BackupRequest, run_backup
from dbops.rehearsal import RehearsalRequest, format_report, parse_duration, run_rehearsal
from dbops.rehearsal.command import database_url

ALEMBIC_INI = Path(__file__).parents[1] / "tests" / "fixtures" / "alembic_sprint_reports" / "alembic.ini"
ALEMBIC = [sys.executable, "-m", "alembic", "-c", str(ALEMBIC_INI)]
PREVIOUS = {"0002": "0001", "0003": "0002", "0004": "0003"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=5.0, help="5 is about 0.58 GB")
    parser.add_argument("--revision", default="0003", choices=sorted(PREVIOUS), help="the revision rehearsed")
    parser.add_argument("--interval", default="20ms", help="sampling interval")
    parser.add_argument("--max-lock", default="5s")
    args = parser.parse_args()
    with moto_process(), sample_server({SAMPLE: args.scale}) as (_, specs):
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
        for rewrite in result.rewrites:
            locks = [f.lock_s for f in result.findings if f.table == rewrite.table and f.lock_s is not None]
            lock = f"{max(locks):.2f}s" if locks else "unseen"
            print(f"# rewrite of {rewrite.table}: {mb(rewrite.bytes_before)}, ACCESS EXCLUSIVE held {lock}")


if __name__ == "__main__":
    main()
