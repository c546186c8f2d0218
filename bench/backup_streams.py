"""Backup formats benchmark: the parallel format at 1, 2 (and more where the machine has the CPUs) COPY streams
beside the single-stream backup and the limit `pg_dump -Fc -Z0 > /dev/null`, on generated Sprint Reports data, in
one run.

    python -m bench.backup_streams [--scale 9] [--streams 1,2]

Each command runs as its own process (`dbops backup` into a moto server in another process), once, after one
unmeasured run of the limit to warm the cache. Reported: wall time, CPU-seconds per GB of the database (ours: the
command and its children, psql and pg_dump; the server: the postgres processes that served it) and the command's
peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from dataclasses import dataclass
from typing import Any

import psutil

from bench.backup import _discard_backups
from bench.common import mb, moto_process, sample_server
from bench.common import measure as common_measure
from dbops import aws
from dbops.backup import catalog
from dbops.postgres.connection import connect
from dbops.postgres.tools import find_tool


@dataclass
class Measured:
    seconds: float
    client_cpu: float  # the command and every child it waited for
    server_cpu: float  # postgres processes (the backends that served it, reaped by the postmaster)
    peak_rss: int  # the command's own process, sampled every 20 ms


def _server_cpu(postmaster: psutil.Process) -> float:
    own = postmaster.cpu_times()
    live = 0.0
    for child in postmaster.children(recursive=True):
        try:
            times = child.cpu_times()
            live += times.user + times.system
        except psutil.Error:
            pass
    return own.user + own.system + own.children_user + own.children_system + live


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(argv: list[str], env: dict[str, str], postmaster: psutil.Process) -> Measured:
    """bench.common.measure's wall time and peak RSS, and the CPU the command and the server spent on it."""
    cpu0, server0 = _children_cpu(), _server_cpu(postmaster)
    run = common_measure(argv, env)
    time.sleep(0.2)  # the backends that served it exit and are reaped
    return Measured(run.seconds, _children_cpu() - cpu0, _server_cpu(postmaster) - server0, run.peak_rss)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=9.0, help="the sample's scale (9 is about 1 GB)")
    parser.add_argument("--streams", default="1,2", help="COPY streams to measure the parallel format at")
    args = parser.parse_args()
    streams = [int(n) for n in args.streams.split(",")]
    with sample_server({"large": args.scale}) as (pg, specs), moto_process():
        spec = specs["large"]
        bucket = "dbops-bench"
        s3: Any = aws.client("s3")
        s3.create_bucket(Bucket=bucket)
        with connect(spec) as conn:
            size = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])  # type: ignore[index]
        postmaster = psutil.Process(int((pg.data_dir / "postmaster.pid").read_text().split()[0]))
        env = {**os.environ, **spec.libpq_env()}
        ours_env = {**os.environ, "DBOPS_DATABASE_URL": pg.url(spec.dbname), "DBOPS_BUCKET": bucket}
        backup = [sys.executable, "-m", "dbops.cli", "backup", "--database-name", "large"]
        commands = {
            "pg_dump -Fc -Z0 > /dev/null (limit)": (["sh", "-c", f"{find_tool('pg_dump')} -Fc -Z0 > /dev/null"], env)
        }
        commands["dbops backup, single stream"] = (backup, ours_env)
        for n in streams:
            commands[f"dbops backup --format parallel, {n} streams"] = (
                [*backup, "--format", "parallel", "--max-streams", str(n)],
                ours_env,
            )
        measure(*commands["pg_dump -Fc -Z0 > /dev/null (limit)"], postmaster)  # warm the cache, unmeasured
        results: dict[str, Measured] = {}
        stored: dict[str, int] = {}
        for name, (argv, command_env) in commands.items():
            results[name] = measure(argv, command_env, postmaster)
            entries = catalog.list_backups(bucket) if "dbops" in name else []
            stored[name] = entries[0].manifest.archive_bytes if entries else 0
            _discard_backups(s3, bucket)
            print(f"# {name}: {results[name].seconds:.2f} s", flush=True)
        gb = size / 1e9
        limit = results["pg_dump -Fc -Z0 > /dev/null (limit)"].seconds
        print(f"\nsample: {gb:.2f} GB (pg_database_size), {os.cpu_count()} CPUs\n")
        print("| command | wall | / limit | CPU s per GB: ours | server | peak RSS | stored |")
        print("|---|---|---|---|---|---|---|")
        for name, r in results.items():
            print(
                f"| {name} | {r.seconds:.2f} s | {r.seconds / limit:.2f}x | {r.client_cpu / gb:.2f} | "
                f"{r.server_cpu / gb:.2f} | {mb(r.peak_rss)} | {mb(stored[name]) if stored[name] else '-'} |"
            )


if __name__ == "__main__":
    main()
