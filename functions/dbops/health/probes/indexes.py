"""Index usage: unused, invalid and duplicate indexes (PgHero's checks, in SQL).

Unused: never scanned since statistics were reset, at least `unused_index_min_bytes`, not backing a
constraint; only indexes the planner's page count puts near that size are measured (opening every index
of a large schema would cost more than the rest of the run). Invalid: left by a failed CREATE INDEX
CONCURRENTLY or REINDEX CONCURRENTLY (`*_ccnew`); still updated on every write, never used by a query.
Duplicate: an index whose columns, operator classes and predicate another index on the same table repeats
(exactly, or as the leading columns of a b-tree).
"""

from __future__ import annotations

from psycopg import sql

from dbops.health.context import ProbeContext
from dbops.health.model import Finding, Status
from dbops.health.probes.relations import LOCKED
from dbops.text import human_bytes

UNUSED = sql.SQL(
    """WITH {locked},
    candidates AS (
        SELECT s.schemaname, s.relname, s.indexrelname, s.indexrelid
        FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid
        JOIN pg_class c ON c.oid = s.indexrelid
        WHERE s.idx_scan = 0 AND i.indisvalid AND NOT i.indisunique AND NOT i.indisprimary
          AND c.relpages::bigint * current_setting('block_size')::bigint >= %(min_bytes)s / 2
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = s.indexrelid)
          AND s.indexrelid NOT IN (SELECT relation FROM locked) AND s.relid NOT IN (SELECT relation FROM locked)
    ),
    sized AS (SELECT *, pg_relation_size(indexrelid) AS bytes FROM candidates)
    SELECT schemaname, relname, indexrelname, bytes, count(*) OVER () AS total, sum(bytes) OVER () AS total_bytes,
           (SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()) AS stats_reset
    FROM sized
    WHERE bytes >= %(min_bytes)s
    ORDER BY bytes DESC
    LIMIT %(top)s
"""
).format(locked=LOCKED)

INVALID = """
    SELECT n.nspname, t.relname AS table_name, c.relname AS index_name,
           EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid) AS building
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_class t ON t.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE NOT i.indisvalid AND n.nspname NOT LIKE 'pg\\_temp%%'
    ORDER BY 1, 2, 3
"""

# a is reported when b makes it redundant; among identical indexes the weakest is reported (a primary key
# or unique index outranks a plain one, a constraint's index a free one, the older the newer)
DUPLICATE = sql.SQL(
    """WITH {locked},
    idx AS (
        SELECT i.*, c.relname, c.relam, c.relnamespace,
               EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) AS has_constraint,
               coalesce(pg_get_expr(i.indpred, i.indrelid), '') AS pred,
               coalesce(pg_get_expr(i.indexprs, i.indrelid), '') AS exprs
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE i.indisvalid AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
    ),
    pairs AS (
        SELECT DISTINCT ON (a.indexrelid) a.indexrelid, a.indrelid, a.relname AS index_name, a.relnamespace,
               b.relname AS covered_by, a.indkey::text = b.indkey::text AS identical
        FROM idx a JOIN idx b ON b.indrelid = a.indrelid AND b.indexrelid <> a.indexrelid
        WHERE a.relam = b.relam AND a.pred = b.pred AND a.exprs = b.exprs
          AND (
              (a.indkey::text = b.indkey::text AND a.indclass::text = b.indclass::text
               AND a.indcollation::text = b.indcollation::text AND a.indoption::text = b.indoption::text
               AND (a.indisprimary, a.indisunique, a.has_constraint, b.indexrelid)
                 < (b.indisprimary, b.indisunique, b.has_constraint, a.indexrelid))
              OR
              (a.relam = (SELECT oid FROM pg_am WHERE amname = 'btree')
               AND NOT a.indisunique AND NOT a.has_constraint
               AND a.indnatts = a.indnkeyatts AND a.indnatts < b.indnkeyatts
               AND b.indkey::text LIKE a.indkey::text || ' %%'
               AND b.indclass::text LIKE a.indclass::text || ' %%'
               AND b.indcollation::text LIKE a.indcollation::text || ' %%'
               AND b.indoption::text LIKE a.indoption::text || ' %%')
          )
        ORDER BY a.indexrelid, identical DESC
    )
    SELECT n.nspname, t.relname AS table_name, p.index_name, p.covered_by, p.identical,
           CASE WHEN p.indexrelid NOT IN (SELECT relation FROM locked) THEN pg_relation_size(p.indexrelid) END AS bytes
    FROM pairs p JOIN pg_class t ON t.oid = p.indrelid JOIN pg_namespace n ON n.oid = p.relnamespace
    ORDER BY bytes DESC NULLS LAST, 1, 2, 3
"""
).format(locked=LOCKED)


def probe_unused_indexes(ctx: ProbeContext) -> Finding:
    min_bytes = ctx.thresholds.unused_index_min_bytes
    rows = ctx.rows(UNUSED, {"min_bytes": min_bytes, "top": ctx.settings.top})
    total = int(rows[0]["total"]) if rows else 0
    total_bytes = int(rows[0]["total_bytes"]) if rows else 0
    values = {"unused_indexes": total, "unused_index_bytes": total_bytes}
    if not rows:
        return Finding(status=Status.OK, message=f"no unused index of {human_bytes(min_bytes)} or more", values=values)
    since = rows[0]["stats_reset"]
    since_text = f"since statistics were reset at {since:%Y-%m-%d %H:%M}" if since else "since statistics began"
    return Finding(
        status=Status.WARN,
        message=f"{total} index{'es' if total > 1 else ''} of {human_bytes(min_bytes)} or more never scanned "
        f"{since_text} ({human_bytes(total_bytes)}); check replicas before dropping",
        values=values,
        details=[f"{r['schemaname']}.{r['indexrelname']} on {r['relname']}: {human_bytes(r['bytes'])}" for r in rows],
    )


def probe_invalid_indexes(ctx: ProbeContext) -> Finding:
    rows = ctx.rows(INVALID)
    invalid = [r for r in rows if not r["building"]]
    building = [r for r in rows if r["building"]]
    values = {"invalid_indexes": len(invalid)}
    details = [
        f"{r['nspname']}.{r['index_name']} on {r['table_name']} is invalid: "
        f"DROP INDEX CONCURRENTLY {r['nspname']}.{r['index_name']}, then build it again"
        for r in invalid
    ] + [f"{r['nspname']}.{r['index_name']} on {r['table_name']} is being built" for r in building]
    if not invalid:
        message = "no invalid index" + (f" ({len(building)} being built)" if building else "")
        return Finding(status=Status.OK, message=message, values=values, details=details)
    return Finding(
        status=Status.WARN,
        message=f"{len(invalid)} invalid index{'es' if len(invalid) > 1 else ''} (a failed concurrent build or "
        "reindex): written on every change, never used",
        values=values,
        details=details[: ctx.settings.top],
    )


def probe_duplicate_indexes(ctx: ProbeContext) -> Finding:
    rows = ctx.rows(DUPLICATE)
    total_bytes = sum(int(r["bytes"] or 0) for r in rows)
    values = {"duplicate_indexes": len(rows), "duplicate_index_bytes": total_bytes}
    if not rows:
        return Finding(status=Status.OK, message="no duplicate index", values=values)
    return Finding(
        status=Status.WARN,
        message=f"{len(rows)} redundant index{'es' if len(rows) > 1 else ''} ({human_bytes(total_bytes)})",
        values=values,
        details=[
            f"{r['nspname']}.{r['index_name']} on {r['table_name']} ({human_bytes(r['bytes'])}) "
            f"{'repeats' if r['identical'] else 'is covered by'} {r['covered_by']}"
            for r in rows[: ctx.settings.top]
        ],
    )
