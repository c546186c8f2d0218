"""Shared setup for the benchmarks: a PostgreSQL 18 server with sample data and a moto server in its own
process (so the S3 side does not share our process's interpreter), plus process timing with peak RSS, and for
the restore benchmarks a backed-up sample with the restore functions' settings and timed restore steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from dbops import aws
from dbops.backup.catalog import BackupManifest
from dbops.backup.run import BackupRequest, run_backup
from dbops.backup.verify import verify_backup
from dbops.cli.sample_data import create_sample_data
from dbops.postgres.connection import ConnectionSpec, connect
from dbops.restore import steps
from dbops.restore.models import RestoreState
from dbops.settings import FunctionSettings
from local_stack.postgres import LocalPostgres, embedded_bin_dir, free_port


@dataclass
class Run:
    seconds: float
    peak_rss: int


def measure(argv: list[str], env: dict[str, str] | None = None, stdout: int | None = subprocess.DEVNULL) -> Run:
    """Run a command; wall time and the peak RSS of its main process (sampled every 20 ms)."""
    os.sync()  # start with no dirty pages left by the previous measurement
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=stdout, stderr=subprocess.PIPE)
    peak = 0
    ps = psutil.Process(proc.pid)

    def sample() -> None:
        nonlocal peak
        while proc.poll() is None:
            try:
                peak = max(peak, ps.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    elapsed = time.perf_counter() - t0
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {err.decode()[-2000:]}")
    return Run(elapsed, peak)


# moto spools every object over 5 MB to a temporary file on local disk by default: disk work that S3 does not do
# on this machine. The benchmarks keep objects in the moto server's memory (a backup of the 1 GB sample is
# 0.17 GB); bench/backup.py also measures moto's default, on its own line.
IN_MEMORY = {"MOTO_S3_DEFAULT_KEY_BUFFER_SIZE": str(4 * 1024**3)}


@dataclass
class Moto:
    process: psutil.Process
    endpoint: str

    def cpu_seconds(self) -> float:
        return float(sum(self.process.cpu_times()[:2]))


@contextmanager
def moto_process(*, spool_to_disk: bool = False) -> Iterator[Moto]:
    """A moto server in its own process; AWS clients in this process (and the commands measured, through the
    environment) reach it. The last one started is the one they reach."""
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-p", str(port)],
        env={**os.environ, **({} if spool_to_disk else IN_MEMORY)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    aws.reset_clients()
    try:
        yield Moto(psutil.Process(proc.pid), endpoint)
    finally:
        proc.terminate()
        proc.wait()


@contextmanager
def sample_server(scales: dict[str, float]) -> Iterator[tuple[LocalPostgres, dict[str, ConnectionSpec]]]:
    """One server, one sample database per name at the given scale (1 is about 116 MB)."""
    pg = LocalPostgres(embedded_bin_dir()).start()
    try:
        admin = ConnectionSpec.from_url(pg.url())
        specs = {}
        for name, scale in scales.items():
            with connect(admin) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            spec = admin.for_database(name)
            t0 = time.perf_counter()
            create_sample_data(spec, scale)
            with connect(spec) as conn:
                conn.execute("VACUUM (FREEZE, ANALYZE)")
                size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
            print(
                f"# sample {name}: scale {scale}, {size[0] / 1e9 if size else 0:.2f} GB, "
                f"generated in {time.perf_counter() - t0:.0f}s",
                flush=True,
            )
            specs[name] = spec
        with connect(admin) as conn:
            conn.execute("CHECKPOINT")  # measure a settled server, not one still writing out the generated data
        os.sync()
        yield pg, specs
    finally:
        pg.destroy()


def mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


SAMPLE = "sprint_reports_v2"
Step = Callable[[RestoreState, FunctionSettings], RestoreState]


@dataclass
class BackedUpSample:
    pg: LocalPostgres
    spec: ConnectionSpec
    manifest: BackupManifest
    settings: FunctionSettings


@contextmanager
def backed_up_sample(scale: float, jobs: int) -> Iterator[BackedUpSample]:
    """The sample at `scale` on a fresh server, backed up once into a moto bucket and verified, and the restore
    functions' settings for it (its only configured database, `pg_restore -j jobs`)."""
    with moto_process(), sample_server({SAMPLE: scale}) as (pg, specs):
        spec = specs[SAMPLE]
        bucket = "dbops-bench"
        aws.client("s3").create_bucket(Bucket=bucket)
        manifest = run_backup(spec, BackupRequest(database=SAMPLE, bucket=bucket))
        verify_backup(bucket, manifest.id)
        os.environ.update(
            {
                "DBOPS_BUCKET": bucket,
                "DBOPS_RESTORE_JOBS": str(jobs),
                "DBOPS_DATABASES": json.dumps([{"name": SAMPLE, "url": pg.url(SAMPLE)}]),
            }
        )
        yield BackedUpSample(pg, spec, manifest, FunctionSettings())


def timed_safety_backup(state: RestoreState, settings: FunctionSettings) -> tuple[RestoreState, float]:
    """The safety backup a restore over an existing database takes after validate: a backup of the target,
    not restore work, so the benchmarks time it once on its own line (validate runs first, untimed)."""
    state = steps.validate(state, settings)
    t0 = time.perf_counter()
    state = steps.safety_backup(state, settings)
    return state, time.perf_counter() - t0


def run_steps(
    state: RestoreState, settings: FunctionSettings, chosen: Iterable[Step]
) -> tuple[RestoreState, dict[str, float]]:
    """Run restore steps in order; the state they leave and each one's wall time, by name."""
    timings: dict[str, float] = {}
    for step in chosen:
        t0 = time.perf_counter()
        state = step(state, settings)
        timings[step.__name__] = time.perf_counter() - t0
    return state, timings
