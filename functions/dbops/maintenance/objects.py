"""What maintenance reads from the catalogs: tables with their statistics, indexes with a bloat estimate,
columns, primary keys and the foreign keys that reference a table.

Sizes come from pg_class.relpages, never pg_relation_size(): that one takes a lock, and a table held in
ACCESS EXCLUSIVE by another session would stall the plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

SERVER_12 = 120000

USER_RELATIONS = sql.SQL("""
      n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = {rel}.oid AND d.deptype = 'e')
  AND (%(schemas)s::text[] IS NULL OR n.nspname = ANY(%(schemas)s::text[]))
""")

TABLES = sql.SQL(
    """
SELECT n.nspname, c.relname, coalesce(s.n_live_tup, 0), coalesce(s.n_dead_tup, 0),
       coalesce(s.n_mod_since_analyze, 0),
       greatest(s.last_analyze, s.last_autoanalyze), greatest(s.last_vacuum, s.last_autovacuum),
       c.relpages::bigint * current_setting('block_size')::bigint
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
WHERE c.relkind IN ('r', 'm') AND c.relpersistence <> 't' AND {user} ORDER BY 1, 2"""
).format(user=USER_RELATIONS.format(rel=sql.SQL("c")))

# B-tree size estimate from the statistics: entries of (8-byte tuple header + key width, MAXALIGNed) plus a
# 4-byte line pointer, packed to the fillfactor on pages with a 24-byte header and 16-byte special space.
INDEXES = sql.SQL(
    """
WITH widths AS (
    SELECT ix.indexrelid,
           sum(s.avg_width) AS width,
           count(*) = count(s.avg_width) AS has_stats
    FROM pg_index ix
    JOIN pg_class ic ON ic.oid = ix.indexrelid
    JOIN pg_class tc ON tc.oid = ix.indrelid
    JOIN pg_namespace n ON n.oid = tc.relnamespace
    JOIN pg_attribute a ON a.attrelid = ix.indexrelid AND a.attnum > 0
    LEFT JOIN pg_stats s
           ON s.schemaname = n.nspname AND s.attname = a.attname
          AND s.tablename = CASE WHEN ix.indkey[a.attnum - 1] = 0 THEN ic.relname ELSE tc.relname END
    GROUP BY ix.indexrelid
)
SELECT n.nspname, ic.relname, tc.relname, ix.indisvalid, am.amname,
       ic.relpages::bigint * current_setting('block_size')::bigint,
       coalesce(con.contype::text, ''),
       EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.relid = tc.oid),
       CASE WHEN am.amname = 'btree' AND w.has_stats AND ic.reltuples >= 0 AND ic.relpages > 1 THEN
           1 + ceil(ic.reltuples * (12 + 8 * ceil(w.width / 8.0))
                    / ((current_setting('block_size')::int - 40)
                       * coalesce(substring(array_to_string(ic.reloptions, ',') FROM 'fillfactor=([0-9]+)')::int, 90)
                       / 100.0))::bigint
       END,
       ic.relpages
FROM pg_index ix
JOIN pg_class ic ON ic.oid = ix.indexrelid
JOIN pg_class tc ON tc.oid = ix.indrelid
JOIN pg_namespace n ON n.oid = ic.relnamespace
JOIN pg_am am ON am.oid = ic.relam
LEFT JOIN widths w ON w.indexrelid = ix.indexrelid
LEFT JOIN pg_constraint con ON con.conindid = ic.oid AND con.contype IN ('p', 'u', 'x') AND con.conrelid = tc.oid
WHERE ic.relkind = 'i' AND tc.relkind IN ('r', 'm') AND tc.relpersistence <> 't' AND {user} ORDER BY 1, 3, 2"""
).format(user=USER_RELATIONS.format(rel=sql.SQL("tc")))

RELATION = sql.SQL("""
SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s
""")

COLUMNS = sql.SQL("""
SELECT a.attname, format_type(a.atttypid, a.atttypmod),
       a.atttypid IN ('date'::regtype, 'timestamp'::regtype, 'timestamptz'::regtype)
FROM pg_attribute a WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
""")

PRIMARY_KEY = sql.SQL("""
SELECT array(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord)
FROM pg_constraint con WHERE con.conrelid = %s AND con.contype = 'p'
""")

# an index whose leading columns are exactly the given ones (a B-tree that can find rows by them)
LEADING_INDEX = sql.SQL("""
EXISTS (SELECT 1 FROM pg_index i
        WHERE i.indrelid = {rel} AND i.indisvalid
          AND (string_to_array(i.indkey::text, ' ')::int2[])[1:cardinality({cols})] @> {cols}
          AND (string_to_array(i.indkey::text, ' ')::int2[])[1:cardinality({cols})] <@ {cols})
""")

TIMESTAMP_INDEXED = sql.SQL("SELECT {}").format(
    LEADING_INDEX.format(rel=sql.SQL("%(oid)s"), cols=sql.SQL("ARRAY[%(attnum)s]::int2[]"))
)

ATTNUM = sql.SQL("SELECT attnum FROM pg_attribute WHERE attrelid = %s AND attname = %s AND NOT attisdropped")

REFERENCING = sql.SQL("""
SELECT con.conname, cn.nspname, cc.relname, cc.oid,
       array(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord),
       array(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.ord),
       con.confdeltype::text,
       {leading_index}
FROM pg_constraint con
JOIN pg_class cc ON cc.oid = con.conrelid
JOIN pg_namespace cn ON cn.oid = cc.relnamespace
WHERE con.contype = 'f' AND con.confrelid = %s AND con.conparentid = 0
ORDER BY cn.nspname, cc.relname, con.conname
""").format(leading_index=LEADING_INDEX.format(rel=sql.SQL("con.conrelid"), cols=sql.SQL("con.conkey")))

ON_DELETE = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


@dataclass(frozen=True)
class TableRef:
    schema: str
    name: str

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def display(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class TableStats:
    table: TableRef
    live: int
    dead: int
    modified_since_analyze: int
    last_analyze: datetime | None
    last_vacuum: datetime | None
    bytes: int

    @property
    def dead_ratio(self) -> float:
        total = self.live + self.dead
        return self.dead / total if total else 0.0


@dataclass(frozen=True)
class IndexInfo:
    schema: str
    name: str
    table: str
    valid: bool
    method: str
    bytes: int
    constraint: str  # 'p', 'u', 'x' or ''
    build_running: bool  # a CREATE INDEX / REINDEX is running on the table right now
    estimated_pages: int | None
    pages: int

    @property
    def bloat_ratio(self) -> float | None:
        if self.estimated_pages is None or self.pages <= 1:
            return None
        return max(0.0, 1.0 - self.estimated_pages / self.pages)


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    is_timestamp: bool


@dataclass(frozen=True)
class ForeignKey:
    """A foreign key of `child` (child_columns) referencing its parent's parent_columns."""

    name: str
    child: TableRef
    child_oid: int
    child_columns: tuple[str, ...]
    parent_columns: tuple[str, ...]
    on_delete: str
    indexed: bool

    def describe(self) -> str:
        return f"{self.child.display}({', '.join(self.child_columns)}) ON DELETE {self.on_delete}"


def _schemas(schemas: list[str] | None) -> dict[str, Any]:
    return {"schemas": schemas}


def list_tables(conn: psycopg.Connection[Any], schemas: list[str] | None = None) -> list[TableStats]:
    rows = conn.execute(TABLES, _schemas(schemas)).fetchall()
    return [TableStats(TableRef(r[0], r[1]), int(r[2]), int(r[3]), int(r[4]), r[5], r[6], int(r[7])) for r in rows]


def list_indexes(conn: psycopg.Connection[Any], schemas: list[str] | None = None) -> list[IndexInfo]:
    rows = conn.execute(INDEXES, _schemas(schemas)).fetchall()
    return [IndexInfo(r[0], r[1], r[2], bool(r[3]), r[4], int(r[5]), r[6], bool(r[7]), r[8], int(r[9])) for r in rows]


def find_relation(conn: psycopg.Connection[Any], table: TableRef) -> tuple[int, str] | None:
    row = conn.execute(RELATION, [table.schema, table.name]).fetchone()
    return (int(row[0]), str(row[1])) if row else None


def columns(conn: psycopg.Connection[Any], oid: int) -> list[Column]:
    return [Column(r[0], r[1], bool(r[2])) for r in conn.execute(COLUMNS, [oid]).fetchall()]


def primary_key(conn: psycopg.Connection[Any], oid: int) -> list[str]:
    row = conn.execute(PRIMARY_KEY, [oid]).fetchone()
    return list(row[0]) if row else []


def has_leading_index(conn: psycopg.Connection[Any], oid: int, column: str) -> bool:
    attnum = conn.execute(ATTNUM, [oid, column]).fetchone()
    if attnum is None:
        return False
    row = conn.execute(TIMESTAMP_INDEXED, {"oid": oid, "attnum": attnum[0]}).fetchone()
    return bool(row and row[0])


def referencing_keys(conn: psycopg.Connection[Any], oid: int) -> list[ForeignKey]:
    rows = conn.execute(REFERENCING, [oid]).fetchall()
    return [
        ForeignKey(
            name=r[0],
            child=TableRef(r[1], r[2]),
            child_oid=int(r[3]),
            child_columns=tuple(r[4]),
            parent_columns=tuple(r[5]),
            on_delete=ON_DELETE.get(r[6], r[6]),
            indexed=bool(r[7]),
        )
        for r in rows
    ]
