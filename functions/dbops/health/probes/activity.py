"""Sessions of this database that run too long: queries, transactions, and transactions left idle.

Each query returns the sessions over the warning threshold, longest first, with the full count alongside
(`count(*) OVER ()` runs before LIMIT). Our own session is never counted.
"""

from __future__ import annotations

from typing import Any, LiteralString

from dbops.health.context import ProbeContext
from dbops.health.model import Finding
from dbops.health.thresholds import grade
from dbops.postgres.sql_text import redact_query

LONG_QUERIES = """
    SELECT pid, usename, application_name, query,
           extract(epoch FROM now() - query_start)::float8 AS seconds, count(*) OVER () AS total
    FROM pg_stat_activity
    WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()
      AND state = 'active' AND query_start < now() - make_interval(secs => %(warn)s)
    ORDER BY query_start
    LIMIT %(top)s
"""

LONG_TRANSACTIONS = """
    SELECT pid, usename, application_name, state, query,
           extract(epoch FROM now() - xact_start)::float8 AS seconds, count(*) OVER () AS total
    FROM pg_stat_activity
    WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()
      AND xact_start < now() - make_interval(secs => %(warn)s)
    ORDER BY xact_start
    LIMIT %(top)s
"""

IDLE_IN_TRANSACTION = """
    SELECT pid, usename, application_name, state, query,
           extract(epoch FROM now() - state_change)::float8 AS seconds, count(*) OVER () AS total
    FROM pg_stat_activity
    WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()
      AND state IN ('idle in transaction', 'idle in transaction (aborted)')
      AND state_change < now() - make_interval(secs => %(warn)s)
    ORDER BY state_change
    LIMIT %(top)s
"""


def _session(r: dict[str, Any], what: str) -> str:
    state = f" {r['state']}" if r.get("state") and r["state"] != "active" else ""
    last = "last query" if r.get("state") and r["state"] != "active" else "query"
    return (
        f"pid {r['pid']} ({r['usename']}, {r['application_name'] or '-'}){state}: {what} {r['seconds']:.0f}s; "
        f"{last}: {redact_query(r['query'])}"
    )


def _over(
    ctx: ProbeContext, query: LiteralString, warn: float, critical: float, what: str, keys: tuple[str, str], noun: str
) -> Finding:
    rows = ctx.rows(query, {"warn": warn, "top": ctx.settings.top})
    total = int(rows[0]["total"]) if rows else 0
    longest = max((float(r["seconds"]) for r in rows), default=None)
    status = grade(longest, warn, critical)
    if total:
        message = f"{total} {noun} over {warn:g}s, longest {longest:.0f}s (critical at {critical:g}s)"
    else:
        message = f"no {noun} over {warn:g}s"
    return Finding(
        status=status,
        message=message,
        values={keys[0]: total, keys[1]: round(longest, 1) if longest is not None else 0.0},
        details=[_session(r, what) for r in rows],
    )


def probe_long_running_queries(ctx: ProbeContext) -> Finding:
    t = ctx.thresholds
    return _over(
        ctx,
        LONG_QUERIES,
        t.long_query_warn_seconds,
        t.long_query_critical_seconds,
        "running",
        ("long_queries", "longest_query_seconds"),
        "queries",
    )


def probe_long_transactions(ctx: ProbeContext) -> Finding:
    t = ctx.thresholds
    return _over(
        ctx,
        LONG_TRANSACTIONS,
        t.long_transaction_warn_seconds,
        t.long_transaction_critical_seconds,
        "transaction open",
        ("long_transactions", "longest_transaction_seconds"),
        "transactions",
    )


def probe_idle_in_transaction(ctx: ProbeContext) -> Finding:
    t = ctx.thresholds
    return _over(
        ctx,
        IDLE_IN_TRANSACTION,
        t.idle_in_transaction_warn_seconds,
        t.idle_in_transaction_critical_seconds,
        "idle",
        ("idle_in_transaction", "longest_idle_in_transaction_seconds"),
        "sessions idle in transaction",
    )
