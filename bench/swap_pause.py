"""The application's longest pause during a selective restore into the live database: pgbench's TPC-B (foreign
keys on, 4 clients) writing while dbops swaps a generated table of 1k, 100k and 1M rows, against the same TPC-B
run without a restore (the baseline), in one run.

    python -m bench.swap_pause [--sizes 1000,100000,1000000] [--seconds 8] [--repeat 2]

Per size: a fresh database with pgbench's tables (scale 1) and `items` (id bigint primary key, bid referencing
pgbench_branches, qty int, note text of 40 characters), N rows; its scratch copy (CREATE DATABASE ... TEMPLATE),
then 1 % of the live rows edited and 0.1 % deleted, so the swap puts back 1.1 % of the rows and compares all of
them. `items` references pgbench_branches, which every TPC-B transaction updates: the swap holds SHARE there
while it holds its locks, so the whole of its pause shows in TPC-B's commits. The longest pause is the longest
window without a committed transaction in pgbench's per-transaction log (`-l`), over the whole run; the
baseline is the same over a run without a restore, taken just before. The swap starts 2 s into the run.
"""

from __future__ import annotations

import argparse
import time
import uuid
from dataclasses import dataclass

from dbops.postgres.connection import ConnectionSpec, connect
from dbops.restore.models import TablePlan
from dbops.restore.selective_swap.swap import SwapLimits, SwapResult, swap_tables
from local_stack import pgbench
from local_stack.postgres import LocalPostgres, embedded_bin_dir

ITEMS = """
    CREATE TABLE items (id bigint PRIMARY KEY, bid int NOT NULL REFERENCES pgbench_branches, qty int NOT NULL,
                        note text NOT NULL);
    INSERT INTO items SELECT g, 1, g %% 1000, md5(g::text) || '-items' FROM generate_series(1, %(n)s) g;
    VACUUM ANALYZE items;
"""
DAMAGE = ["UPDATE items SET qty = qty + 1 WHERE id % 100 = 7", "DELETE FROM items WHERE id % 1000 = 3"]


@dataclass
class Round:
    size: int
    baseline_gap_s: float
    gap_s: float
    failed: int
    swap_s: float
    result: SwapResult
    inside: bool  # the swap ended before the run's last commit: its whole pause was measured


def _prepare(admin: ConnectionSpec, size: int) -> tuple[ConnectionSpec, ConnectionSpec]:
    name = f"swap_{uuid.uuid4().hex[:8]}"
    with connect(admin) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    target = admin.for_database(name)
    pgbench.initialize(target, scale=1)
    with connect(target, statement_timeout_ms=0) as conn:
        for statement in ITEMS.split(";"):
            if statement.strip():
                conn.execute(statement, {"n": size} if "%(n)s" in statement else None)
    with connect(admin) as conn:
        conn.execute(f"CREATE DATABASE {name}_scratch TEMPLATE {name}")
    with connect(target, statement_timeout_ms=0) as conn:
        for statement in DAMAGE:
            conn.execute(statement)
        conn.execute("VACUUM ANALYZE items")
        conn.execute("CHECKPOINT")
    return target, admin.for_database(f"{name}_scratch")


def _drop(admin: ConnectionSpec, target: ConnectionSpec) -> None:
    with connect(admin) as conn:
        for db in (target.dbname, f"{target.dbname}_scratch"):
            conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def one_round(admin: ConnectionSpec, size: int, seconds: int) -> Round:
    """`seconds` of TPC-B, plus 5 s per 100,000 rows: the run must outlast the staging and the pause."""
    seconds += size // 20_000
    target, scratch = _prepare(admin, size)
    try:
        baseline = pgbench.TpcB(target, seconds=seconds)
        quiet = baseline.result()
        run = pgbench.TpcB(target, seconds=seconds)
        try:
            time.sleep(2)
            t0 = time.monotonic()
            result = swap_tables(
                scratch, target, [TablePlan(schema_name="public", name="items", rows=size)], SwapLimits(max_pause_s=600)
            )
            swap_s, ended = time.monotonic() - t0, time.time()
            outcome = run.result()
        finally:
            run.stop()
        inside = bool(outcome.commits) and outcome.commits[-1] > ended
        return Round(size, quiet.longest_gap_s(), outcome.longest_gap_s(), outcome.failed, swap_s, result, inside)
    finally:
        _drop(admin, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--seconds", type=int, default=8, help="each pgbench run, plus 5 s per 100,000 rows")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with LocalPostgres(embedded_bin_dir()) as pg:
        admin = ConnectionSpec.from_url(pg.url())
        with connect(admin) as conn:
            version = conn.execute("SHOW server_version").fetchone()
        print(f"# PostgreSQL {version[0] if version else '?'}, pgbench {pgbench.pgbench_path()}", flush=True)
        header = (
            "| rows | baseline longest gap | longest gap with the swap | ratio | swap pause (measured) | estimated | "
            "changed rows | lock attempts | swap, whole | failed | swap inside the run |"
        )
        print(header + "\n" + "|---" * (header.count("|") - 1) + "|", flush=True)
        for size in sizes:
            for _ in range(args.repeat):
                r = one_round(admin, size, args.seconds)
                print(
                    f"| {r.size:,} | {r.baseline_gap_s * 1000:.0f} ms | {r.gap_s * 1000:.0f} ms | "
                    f"{r.gap_s / max(r.baseline_gap_s, 1e-6):.1f}x | {r.result.pause_s * 1000:.0f} ms | "
                    f"{r.result.estimated_pause_s * 1000:.0f} ms | {r.result.changed_rows:,} | "
                    f"{r.result.lock_attempts} | {r.swap_s:.2f} s | {r.failed} | {'yes' if r.inside else 'NO'} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
