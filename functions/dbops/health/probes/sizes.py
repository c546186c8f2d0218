"""Table and index sizes (the guide's size query, for every schema and with the largest first), the
database's size, and its growth since the newest backup (whose manifest recorded every table's size)."""

from __future__ import annotations

from psycopg import sql

from dbops.health.context import ProbeContext
from dbops.health.model import Finding, Status
from dbops.health.probes.relations import LOCKED, USER_TABLES
from dbops.text import human_bytes

# Opening a relation to measure it costs a catalog read per relation in a fresh session (about 0.3 ms per
# table with its indexes and TOAST). Up to `exact_sizes_max_tables` every table is measured; past that the
# planner's page counts (relpages) rank the tables and estimate the total, and only the largest are measured.
SIZES = sql.SQL(
    """WITH {locked}, {user_tables},
    est AS (
        SELECT u.oid, u.nspname, u.relname, u.is_locked,
               (c.relpages::bigint + coalesce(t.relpages, 0) + coalesce(ix.pages, 0))
                   * current_setting('block_size')::bigint AS estimate_bytes,
               count(*) OVER () AS tables
        FROM user_tables u
        JOIN pg_class c ON c.oid = u.oid
        LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
        LEFT JOIN LATERAL (SELECT sum(ic.relpages) AS pages
                           FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                           WHERE i.indrelid = u.oid) ix ON true
    ),
    measured AS (
        SELECT est.*, CASE WHEN NOT is_locked THEN pg_total_relation_size(oid) END AS total_bytes
        FROM est
        WHERE tables <= %(exact_max)s
           OR oid IN (SELECT oid FROM est ORDER BY estimate_bytes DESC LIMIT %(candidates)s)
    ),
    totals AS (
        SELECT sum(estimate_bytes) AS estimated_bytes, max(tables) AS tables,
               count(*) FILTER (WHERE is_locked) AS locked_tables
        FROM est
    ),
    top AS (
        SELECT * FROM measured ORDER BY is_locked DESC, coalesce(total_bytes, estimate_bytes) DESC LIMIT %(top)s
    )
    SELECT top.nspname, top.relname, top.is_locked, top.total_bytes,
           CASE WHEN NOT top.is_locked THEN pg_indexes_size(top.oid) END AS index_bytes,
           (SELECT sum(total_bytes) FROM measured) AS measured_bytes,
           totals.estimated_bytes, totals.tables, totals.locked_tables,
           totals.tables <= %(exact_max)s AS exact,
           (SELECT pg_database_size(current_database())) AS database_bytes
    FROM top, totals
    ORDER BY top.is_locked DESC, coalesce(top.total_bytes, top.estimate_bytes) DESC
"""
).format(locked=LOCKED, user_tables=USER_TABLES)

DATABASE_SIZE = "SELECT pg_database_size(current_database()) AS database_bytes"


def probe_sizes(ctx: ProbeContext) -> Finding:
    top, exact_max = ctx.settings.top, ctx.settings.exact_sizes_max_tables
    rows = ctx.rows(SIZES, {"top": top, "candidates": 3 * top, "exact_max": exact_max})
    if not rows:
        db = int(ctx.row(DATABASE_SIZE)["database_bytes"])
        return Finding(
            status=Status.OK,
            message=f"database {human_bytes(db)}, no user tables",
            values={"database_size_bytes": db, "tables_size_bytes": 0},
        )
    first = rows[0]
    db, locked, exact = int(first["database_bytes"]), int(first["locked_tables"]), bool(first["exact"])
    tables_bytes = int((first["measured_bytes"] if exact else first["estimated_bytes"]) or 0)
    values: dict[str, int | float | None] = {"database_size_bytes": db, "tables_size_bytes": tables_bytes}
    message = (
        f"database {human_bytes(db)}; {first['tables']} tables, {human_bytes(tables_bytes)} with indexes and TOAST"
    )
    if not exact:
        message += f" (estimated from planner statistics: more than {exact_max} tables; the largest measured)"
    backup = ctx.newest_backup
    if backup is not None and exact and not locked:
        before = sum(t.bytes for t in backup.manifest.tables)
        growth = tables_bytes - before
        values["growth_since_backup_bytes"] = growth
        message += f"; {'+' if growth >= 0 else '-'}{human_bytes(abs(growth))} since backup {backup.manifest.id}"
    if locked:
        message += f"; {locked} locked by another session, not measured"
    details = [
        f"{r['nspname']}.{r['relname']}: locked (AccessExclusiveLock held or queued), size not measured"
        if r["is_locked"]
        else f"{r['nspname']}.{r['relname']}: {human_bytes(r['total_bytes'])} (indexes {human_bytes(r['index_bytes'])})"
        for r in rows
    ]
    return Finding(status=Status.OK, message=message, values=values, details=details)
