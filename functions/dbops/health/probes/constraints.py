"""Constraints of this database that leave work undone: ones left NOT VALID, and foreign keys with no index on
the referencing side.

NOT VALID (check, foreign key, and from 18 NOT NULL; on tables and domains): new rows are checked, the rows
already there never were, and the planner cannot rely on the constraint. `ALTER TABLE ... VALIDATE CONSTRAINT`
takes a SHARE UPDATE EXCLUSIVE lock, so writes go on while it scans. A partition's copy of its parent's
constraint is counted once, with the parent.

Unindexed foreign key: each DELETE or key UPDATE on the referenced table looks up the referencing rows, and a
join on the key does the same: without an index, a scan of the whole referencing table each time. A foreign key
counts as indexed when its columns, in any order, are the leading key columns of a valid, non-partial b-tree
index on the referencing table (or a hash index on its one column): an index on (a, b) serves a key on (a) and
one on (b, a), not one on (b). Listed largest referencing table first, sized without waiting on locks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from psycopg import sql

from dbops.health.context import ProbeContext, Query
from dbops.health.model import Finding, Status
from dbops.health.probes.relations import LOCKED
from dbops.text import human_bytes

NOT_VALID = """
    SELECT CASE WHEN k.conrelid <> 0 THEN 'TABLE' ELSE 'DOMAIN' END AS kind,
           CASE WHEN k.conrelid <> 0 THEN k.conrelid::regclass::text ELSE k.contypid::regtype::text END AS owner,
           quote_ident(k.conname) AS conname,
           CASE k.contype WHEN 'c' THEN 'check' WHEN 'f' THEN 'foreign key' WHEN 'n' THEN 'not null'
                ELSE k.contype::text END AS contype,
           count(*) OVER () AS total
    FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace
    WHERE NOT k.convalidated AND k.conparentid = 0
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
    ORDER BY 2, 3
    LIMIT %(top)s
"""

UNINDEXED_FOREIGN_KEYS = sql.SQL(
    """WITH {locked},
    fks AS (
        SELECT k.oid, k.conname, k.conrelid, k.confrelid, k.conkey, t.relkind
        FROM pg_constraint k
        JOIN pg_class t ON t.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE k.contype = 'f' AND k.conparentid = 0
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
          AND NOT EXISTS (
              SELECT 1
              FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
              WHERE i.indrelid = k.conrelid AND i.indisvalid AND i.indpred IS NULL
                AND (am.amname = 'btree' OR (am.amname = 'hash' AND cardinality(k.conkey) = 1))
                AND i.indnkeyatts >= cardinality(k.conkey)
                AND (i.indkey::int2[])[0:cardinality(k.conkey) - 1] @> k.conkey
          )
    ),
    sized AS (
        SELECT f.*,
               CASE WHEN f.relkind = 'p'
                    THEN (SELECT sum(pg_relation_size(p.relid)) FROM pg_partition_tree(f.conrelid) p
                          WHERE p.isleaf AND p.relid NOT IN (SELECT relation FROM locked))
                    WHEN f.conrelid NOT IN (SELECT relation FROM locked) THEN pg_relation_size(f.conrelid)
               END AS bytes
        FROM fks f
    )
    SELECT s.conrelid::regclass::text AS table_name, quote_ident(s.conname) AS conname,
           s.confrelid::regclass::text AS referenced,
           (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY c.ord)
            FROM unnest(s.conkey) WITH ORDINALITY AS c(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = s.conrelid AND a.attnum = c.attnum) AS columns,
           s.bytes, count(*) OVER () AS total
    FROM sized s
    ORDER BY s.bytes DESC NULLS LAST, 1, 2
    LIMIT %(top)s
"""
).format(locked=LOCKED)


def _each_one_a_warning(
    ctx: ProbeContext,
    query: Query,
    value: str,
    *,
    ok: str,
    counted: tuple[str, str],
    warning: str,
    detail: Callable[[dict[str, Any]], str],
) -> Finding:
    """OK with `ok` when the query finds nothing; else WARN: the count, `counted` (singular, plural), `warning`, and
    one detail per row (the first `top`; each row carries the full count in `total`)."""
    rows = ctx.rows(query, {"top": ctx.settings.top})
    total = int(rows[0]["total"]) if rows else 0
    values = {value: total}
    if not total:
        return Finding(status=Status.OK, message=ok, values=values)
    message = f"{total} {counted[total > 1]} {warning}"
    return Finding(status=Status.WARN, message=message, values=values, details=[detail(r) for r in rows])


def probe_not_valid_constraints(ctx: ProbeContext) -> Finding:
    return _each_one_a_warning(
        ctx,
        NOT_VALID,
        "not_valid_constraints",
        ok="no constraint left NOT VALID",
        counted=("constraint", "constraints"),
        warning="left NOT VALID: the rows already there were never checked; VALIDATE CONSTRAINT "
        "checks them while writes go on",
        detail=lambda r: (
            f"{r['contype']} {r['conname']} on {r['owner']}: ALTER {r['kind']} {r['owner']} "
            f"VALIDATE CONSTRAINT {r['conname']}"
        ),
    )


def probe_unindexed_foreign_keys(ctx: ProbeContext) -> Finding:
    return _each_one_a_warning(
        ctx,
        UNINDEXED_FOREIGN_KEYS,
        "unindexed_foreign_keys",
        ok="every foreign key has an index on its columns",
        counted=("foreign key", "foreign keys"),
        warning="without an index on the referencing columns: each delete or key update on the "
        "referenced table scans the referencing table",
        detail=lambda r: (
            f"{r['table_name']} "
            f"({human_bytes(r['bytes']) if r['bytes'] is not None else 'size not read: locked'}) {r['conname']} "
            f"({r['columns']}) references {r['referenced']}: CREATE INDEX CONCURRENTLY ON {r['table_name']} "
            f"({r['columns']})"
        ),
    )
