"""What the selective swap reads from the catalogs (columns, row keys, foreign keys, triggers and rules,
materialized views), the staged table it works on, and the small SQL pieces the row statements are made of."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from dbops.errors import DatabaseError
from dbops.restore.models import TablePlan

COLUMNS = """
    SELECT a.attname, format_type(a.atttypid, a.atttypmod)
    FROM pg_attribute a
    WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
    ORDER BY a.attnum
"""
# binary COPY needs a binary send/receive function for every column's type (through domains and arrays);
# composite types and types made without them (CREATE TYPE ... without SEND/RECEIVE) travel as text
BINARY_COPY_OK = """
    SELECT coalesce(bool_and(t.typtype <> 'c' AND t.typsend <> 0 AND t.typreceive <> 0
                             AND (e.oid IS NULL OR (e.typtype <> 'c' AND e.typsend <> 0 AND e.typreceive <> 0))), true)
    FROM pg_attribute a
    JOIN pg_type d ON d.oid = a.atttypid
    JOIN pg_type t ON t.oid = CASE WHEN d.typtype = 'd' THEN d.typbasetype ELSE d.oid END
    LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
    WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
"""
# the columns rows are matched by: the primary key, else a unique index on plain columns (NOT NULL ones first);
# its key columns only, not those it merely INCLUDEs
ROW_KEY = """
    SELECT ARRAY(SELECT a.attname FROM unnest((i.indkey::int2[])[0:i.indnkeyatts - 1]) WITH ORDINALITY k(attnum, n)
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.n)
    FROM pg_index i
    WHERE i.indrelid = %s AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
    ORDER BY i.indisprimary DESC,
             (SELECT bool_and(a.attnotnull) FROM pg_attribute a
              WHERE a.attrelid = i.indrelid AND a.attnum = ANY((i.indkey::int2[])[0:i.indnkeyatts - 1])) DESC,
             i.indnkeyatts, i.indexrelid
    LIMIT 1
"""
# the foreign keys into and out of the tables, in one query, as pairs of tables: `outgoing` and `incoming` say
# which side of the pair the tables are on. An outgoing key leaves out the copies PostgreSQL makes of a key that
# references a partitioned table for each of its partitions (same referencing table as the constraint it was
# copied from); an incoming one the copies of a partitioned referencing table's key for each partition.
FOREIGN_KEYS = """
    SELECT k.conname, k.conrelid, k.conrelid::regclass::text, rc.relkind::text,
           k.confrelid, k.confrelid::regclass::text, fc.relkind::text,
           ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY x(attnum, n)
                 JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = x.attnum ORDER BY x.n),
           ARRAY(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY x(attnum, n)
                 JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = x.attnum ORDER BY x.n),
           k.conrelid = ANY(%(tables)s) AND (p.oid IS NULL OR p.conrelid <> k.conrelid),
           k.confrelid = ANY(%(tables)s) AND (p.oid IS NULL OR p.conrelid = k.conrelid)
    FROM pg_constraint k
    JOIN pg_class rc ON rc.oid = k.conrelid JOIN pg_class fc ON fc.oid = k.confrelid
    LEFT JOIN pg_constraint p ON p.oid = k.conparentid
    WHERE k.contype = 'f' AND (k.conrelid = ANY(%(tables)s) OR k.confrelid = ANY(%(tables)s))
    ORDER BY k.oid
"""
# the target's own triggers and rules on a table, enabled ones only (not foreign keys' internal triggers)
TRIGGERS_AND_RULES = """
    SELECT 'TRIGGER', tgname, tgenabled::text FROM pg_trigger
    WHERE tgrelid = %(table)s AND NOT tgisinternal AND tgenabled <> 'D'
    UNION ALL
    SELECT 'RULE', rulename, ev_enabled::text FROM pg_rewrite
    WHERE ev_class = %(table)s AND rulename <> '_RETURN' AND ev_enabled <> 'D'
"""
ENABLE = {"O": "ENABLE", "A": "ENABLE ALWAYS", "R": "ENABLE REPLICA"}
# of the tables, those with enabled rules: disabling a rule (ALTER TABLE ... DISABLE RULE) takes ACCESS EXCLUSIVE
WITH_RULES = """
    SELECT DISTINCT ev_class FROM pg_rewrite WHERE ev_class = ANY(%s) AND rulename <> '_RETURN' AND ev_enabled <> 'D'
"""
# materialized views reading the tables, directly or through views, each after those it reads
VIEWS_READING = """
    WITH RECURSIVE reads(relid, depth) AS (
        SELECT unnest(%s::oid[]), 0
        UNION ALL
        SELECT r.ev_class, reads.depth + 1 FROM reads
        JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = reads.relid
                        AND d.classid = 'pg_rewrite'::regclass
        JOIN pg_rewrite r ON r.oid = d.objid AND r.ev_class <> reads.relid
        WHERE reads.depth < 20
    )
    SELECT c.oid::regclass::text, c.relispopulated,
           EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid
                   AND i.indpred IS NULL AND i.indexprs IS NULL)
    FROM reads JOIN pg_class c ON c.oid = reads.relid
    WHERE c.relkind = 'm'
    GROUP BY c.oid ORDER BY max(reads.depth), 1
"""


@dataclass(frozen=True)
class ForeignKey:
    name: str
    table_oid: int
    table: str
    table_kind: str
    ref_oid: int
    ref_table: str
    ref_kind: str
    columns: list[str]
    ref_columns: list[str]

    def describe(self) -> str:
        return f"{self.name} ({self.table} ({', '.join(self.columns)}) -> {self.ref_table})"


@dataclass(frozen=True)
class Keys:
    """Foreign keys by table: those it holds (`outgoing`, table -> its keys) and those into it (`incoming`)."""

    outgoing: dict[int, list[ForeignKey]]
    incoming: dict[int, list[ForeignKey]]

    def to_others(self, oid: int, restored: set[int]) -> list[ForeignKey]:
        """The table's keys into tables not restored."""
        return [fk for fk in self.outgoing[oid] if fk.ref_oid not in restored]

    def from_others(self, oid: int, restored: set[int]) -> list[ForeignKey]:
        """Keys of tables not restored into the table."""
        return [fk for fk in self.incoming[oid] if fk.table_oid not in restored]


@dataclass
class Staged:
    plan: TablePlan
    oid: int
    relation: sql.Composable
    temp: sql.Identifier
    columns: list[str]
    key: list[str]
    rows: int  # copied into the temporary table (COPY's count)


def relation_oid(conn: psycopg.Connection[Any], plan: TablePlan) -> int:
    row = conn.execute(
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        [plan.schema_name, plan.name],
    ).fetchone()
    if row is None:
        raise DatabaseError(f"table {plan.qualified} is not in the database")
    return int(row[0])


def table_columns(conn: psycopg.Connection[Any], oid: int) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in conn.execute(COLUMNS, [oid]).fetchall()]


def foreign_keys(conn: psycopg.Connection[Any], oids: list[int]) -> Keys:
    """The foreign keys out of and into the tables `oids`, read in one query."""
    keys = Keys({oid: [] for oid in oids}, {oid: [] for oid in oids})
    for r in conn.execute(FOREIGN_KEYS, {"tables": oids}).fetchall():
        fk = ForeignKey(r[0], int(r[1]), r[2], r[3], int(r[4]), r[5], r[6], list(r[7]), list(r[8]))
        if r[9]:
            keys.outgoing[fk.table_oid].append(fk)
        if r[10]:
            keys.incoming[fk.ref_oid].append(fk)
    return keys


def with_rules(conn: psycopg.Connection[Any], oids: list[int]) -> set[int]:
    return {int(r[0]) for r in conn.execute(WITH_RULES, [oids]).fetchall()}


def from_(oid_text: str, relkind: str) -> sql.Composable:
    """A table's own rows, as a foreign key sees them: an inheritance parent without its children."""
    return sql.SQL("{}{}").format(sql.SQL("ONLY ") if relkind == "r" else sql.SQL(""), sql.SQL(oid_text))


def col(alias: str, column: str) -> sql.Composable:
    return sql.Identifier(alias, column)


def match(left: str, left_cols: list[str], right: str, right_cols: list[str]) -> sql.Composable:
    return sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(col(left, a), col(right, b)) for a, b in zip(left_cols, right_cols, strict=True)
    )


def not_null(alias: str, cols: list[str]) -> sql.Composable:
    return sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(col(alias, c)) for c in cols)


def parents_first(conn: psycopg.Connection[Any], staged: list[Staged], keys: Keys) -> list[Staged]:
    """Order tables so that every referenced table comes before the tables referencing it (a partition counts
    as its partitioned table: keys of partitioned tables are inherited by the partitions)."""
    family: dict[int, set[int]] = {s.oid: set() for s in staged}
    for oid, ancestor in conn.execute(
        "SELECT t.oid, a.relid::oid FROM unnest(%s::oid[]) t(oid), pg_partition_ancestors(t.oid) a",
        [list(family)],
    ).fetchall():
        family[int(oid)].add(int(ancestor))
    edges = {
        (child.oid, parent.oid)
        for child in staged
        for fk in keys.outgoing[child.oid]
        for parent in staged
        if parent is not child and fk.ref_oid in family[parent.oid]
    }
    ordered: list[Staged] = []
    pending = list(staged)
    while pending:
        ready = [t for t in pending if not any(c == t.oid and p in {x.oid for x in pending} for c, p in edges)]
        for t in ready or pending[:1]:  # a reference cycle: order does not matter within one transaction
            ordered.append(t)
            pending.remove(t)
    return ordered


def column_list(columns: list[str]) -> sql.Composable:
    """` (a, b)` after a table's name; nothing for a table without columns (it still has rows)."""
    if not columns:
        return sql.SQL("")
    return sql.SQL(" ({})").format(sql.SQL(", ").join(map(sql.Identifier, columns)))
