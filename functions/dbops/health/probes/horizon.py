"""What holds back vacuum (server-wide): the xmin horizon and who holds it, and prepared transactions.

Vacuum cannot remove a row version, nor freeze one, that some snapshot may still see. The oldest such
snapshot is held by one of: a session (its snapshot, `backend_xmin`, or its own transaction id, `backend_xid`,
whichever is older), a prepared transaction (it keeps its transaction id until COMMIT/ROLLBACK PREPARED, across
restarts), a replication slot (`xmin`; `catalog_xmin` holds back the system catalogs only), or a standby with
hot_standby_feedback (`pg_stat_replication.backend_xmin`). Its age is counted in transactions (`age(xid)`: the
transactions started since); the time is known for sessions and prepared transactions.

A prepared transaction is almost always a mistake outside a two-phase-commit system, and one left behind
holds its locks and the horizon forever: check_postgres warns from the first second.
"""

from __future__ import annotations

from typing import Any

from dbops.health.context import ProbeContext
from dbops.health.model import Finding, Status
from dbops.health.thresholds import grade
from dbops.text import human_age

# our own session is left out; a walsender's xmin is its standby's, read from pg_stat_replication
HOLDERS = """
    WITH holders AS (
        SELECT 'session' AS kind,
               format('pid %%s (%%s, %%s, %%s)', pid, coalesce(usename, backend_type),
                      coalesce(nullif(application_name, ''), '-'), coalesce(state, '-')) AS holder,
               datname,
               CASE WHEN backend_xid IS NOT NULL AND (backend_xmin IS NULL OR age(backend_xid) > age(backend_xmin))
                    THEN backend_xid ELSE backend_xmin END AS xmin,
               extract(epoch FROM now() - xact_start)::float8 AS seconds
        FROM pg_stat_activity
        WHERE (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL) AND pid <> pg_backend_pid()
          AND backend_type <> 'walsender'
        UNION ALL
        SELECT 'prepared transaction', format('%%L (owner %%s)', gid, owner), database, transaction,
               extract(epoch FROM now() - prepared)::float8
        FROM pg_prepared_xacts
        UNION ALL
        SELECT 'replication slot', format('%%s (%%s%%s)', slot_name, slot_type,
                                          CASE WHEN active THEN '' ELSE ', inactive' END),
               database, xmin, NULL
        FROM pg_replication_slots WHERE xmin IS NOT NULL
        UNION ALL
        SELECT 'replication slot, system catalogs only', format('%%s (%%s%%s)', slot_name, slot_type,
                                                               CASE WHEN active THEN '' ELSE ', inactive' END),
               database, catalog_xmin, NULL
        FROM pg_replication_slots WHERE catalog_xmin IS NOT NULL
        UNION ALL
        SELECT 'standby', format('%%s (%%s)', coalesce(nullif(application_name, ''), '-'),
                                 coalesce(host(client_addr), 'local')),
               NULL, backend_xmin, NULL
        FROM pg_stat_replication WHERE backend_xmin IS NOT NULL
    )
    SELECT kind, holder, datname, xmin::text AS xmin, age(xmin)::bigint AS xid_age, seconds
    FROM holders
    ORDER BY age(xmin) DESC, seconds DESC NULLS LAST
    LIMIT %(top)s
"""

PREPARED = """
    SELECT s.max_prepared, p.*
    FROM (SELECT current_setting('max_prepared_transactions')::int AS max_prepared) s
    LEFT JOIN LATERAL (
        SELECT gid, owner, database, age(transaction)::bigint AS xid_age,
               extract(epoch FROM now() - prepared)::float8 AS seconds, count(*) OVER () AS total
        FROM pg_prepared_xacts
        ORDER BY prepared
        LIMIT %(top)s
    ) p ON true
"""


def _who(r: dict[str, Any]) -> str:
    return f"{r['kind']} {r['holder']}" + (f" in database {r['datname']}" if r["datname"] else "")


def _holder(r: dict[str, Any]) -> str:
    held = f", for {human_age(r['seconds'])}" if r["seconds"] is not None else ""
    return f"{_who(r)}: xmin {r['xmin']}, {int(r['xid_age']):,} transactions old{held}"


def probe_xmin_horizon(ctx: ProbeContext) -> Finding:
    t = ctx.thresholds
    rows = ctx.rows(HOLDERS, {"top": ctx.settings.top})
    if not rows:
        return Finding(
            status=Status.OK,
            message="nothing holds the xmin horizon back: no open snapshot, prepared transaction or slot xmin",
            values={"xmin_horizon_age": 0, "xmin_horizon_seconds": 0.0},
        )
    oldest = rows[0]
    xid_age = int(oldest["xid_age"])
    seconds = round(oldest["seconds"], 1) if oldest["seconds"] is not None else None
    return Finding(
        status=grade(xid_age, t.xmin_horizon_warn, t.xmin_horizon_critical),
        message=f"xmin horizon {xid_age:,} transactions old, held by {_who(oldest)}"
        + (f" for {human_age(seconds)}" if seconds is not None else "")
        + f" (warn at {t.xmin_horizon_warn:,}, critical at {t.xmin_horizon_critical:,}): vacuum cannot remove or "
        "freeze rows newer than it",
        values={"xmin_horizon_age": xid_age, "xmin_horizon_seconds": seconds},
        details=[_holder(r) for r in rows],
    )


def probe_prepared_transactions(ctx: ProbeContext) -> Finding:
    t = ctx.thresholds
    rows = ctx.rows(PREPARED, {"top": ctx.settings.top})
    max_prepared = int(rows[0]["max_prepared"])
    found = [r for r in rows if r["gid"] is not None]
    total = int(found[0]["total"]) if found else 0
    oldest = max((float(r["seconds"]) for r in found), default=0.0)
    values = {"prepared_transactions": total, "oldest_prepared_transaction_seconds": round(oldest, 1)}
    if not found:
        limit = "max_prepared_transactions is 0: none can be made" if max_prepared == 0 else "none"
        return Finding(status=Status.OK, message=f"no prepared transaction ({limit})", values=values)
    return Finding(
        status=grade(oldest, t.prepared_transaction_warn_seconds, t.prepared_transaction_critical_seconds),
        message=f"{total} prepared transaction{'s' if total > 1 else ''}, the oldest prepared {human_age(oldest)} ago "
        f"(warn at {t.prepared_transaction_warn_seconds:g}s, critical at {t.prepared_transaction_critical_seconds:g}s)"
        ": each holds its locks and the xmin horizon until COMMIT PREPARED or ROLLBACK PREPARED",
        values=values,
        details=[
            f"{r['gid']!r} in database {r['database']} (owner {r['owner']}): prepared {human_age(r['seconds'])} ago, "
            f"{int(r['xid_age']):,} transactions old; once its transaction manager has decided, "
            f"COMMIT PREPARED or ROLLBACK PREPARED {_literal(r['gid'])} (connected to {r['database']})"
            for r in found
        ],
    )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
