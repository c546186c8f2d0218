"""Table and index sizes (the guide's size query, for every schema and with the largest first), the
database's size, and its growth since the newest backup (whose manifest recorded every table's size)."""

from __future__ import annotations

from psycopg import sql

from dbops.health.context import ProbeContext
from dbops.health.model import Finding, Status
from dbops.health.probes.relations import LOCKED, USER_TABLES
from dbops.health.text import size

SIZES = sql.SQL(
    """WITH {locked}, {user_tables},
    sized AS (
        SELECT nspname, relname, is_locked,
               CASE WHEN NOT is_locked THEN pg_total_relation_size(oid) END AS total_bytes,
               CASE WHEN NOT is_locked THEN pg_indexes_size(oid) END AS index_bytes
        FROM user_tables
    )
    SELECT nspname, relname, is_locked, total_bytes, index_bytes,
           sum(total_bytes) OVER () AS all_bytes,
           count(*) OVER () AS tables,
           count(*) FILTER (WHERE is_locked) OVER () AS locked_tables,
           (SELECT pg_database_size(current_database())) AS database_bytes
    FROM sized
    ORDER BY is_locked DESC, total_bytes DESC
    LIMIT %(top)s
"""
).format(locked=LOCKED, user_tables=USER_TABLES)

DATABASE_SIZE = "SELECT pg_database_size(current_database()) AS database_bytes"


def probe_sizes(ctx: ProbeContext) -> Finding:
    rows = ctx.rows(SIZES, {"top": ctx.settings.top})
    if not rows:
        db = int(ctx.row(DATABASE_SIZE)["database_bytes"])
        return Finding(
            status=Status.OK,
            message=f"database {size(db)}, no user tables",
            values={"database_size_bytes": db, "tables_size_bytes": 0},
        )
    first = rows[0]
    db, tables_bytes, locked = int(first["database_bytes"]), int(first["all_bytes"] or 0), int(first["locked_tables"])
    values: dict[str, int | float | None] = {"database_size_bytes": db, "tables_size_bytes": tables_bytes}
    message = f"database {size(db)}; {first['tables']} tables, {size(tables_bytes)} with indexes and TOAST"
    backup = ctx.newest_backup
    if backup is not None and not locked:
        before = sum(t.bytes for t in backup.manifest.tables)
        growth = tables_bytes - before
        values["growth_since_backup_bytes"] = growth
        message += f"; {'+' if growth >= 0 else '-'}{size(abs(growth))} since backup {backup.manifest.id}"
    if locked:
        message += f"; {locked} locked by another session, not measured"
    details = [
        f"{r['nspname']}.{r['relname']}: locked (AccessExclusiveLock held or queued), size not measured"
        if r["is_locked"]
        else f"{r['nspname']}.{r['relname']}: {size(r['total_bytes'])} (indexes {size(r['index_bytes'])})"
        for r in rows
    ]
    return Finding(status=Status.OK, message=message, values=values, details=details)
