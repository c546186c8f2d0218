"""Blocked queries and the sessions blocking them (the guide's lock query, made useful).

The guide lists ungranted locks; this names who waits, for how long, and who holds them up: pg_blocking_pids
per waiting session, then the blockers' own state, so the report points at the root (often a session idle in
transaction). pg_locks.waitstart (PostgreSQL 14+) times the wait itself; older servers use query_start.
"""

from __future__ import annotations

from typing import Any

from dbops.health.context import ProbeContext
from dbops.health.model import Finding, Status
from dbops.health.thresholds import grade
from dbops.postgres.sql_text import redact_query

WAITSTART_SINCE = 140000

BLOCKED = """
    SELECT pid, usename, query, pg_blocking_pids(pid) AS blockers,
           extract(epoch FROM now() - query_start)::float8 AS query_seconds
    FROM pg_stat_activity
    WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()
    ORDER BY query_start
"""

WAIT_STARTS = """
    SELECT pid, extract(epoch FROM now() - min(waitstart))::float8 AS wait_seconds
    FROM pg_locks
    WHERE NOT granted AND pid = ANY(%(pids)s)
    GROUP BY pid
"""

BLOCKERS = """
    SELECT pid, usename, datname, state, wait_event_type, query,
           extract(epoch FROM now() - xact_start)::float8 AS xact_seconds,
           extract(epoch FROM now() - state_change)::float8 AS state_seconds
    FROM pg_stat_activity
    WHERE pid = ANY(%(pids)s)
"""


def _blocker(pid: int, info: dict[str, Any] | None) -> str:
    if info is None:
        return f"pid {pid} (gone or a prepared transaction)"
    state = info["state"] or "-"
    waiting = ", itself waiting" if info["wait_event_type"] == "Lock" else ""
    xact = f", transaction open {info['xact_seconds']:.0f}s" if info["xact_seconds"] is not None else ""
    return (
        f"pid {pid} ({info['usename']}, {state} {info['state_seconds'] or 0:.0f}s{xact}{waiting}: "
        f"{redact_query(info['query'], 100)})"
    )


def probe_blocked_queries(ctx: ProbeContext) -> Finding:
    blocked = ctx.rows(BLOCKED)
    t = ctx.thresholds
    if not blocked:
        return Finding(
            status=Status.OK,
            message="no query is waiting for a lock",
            values={"blocked_queries": 0, "longest_lock_wait_seconds": 0.0},
        )
    pids = [r["pid"] for r in blocked]
    waits = {r["pid"]: r["query_seconds"] for r in blocked}
    if ctx.version_num >= WAITSTART_SINCE:
        for r in ctx.rows(WAIT_STARTS, {"pids": pids}):
            if r["wait_seconds"] is not None:
                waits[r["pid"]] = r["wait_seconds"]
    blocker_pids = sorted({b for r in blocked for b in r["blockers"]})
    info = {r["pid"]: r for r in ctx.rows(BLOCKERS, {"pids": blocker_pids})}
    waiting = set(pids)
    roots = [p for p in blocker_pids if p not in waiting]
    longest = max(float(w or 0) for w in waits.values())
    details = [
        f"pid {r['pid']} ({r['usename']}) waiting {float(waits[r['pid']] or 0):.0f}s: {redact_query(r['query'], 100)}"
        f" — blocked by {', '.join(_blocker(b, info.get(b)) for b in r['blockers']) or 'a lock being released'}"
        for r in blocked[: ctx.settings.top]
    ]
    root_text = ", ".join(f"pid {p}" for p in roots) or "a cycle (deadlock detection will break it)"
    return Finding(
        status=grade(longest, t.lock_wait_warn_seconds, t.lock_wait_critical_seconds),
        message=f"{len(blocked)} quer{'y' if len(blocked) == 1 else 'ies'} waiting for a lock, longest {longest:.0f}s "
        f"(warn at {t.lock_wait_warn_seconds:g}s); root blocker {root_text}",
        values={"blocked_queries": len(blocked), "longest_lock_wait_seconds": round(longest, 1)},
        details=details,
    )
