"""Benchmark: the full health probe run against the operations guide's own monitoring queries, run one by
one in psql, on the same database in the same run.

The database has `--tables` tables (default 1,200: bigserial key, an indexed column, `--rows` rows each,
every tenth table half updated so it carries dead rows) and at least `--statements` distinct entries in
pg_stat_statements (five query shapes per table). Both sides are timed alternately, `--rounds` times each,
after one warm-up; medians are compared. Target: the probe run under 1 s and no slower than the guide.

    PYTHONPATH=functions:. .venv/bin/python bench/health.py [--tables 1200] [--rows 200] [--server 18|15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from psycopg import sql

from dbops.health import HealthSettings, run_health
from dbops.health.probes.statements import statement_columns
from dbops.postgres.connection import ConnectionSpec, connect
from dbops.postgres.tools import find_tool
from local_stack.postgres import LocalPostgres, debian_bin_dir, embedded_bin_dir

DATABASE = "bench_health"

# The guide's "Performance Monitoring Queries" and "Performance Issues" queries, as printed, with only what
# each needs to run at all on a current server: pg_stat_user_indexes names its columns relname / indexrelname
# (the guide's tablename / indexname do not exist), pg_stat_statements' timing columns follow the version,
# and the bloat query's `schemaname` is ambiguous between its two relations, so it is qualified.
GUIDE_TABLE_SIZES = """
SELECT
    schemaname,
    tablename,
    pg_size_pretty(pg_total_relation_size(schemaname||'.'||tablename)) AS size
FROM pg_tables
WHERE schemaname = 'public'
ORDER BY pg_total_relation_size(schemaname||'.'||tablename) DESC;
"""
GUIDE_INDEX_USAGE = """
SELECT
    schemaname,
    relname AS tablename,
    indexrelname AS indexname,
    idx_tup_read,
    idx_tup_fetch
FROM pg_stat_user_indexes
ORDER BY idx_tup_read DESC;
"""
GUIDE_SLOW_QUERIES = """
SELECT
    query,
    {mean} AS mean_time,
    calls,
    {total} AS total_time
FROM pg_stat_statements
ORDER BY {mean} DESC
LIMIT 10;
"""
GUIDE_LOCKS = """
SELECT
    pg_stat_activity.pid,
    pg_stat_activity.query,
    pg_locks.mode,
    pg_locks.granted
FROM pg_stat_activity
JOIN pg_locks ON pg_stat_activity.pid = pg_locks.pid
WHERE NOT pg_locks.granted;
"""
GUIDE_BLOAT = """
SELECT
    pg_tables.schemaname,
    tablename,
    pg_size_pretty(pg_total_relation_size(pg_tables.schemaname||'.'||tablename)) AS size,
    pg_stat_user_tables.n_dead_tup
FROM pg_tables
JOIN pg_stat_user_tables ON pg_tables.tablename = pg_stat_user_tables.relname
WHERE pg_tables.schemaname = 'public'
ORDER BY pg_stat_user_tables.n_dead_tup DESC;
"""

QUERY_SHAPES = (
    "SELECT payload FROM {} WHERE id = %s",
    "SELECT count(*) FROM {} WHERE account_id = %s",
    "SELECT max(created_at) FROM {} WHERE account_id < %s",
    "SELECT id, account_id FROM {} ORDER BY created_at DESC LIMIT %s",
    "UPDATE {} SET payload = payload WHERE id = %s",
)


def table_name(i: int) -> str:
    return f"bench_{i:05d}"


def build(spec: ConnectionSpec, tables: int, rows: int) -> None:
    with connect(spec, statement_timeout_ms=0) as conn:
        for start in range(0, tables, 100):
            with conn.transaction():
                for i in range(start, min(start + 100, tables)):
                    name = sql.Identifier(table_name(i))
                    conn.execute(
                        sql.SQL(
                            "CREATE TABLE {} (id bigserial PRIMARY KEY, account_id int NOT NULL, payload text,"
                            " created_at timestamptz NOT NULL DEFAULT now())"
                        ).format(name)
                    )
                    conn.execute(
                        sql.SQL("CREATE INDEX {} ON {} (account_id)").format(
                            sql.Identifier(f"{table_name(i)}_account_idx"), name
                        )
                    )
                    conn.execute(
                        sql.SQL(
                            "INSERT INTO {} (account_id, payload)"
                            " SELECT g % 50, md5(g::text) FROM generate_series(1, {}) g"
                        ).format(name, sql.Literal(rows))
                    )
                    if i % 10 == 0:
                        conn.execute(sql.SQL("UPDATE {} SET payload = upper(payload) WHERE id % 2 = 0").format(name))
            print(f"  {min(start + 100, tables)} tables", file=sys.stderr, flush=True)
        conn.execute("ANALYZE")


def fill_statements(spec: ConnectionSpec, tables: int) -> int:
    with connect(spec, statement_timeout_ms=0) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("SELECT pg_stat_statements_reset()")
        with conn.pipeline():
            for i in range(tables):
                name = sql.Identifier(table_name(i))
                for n, shape in enumerate(QUERY_SHAPES):
                    conn.execute(sql.SQL(shape).format(name), [n + 1])
        row = conn.execute("SELECT count(*) FROM pg_stat_statements").fetchone()
    return int(row[0]) if row else 0


def guide_queries(version_num: int) -> list[str]:
    cols = statement_columns(version_num)
    slow = GUIDE_SLOW_QUERIES.replace("{mean}", cols.mean).replace("{total}", cols.total)
    return [GUIDE_TABLE_SIZES, GUIDE_INDEX_USAGE, slow, GUIDE_LOCKS, GUIDE_BLOAT]


def run_guide(psql: Path, spec: ConnectionSpec, queries: list[str]) -> None:
    env = {"PATH": "/usr/bin:/bin", **spec.libpq_env()}
    for query in queries:
        done = subprocess.run(
            [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", query],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"the guide's query failed: {done.stderr.strip()}\n{query}")


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tables", type=int, default=1200)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--server", choices=["18", "15"], default="18")
    args = parser.parse_args()

    bin_dir = embedded_bin_dir() if args.server == "18" else debian_bin_dir(15)
    if bin_dir is None:
        raise SystemExit("PostgreSQL 15 is not installed here")
    psql = find_tool("psql")
    settings = {"pg_stat_statements.max": "10000", "max_locks_per_transaction": "256"}
    with LocalPostgres(bin_dir, settings=settings) as pg:
        admin = ConnectionSpec.from_url(pg.url())
        with connect(admin) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        spec = admin.for_database(DATABASE)
        t0 = time.perf_counter()
        print(f"building {args.tables} tables of {args.rows} rows ...", file=sys.stderr, flush=True)
        build(spec, args.tables, args.rows)
        statements = fill_statements(spec, args.tables)
        with connect(spec) as conn:
            row = conn.execute(
                "SELECT pg_database_size(current_database()), count(*) FROM pg_stat_user_tables"
            ).fetchone()
            version_num = int(conn.info.server_version)
        assert row is not None
        size_bytes, table_count = int(row[0]), int(row[1])
        print(f"built in {time.perf_counter() - t0:.0f}s", file=sys.stderr)

        queries = guide_queries(version_num)
        health_settings = HealthSettings()
        report = run_health(spec, health_settings)  # warm-up, and the probe list shown below
        run_guide(psql, spec, queries)
        probe_times, guide_times = [], []
        for _ in range(args.rounds):
            probe_times.append(timed(lambda: run_health(spec, health_settings)))
            guide_times.append(timed(lambda: run_guide(psql, spec, queries)))

    probes, guide = statistics.median(probe_times), statistics.median(guide_times)
    errors = [p.name for p in report.probes if p.status.value == "error"]
    print(
        f"PostgreSQL {version_num // 10000}: {table_count} tables, {size_bytes / 2**20:.0f} MB, "
        f"{statements} pg_stat_statements entries"
    )
    print(
        f"full health run ({len(report.probes)} probes, one session): median {probes * 1000:.0f} ms "
        f"(min {min(probe_times) * 1000:.0f}, max {max(probe_times) * 1000:.0f}) over {args.rounds} rounds"
    )
    print(
        f"guide's 5 queries, one psql each:          median {guide * 1000:.0f} ms "
        f"(min {min(guide_times) * 1000:.0f}, max {max(guide_times) * 1000:.0f})"
    )
    print(f"ratio guide / probes: {guide / probes:.2f}x")
    slowest = sorted(report.probes, key=lambda p: -p.seconds)[:5]
    print("slowest probes (warm-up run): " + ", ".join(f"{p.name} {p.seconds * 1000:.0f} ms" for p in slowest))
    if errors:
        print(f"probe errors: {errors}")
    met = probes < 1.0 and probes <= guide
    print(f"target (under 1 s and no slower than the guide): {'met' if met else 'NOT met'}")
    return 0 if met and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
