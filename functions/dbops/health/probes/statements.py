"""Slow queries from pg_stat_statements, with the columns the server's version names.

PostgreSQL 13 renamed total_time / mean_time to total_exec_time / mean_exec_time, and 17 renamed
blk_read_time to shared_blk_read_time. The columns are chosen from server_version_num and checked against the
view the installed extension defines (an extension not updated after a server upgrade keeps the old names).
A database without the extension gets a clear `unknown`, not an error.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from dbops.health.context import ProbeContext
from dbops.health.model import Finding, Status
from dbops.health.thresholds import grade
from dbops.postgres.sql_text import redact_query

EXEC_TIME_SINCE = 130000
SHARED_BLK_TIME_SINCE = 170000

EXTENSION = """
    SELECT n.nspname AS schema, e.extversion AS version,
           array(SELECT a.attname::text FROM pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns
    FROM pg_extension e
    JOIN pg_namespace n ON n.oid = e.extnamespace
    LEFT JOIN pg_class c ON c.relname = 'pg_stat_statements' AND c.relnamespace = e.extnamespace
    WHERE e.extname = 'pg_stat_statements'
"""

SLOW = """
    SELECT queryid, calls, {total} AS total_ms, {mean} AS mean_ms, rows, {read} AS read_ms, query,
           count(*) OVER () AS slow
    FROM {view}
    WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND calls >= %(min_calls)s AND {mean} >= %(warn_ms)s
    ORDER BY {mean} DESC
    LIMIT %(top)s
"""

SUMMARY = """
    SELECT count(*) AS statements, coalesce(sum(calls), 0) AS calls, coalesce(sum({total}), 0) AS total_ms
    FROM {function}(false)
    WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


@dataclass(frozen=True)
class StatementColumns:
    total: str
    mean: str
    read: str


OLD = StatementColumns("total_time", "mean_time", "blk_read_time")
RENAMED_13 = StatementColumns("total_exec_time", "mean_exec_time", "blk_read_time")
RENAMED_17 = StatementColumns("total_exec_time", "mean_exec_time", "shared_blk_read_time")


def statement_columns(server_version_num: int, available: set[str] | None = None) -> StatementColumns:
    """The version's column names; if the installed view lacks them, the names it has."""
    if server_version_num >= SHARED_BLK_TIME_SINCE:
        wanted = RENAMED_17
    elif server_version_num >= EXEC_TIME_SINCE:
        wanted = RENAMED_13
    else:
        wanted = OLD
    if available is None or {wanted.total, wanted.mean, wanted.read} <= available:
        return wanted
    for cols in (RENAMED_17, RENAMED_13, OLD):
        if {cols.total, cols.mean, cols.read} <= available:
            return cols
    raise ValueError(f"pg_stat_statements has none of the known timing columns: {sorted(available)}")


def probe_slow_queries(ctx: ProbeContext) -> Finding:
    ext = ctx.row(EXTENSION)
    if not ext:
        return Finding(
            status=Status.UNKNOWN,
            message=f"pg_stat_statements is not installed in {ctx.database}: CREATE EXTENSION pg_stat_statements "
            "(it also needs shared_preload_libraries, the default on RDS)",
        )
    cols = statement_columns(ctx.version_num, set(ext["columns"] or []))
    names = {
        "total": sql.Identifier(cols.total),
        "mean": sql.Identifier(cols.mean),
        "read": sql.Identifier(cols.read),
        "view": sql.Identifier(ext["schema"], "pg_stat_statements"),
        "function": sql.Identifier(ext["schema"], "pg_stat_statements"),
    }
    t = ctx.thresholds
    try:
        summary = ctx.row(sql.SQL(SUMMARY).format(**names))
        rows = ctx.rows(
            sql.SQL(SLOW).format(**names),
            {"min_calls": t.slow_query_min_calls, "warn_ms": t.slow_query_warn_ms, "top": ctx.settings.top},
        )
    except psycopg.errors.ObjectNotInPrerequisiteState:
        return Finding(
            status=Status.UNKNOWN,
            message="pg_stat_statements is installed but not loaded: add it to shared_preload_libraries and restart",
        )
    slow = int(rows[0]["slow"]) if rows else 0
    worst = float(rows[0]["mean_ms"]) if rows else None
    column_note = f"columns {cols.mean}, {cols.total}, {cols.read}"
    if cols != statement_columns(ctx.version_num):
        column_note += f"; extension {ext['version']} predates the server: ALTER EXTENSION pg_stat_statements UPDATE"
    values = {
        "slow_queries": slow,
        "slowest_mean_ms": round(worst, 3) if worst is not None else 0.0,
        "statements": int(summary["statements"]),
    }
    if not rows:
        message = (
            f"no query with {t.slow_query_min_calls}+ calls averages {t.slow_query_warn_ms:g} ms or more "
            f"({summary['statements']} statements tracked; {column_note})"
        )
    else:
        message = (
            f"{slow} quer{'y' if slow == 1 else 'ies'} with {t.slow_query_min_calls}+ calls average "
            f"{t.slow_query_warn_ms:g} ms or more, slowest {worst:.0f} ms ({column_note})"
        )
    return Finding(
        status=grade(worst, t.slow_query_warn_ms, t.slow_query_critical_ms),
        message=message,
        values=values,
        details=[
            f"{float(r['mean_ms']):.1f} ms mean x {r['calls']} calls = {float(r['total_ms']) / 1000:.1f}s, "
            f"{r['rows']} rows, {float(r['read_ms'] or 0):.0f} ms reading: {redact_query(r['query'], 120)}"
            for r in rows
        ],
    )
