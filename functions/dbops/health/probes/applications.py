"""Connections by application and state (server-wide), the pools as the server sees them: how many sessions
each application_name holds, and how many of them run a query, sit idle, or sit idle inside a transaction.
The totals are ok whatever they are (the connections probe judges them against max_connections, and
idle_in_transaction how long sessions stay so); one application holding a large share of max_connections by
itself is a warning: the others, the backups and an operator are left the rest. The health session itself is
not counted."""

from __future__ import annotations

from dbops.health.context import ProbeContext
from dbops.health.model import Finding, Status

BY_APPLICATION = """
    SELECT coalesce(nullif(application_name, ''), '(no name)') AS application, count(*) AS sessions,
           count(*) FILTER (WHERE state = 'active') AS active,
           count(*) FILTER (WHERE state = 'idle') AS idle,
           count(*) FILTER (WHERE state LIKE 'idle in transaction%%') AS idle_in_transaction,
           current_setting('max_connections')::int AS max_connections
    FROM pg_stat_activity
    WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
    GROUP BY 1
    ORDER BY sessions DESC, 1
"""


def probe_connections_by_application(ctx: ProbeContext) -> Finding:
    warn = ctx.thresholds.application_connections_warn_percent
    rows = ctx.rows(BY_APPLICATION)
    totals = {key: sum(int(r[key]) for r in rows) for key in ("sessions", "active", "idle", "idle_in_transaction")}
    top = rows[0] if rows else None
    share = 100.0 * int(top["sessions"]) / int(top["max_connections"]) if top else 0.0
    values = {
        "connections_active": totals["active"],
        "connections_idle": totals["idle"],
        "connections_idle_in_transaction": totals["idle_in_transaction"],
        "top_application_connections_percent": round(share, 2),
    }
    if top is None:
        return Finding(status=Status.OK, message="no other client session", values=values)
    status = Status.WARN if share >= warn else Status.OK
    return Finding(
        status=status,
        message=f"{totals['sessions']} client sessions from {len(rows)} application{'s' if len(rows) > 1 else ''}: "
        f"{totals['active']} active, {totals['idle']} idle, {totals['idle_in_transaction']} idle in transaction; "
        f"the most, {top['application']}, holds {top['sessions']} ({share:.0f} % of max_connections "
        f"{top['max_connections']}; warn at {warn:g} %)",
        values=values,
        details=[
            f"{r['application']}: {r['sessions']} sessions ({r['active']} active, {r['idle']} idle, "
            f"{r['idle_in_transaction']} idle in transaction)"
            for r in rows[: ctx.settings.top]
        ],
    )
