"""Connections in use against max_connections (cluster-wide: every database shares the limit)."""

from __future__ import annotations

from dbops.health.context import ProbeContext
from dbops.health.model import Finding
from dbops.health.thresholds import grade

CONNECTIONS = """
    SELECT count(*) FILTER (WHERE backend_type = 'client backend') AS used,
           current_setting('max_connections')::int AS max_connections,
           current_setting('superuser_reserved_connections')::int AS reserved
    FROM pg_stat_activity
"""

BY_CLIENT = """
    SELECT coalesce(datname, '-') AS datname, coalesce(usename, '-') AS usename,
           coalesce(nullif(application_name, ''), '-') AS application, coalesce(state, '-') AS state,
           count(*) AS sessions
    FROM pg_stat_activity
    WHERE backend_type = 'client backend'
    GROUP BY 1, 2, 3, 4
    ORDER BY sessions DESC, 1, 2, 3, 4
    LIMIT %(top)s
"""


def probe_connections(ctx: ProbeContext) -> Finding:
    row = ctx.row(CONNECTIONS)
    used, limit = int(row["used"]), int(row["max_connections"])
    percent = 100.0 * used / limit
    t = ctx.thresholds
    status = grade(percent, t.connections_warn_percent, t.connections_critical_percent)
    details = []
    if used:
        details = [
            f"{r['sessions']} {r['state']}: database {r['datname']}, user {r['usename']}, "
            f"application {r['application']}"
            for r in ctx.rows(BY_CLIENT, {"top": ctx.settings.top})
        ]
    return Finding(
        status=status,
        message=f"{used} of {limit} connections in use ({percent:.0f} %; warn at {t.connections_warn_percent:g} %, "
        f"{row['reserved']} reserved for superusers)",
        values={"connections_used": used, "max_connections": limit, "connections_used_percent": round(percent, 2)},
        details=details,
    )
