"""Selective swap: replace chosen tables' rows in the live target from the scratch copy, in one transaction.

Rows travel by binary COPY into temporary tables on the target; then, while writers are held off (EXCLUSIVE
on the chosen tables, SHARE on the tables that reference them; readers go on), rows missing from the backup
are deleted (children first) and the backup's rows updated or inserted by key (parents first). Before
anything changes, foreign keys are checked both ways, so a restore never breaks one and never cascades into
a table that was not chosen: backup rows whose parent was deleted since, and rows of other tables that
reference rows the backup does not have, fail the swap with the constraint and a sample of the keys.
The target's own triggers and rules on the restored tables are disabled for the swap and enabled again before
it commits, so the rows are exactly the backup's (pg_restore, too, loads rows before triggers exist); the
restore's record in the bucket is its audit trail. Materialized views that read a restored table are refreshed
in the same transaction. If anything fails, the transaction rolls back and the target is exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from dbops.errors import DatabaseError
from dbops.postgres.connection import ConnectionSpec, connect, describe_error
from dbops.restore.models import TablePlan

SAMPLE_KEYS = 5

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
# foreign keys as pairs of tables, leaving out the copies PostgreSQL makes of a key that references a
# partitioned table for each of its partitions' parent key (same referencing table as the constraint it
# was copied from) when `outgoing`, or of a partitioned referencing table for each partition when not
FOREIGN_KEYS = """
    SELECT k.conname, k.conrelid, k.conrelid::regclass::text, rc.relkind::text,
           k.confrelid, k.confrelid::regclass::text, fc.relkind::text,
           ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY x(attnum, n)
                 JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = x.attnum ORDER BY x.n),
           ARRAY(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY x(attnum, n)
                 JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = x.attnum ORDER BY x.n)
    FROM pg_constraint k
    JOIN pg_class rc ON rc.oid = k.conrelid JOIN pg_class fc ON fc.oid = k.confrelid
    LEFT JOIN pg_constraint p ON p.oid = k.conparentid
    WHERE k.contype = 'f' AND (CASE WHEN %(outgoing)s THEN k.conrelid ELSE k.confrelid END) = %(table)s
      AND (p.oid IS NULL OR (CASE WHEN %(outgoing)s THEN p.conrelid <> k.conrelid ELSE p.conrelid = k.conrelid END))
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


@dataclass
class Staged:
    plan: TablePlan
    oid: int
    relation: sql.Composable
    temp: sql.Identifier
    columns: list[str]
    key: list[str]


@dataclass
class SwapResult:
    rows: dict[str, int]
    refreshed_views: list[str]


def _relation(conn: psycopg.Connection[Any], plan: TablePlan) -> int:
    row = conn.execute(
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        [plan.schema_name, plan.name],
    ).fetchone()
    if row is None:
        raise DatabaseError(f"table {plan.qualified} is not in the database")
    return int(row[0])


def _columns(conn: psycopg.Connection[Any], oid: int) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in conn.execute(COLUMNS, [oid]).fetchall()]


def _foreign_keys(conn: psycopg.Connection[Any], oid: int, *, outgoing: bool) -> list[ForeignKey]:
    rows = conn.execute(FOREIGN_KEYS, {"outgoing": outgoing, "table": oid}).fetchall()
    return [ForeignKey(r[0], int(r[1]), r[2], r[3], int(r[4]), r[5], r[6], list(r[7]), list(r[8])) for r in rows]


def _from(oid_text: str, relkind: str) -> sql.Composable:
    """A table's own rows, as a foreign key sees them: an inheritance parent without its children."""
    return sql.SQL("{}{}").format(sql.SQL("ONLY ") if relkind == "r" else sql.SQL(""), sql.SQL(oid_text))


def _col(alias: str, column: str) -> sql.Composable:
    return sql.Identifier(alias, column)


def _match(left: str, left_cols: list[str], right: str, right_cols: list[str]) -> sql.Composable:
    return sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(_col(left, a), _col(right, b)) for a, b in zip(left_cols, right_cols, strict=True)
    )


def _not_null(alias: str, cols: list[str]) -> sql.Composable:
    return sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(_col(alias, c)) for c in cols)


def _sample(conn: psycopg.Connection[Any], query: sql.Composed) -> list[str]:
    return [", ".join("NULL" if v is None else str(v) for v in row) for row in conn.execute(query).fetchall()]


def _missing_parents(conn: psycopg.Connection[Any], staged: Staged, fk: ForeignKey) -> list[str]:
    """Keys in the backup's rows whose parent row is not in the (unrestored) referenced table now."""
    return _sample(
        conn,
        sql.SQL(
            "SELECT DISTINCT {cols} FROM {tmp} b WHERE {not_null} "
            "AND NOT EXISTS (SELECT 1 FROM {ref} r WHERE {match}) ORDER BY {cols} LIMIT {n}"
        ).format(
            cols=sql.SQL(", ").join(_col("b", c) for c in fk.columns),
            tmp=staged.temp,
            not_null=_not_null("b", fk.columns),
            ref=_from(fk.ref_table, fk.ref_kind),
            match=_match("r", fk.ref_columns, "b", fk.columns),
            n=sql.Literal(SAMPLE_KEYS),
        ),
    )


def _orphaned_children(conn: psycopg.Connection[Any], staged: Staged, fk: ForeignKey) -> list[str]:
    """Keys of rows in a table not restored that reference a row of this one the backup does not have."""
    return _sample(
        conn,
        sql.SQL(
            "SELECT DISTINCT {cols} FROM {child} c WHERE {not_null} "
            "AND EXISTS (SELECT 1 FROM ONLY {live} l WHERE {live_match}) "
            "AND NOT EXISTS (SELECT 1 FROM {tmp} b WHERE {backup_match}) ORDER BY {cols} LIMIT {n}"
        ).format(
            cols=sql.SQL(", ").join(_col("c", c) for c in fk.columns),
            child=_from(fk.table, fk.table_kind),
            not_null=_not_null("c", fk.columns),
            live=staged.relation,
            live_match=_match("l", fk.ref_columns, "c", fk.columns),
            tmp=staged.temp,
            backup_match=_match("b", fk.ref_columns, "c", fk.columns),
            n=sql.Literal(SAMPLE_KEYS),
        ),
    )


def parents_first(conn: psycopg.Connection[Any], staged: list[Staged]) -> list[Staged]:
    """Order tables so that every referenced table comes before the tables referencing it (a partition counts
    as its partitioned table: keys of partitioned tables are inherited by the partitions)."""
    family = {
        s.oid: {
            int(r[0])
            for r in conn.execute("SELECT relid::oid FROM pg_partition_ancestors(%s::oid)", [s.oid]).fetchall()
        }
        for s in staged
    }
    edges = {
        (child.oid, parent.oid)
        for child in staged
        for fk in _foreign_keys(conn, child.oid, outgoing=True)
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


def _stage(src: psycopg.Connection[Any], dst: psycopg.Connection[Any], plan: TablePlan, i: int) -> Staged:
    """The backup's rows of one table into a temporary table on the target."""
    oid = _relation(dst, plan)
    relation = sql.Identifier(plan.schema_name, plan.name)
    cols = _columns(dst, oid)
    if sorted(cols) != sorted(_columns(src, _relation(src, plan))):  # the order may differ (inheritance)
        raise DatabaseError(
            f"table {plan.qualified} has different columns in the target than in the backup "
            "(a migration ran since?): restore the whole database or migrate the copy first"
        )
    names = [c[0] for c in cols]
    key_row = dst.execute(ROW_KEY, [oid]).fetchone()
    temp = sql.Identifier(f"dbops_restore_{i}")
    # generated columns do not travel: the temporary table computes them again (keys and foreign keys use them)
    dst.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING GENERATED) ON COMMIT DROP").format(temp, relation))
    binary_row = dst.execute(BINARY_COPY_OK, [oid]).fetchone()
    form = sql.SQL("binary" if binary_row and binary_row[0] else "text")
    copy_out = sql.SQL("COPY {}{} TO STDOUT (FORMAT {})").format(relation, _column_list(names), form)
    copy_in = sql.SQL("COPY {}{} FROM STDIN (FORMAT {})").format(temp, _column_list(names), form)
    with src.cursor().copy(copy_out) as out, dst.cursor().copy(copy_in) as inp:
        for block in out:
            inp.write(block)
    dst.execute(sql.SQL("ANALYZE {}").format(temp))
    return Staged(plan, oid, relation, temp, names, list(key_row[0]) if key_row else [])


def _check_foreign_keys(conn: psycopg.Connection[Any], staged: Staged, restored: set[int]) -> None:
    """Backup rows referencing parents that are gone: fail before anything changes (the parent is not restored;
    a restored parent comes from the same snapshot, and the target's own constraint checks it)."""
    for fk in _foreign_keys(conn, staged.oid, outgoing=True):
        if fk.ref_oid in restored:
            continue
        if keys := _missing_parents(conn, staged, fk):
            raise DatabaseError(
                f"the backup's rows of {staged.plan.qualified} reference rows that are no longer in {fk.ref_table} "
                f"(constraint {fk.describe()}; keys ({', '.join(fk.columns)}): {'; '.join(keys)}): "
                f"restore {fk.ref_table} too, or put those rows back first"
            )


def _check_children(conn: psycopg.Connection[Any], staged: Staged, referencing: list[ForeignKey]) -> None:
    """Rows of tables not restored (`referencing`: their keys into this one) that reference rows the backup lacks
    would be orphaned (or, with ON DELETE CASCADE, deleted with them): fail instead. Tables being restored get the
    backup's own consistent rows."""
    for fk in referencing:
        if keys := _orphaned_children(conn, staged, fk):
            raise DatabaseError(
                f"rows of {fk.table} reference rows of {staged.plan.qualified} that the backup does not have "
                f"(constraint {fk.describe()}; keys ({', '.join(fk.columns)}): {'; '.join(keys)}): "
                f"restore {fk.table} too, or delete those rows first"
            )


def _row_text(alias: str, columns: list[str]) -> sql.Composable:
    """A row's columns as text: rows compare whatever their types (not every type has an equality operator)."""
    return sql.SQL("ROW({})::text").format(sql.SQL(", ").join(_col(alias, c) for c in columns))


def _numbered(source: sql.Composable, alias: str, columns: list[str]) -> sql.Composed:
    """A keyless table's rows as (row id, text, n): the n-th copy of each distinct row, so that rows compare
    as a multiset and a row the backup has twice is kept twice."""
    text = _row_text(alias, columns)
    return sql.SQL(
        "SELECT {a}.ctid AS dbops_row_id, {a}.*, {t} AS dbops_row_text, "
        "row_number() OVER (PARTITION BY {t}) AS dbops_n FROM {src} AS {a}"
    ).format(a=sql.Identifier(alias), t=text, src=source)


def _execute_if_any(conn: psycopg.Connection[Any], rows: sql.Composable, statement: sql.Composed) -> None:
    """Run a DELETE or UPDATE only when it has rows to change: a table published without a replica identity
    refuses either statement even when it would change nothing."""
    row = conn.execute(sql.SQL("SELECT EXISTS ({})").format(rows)).fetchone()
    if row and row[0]:
        conn.execute(statement)


def _delete_missing(conn: psycopg.Connection[Any], s: Staged) -> None:
    """Live rows the backup does not have: by key, or for a table without one, as a multiset of whole rows."""
    if s.key:
        where = sql.SQL("NOT EXISTS (SELECT 1 FROM {tmp} b WHERE {on})").format(
            tmp=s.temp, on=_match("b", s.key, "live", s.key)
        )
    else:
        where = sql.SQL(
            "live.ctid = ANY(ARRAY(SELECT l.dbops_row_id FROM ({live}) l WHERE NOT EXISTS "
            "(SELECT 1 FROM ({backup}) b WHERE b.dbops_row_text = l.dbops_row_text AND b.dbops_n = l.dbops_n)))"
        ).format(
            live=_numbered(sql.SQL("ONLY {}").format(s.relation), "x", s.columns),
            backup=_numbered(s.temp, "y", s.columns),
        )
    _execute_if_any(
        conn,
        sql.SQL("SELECT 1 FROM ONLY {t} AS live WHERE {w}").format(t=s.relation, w=where),
        sql.SQL("DELETE FROM ONLY {t} AS live WHERE {w}").format(t=s.relation, w=where),
    )


def _put_back(conn: psycopg.Connection[Any], s: Staged) -> None:
    """The backup's rows: changed rows updated, missing ones inserted with their own identity values."""
    others = [c for c in s.columns if c not in s.key]
    if s.key and others:
        changed = sql.SQL("{on} AND {a} IS DISTINCT FROM {b}").format(
            on=_match("b", s.key, "live", s.key), a=_row_text("live", others), b=_row_text("b", others)
        )
        _execute_if_any(
            conn,
            sql.SQL("SELECT 1 FROM ONLY {t} AS live, {tmp} b WHERE {w}").format(t=s.relation, tmp=s.temp, w=changed),
            sql.SQL("UPDATE ONLY {t} AS live SET {set} FROM {tmp} b WHERE {w}").format(
                t=s.relation,
                set=sql.SQL(", ").join(sql.SQL("{c} = b.{c}").format(c=sql.Identifier(c)) for c in others),
                tmp=s.temp,
                w=changed,
            ),
        )
    cols = sql.SQL(", ").join(sql.Identifier("b", c) for c in s.columns)
    if s.key:
        source = sql.SQL("{tmp} b WHERE NOT EXISTS (SELECT 1 FROM ONLY {t} live WHERE {on})").format(
            tmp=s.temp, t=s.relation, on=_match("b", s.key, "live", s.key)
        )
    else:  # after the delete, the live rows are the backup's first copies of each row: add the rest
        source = sql.SQL(
            "({backup}) b WHERE NOT EXISTS "
            "(SELECT 1 FROM ({live}) l WHERE l.dbops_row_text = b.dbops_row_text AND l.dbops_n = b.dbops_n)"
        ).format(
            backup=_numbered(s.temp, "y", s.columns),
            live=_numbered(sql.SQL("ONLY {}").format(s.relation), "x", s.columns),
        )
    # a table emptied since the backup (an incident's DELETE, then autovacuum) is planned as empty, and a nested
    # loop would rescan it for every backup row as this INSERT fills it: quadratic (1.35 M rows ran for over 10
    # minutes). A hash or merge anti-join reads the live table once.
    conn.execute("SET LOCAL enable_nestloop = off")
    conn.execute(
        sql.SQL("INSERT INTO {t}{cols} OVERRIDING SYSTEM VALUE SELECT {sel} FROM {source}").format(
            t=s.relation, cols=_column_list(s.columns), sel=cols if s.columns else sql.SQL(""), source=source
        )
    )
    conn.execute("SET LOCAL enable_nestloop TO DEFAULT")


def _column_list(columns: list[str]) -> sql.Composable:
    """` (a, b)` after a table's name; nothing for a table without columns (it still has rows)."""
    if not columns:
        return sql.SQL("")
    return sql.SQL(" ({})").format(sql.SQL(", ").join(map(sql.Identifier, columns)))


def _quiet(conn: psycopg.Connection[Any], s: Staged) -> list[sql.Composed]:
    """Disable the table's own triggers and rules for the swap, as pg_restore loads data before creating them:
    a BEFORE trigger or a DO INSTEAD rule would otherwise change or cancel the backup's rows (and an audit
    trigger log the restore's own writes). Returns the statements that put each back as it was; a rollback
    does so by itself."""
    again = []
    for kind, name, state in conn.execute(TRIGGERS_AND_RULES, {"table": s.oid}).fetchall():
        alter = sql.SQL("ALTER TABLE ONLY {} {} {} {}")
        conn.execute(alter.format(s.relation, sql.SQL("DISABLE"), sql.SQL(kind), sql.Identifier(name)))
        again.append(alter.format(s.relation, sql.SQL(ENABLE[state]), sql.SQL(kind), sql.Identifier(name)))
    return again


def _advance_sequences(conn: psycopg.Connection[Any], oid: int) -> None:
    """Sequences owned by the table's columns (a partition's: its partitioned table's) never go backwards
    below the restored values."""
    rows = conn.execute(
        "SELECT a.attname, s.relid::regclass::text, pg_get_serial_sequence(s.relid::regclass::text, a.attname) "
        "FROM pg_partition_ancestors(%s::oid) s JOIN pg_attribute a ON a.attrelid = s.relid "
        "WHERE a.attnum > 0 AND NOT a.attisdropped",
        [oid],
    ).fetchall()
    for column, table, sequence in rows:
        if sequence:
            conn.execute(
                sql.SQL(
                    "SELECT setval({seq}, GREATEST((SELECT last_value FROM {seqid}), "
                    "(SELECT coalesce(max({c}), 1) FROM {t})))"
                ).format(seq=sql.Literal(sequence), seqid=sql.SQL(sequence), c=sql.Identifier(column), t=sql.SQL(table))
            )


def _refresh_views(conn: psycopg.Connection[Any], oids: list[int]) -> list[str]:
    """Materialized views reading the restored tables, refreshed (concurrently where a unique index allows
    it, so their readers go on); views never populated stay so."""
    refreshed = []
    for name, populated, unique in conn.execute(VIEWS_READING, [oids]).fetchall():
        if populated:
            how = sql.SQL("CONCURRENTLY ") if unique else sql.SQL("")
            conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}{}").format(how, sql.SQL(name)))
            refreshed.append(name)
    return refreshed


def swap_tables(
    scratch: ConnectionSpec, target: ConnectionSpec, tables: list[TablePlan], lock_timeout_s: int = 30
) -> SwapResult:
    """Make the target's `tables` hold exactly the scratch copy's rows; returns rows per table afterwards."""
    names = ", ".join(t.qualified for t in tables)
    with (
        connect(scratch, statement_timeout_ms=0) as src,
        connect(target, autocommit=False, statement_timeout_ms=0) as dst,
    ):
        try:
            for conn in (src, dst):  # every row moves; a role that row-level security would filter fails
                conn.execute("SET row_security = off")
            dst.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{lock_timeout_s}s")))
            restored = {_relation(dst, t) for t in tables}
            movable = [t for t in tables if t.holds_rows]
            for t in movable:
                relation = sql.Identifier(t.schema_name, t.name)
                dst.execute(sql.SQL("LOCK TABLE ONLY {} IN EXCLUSIVE MODE").format(relation))
            staged = parents_first(dst, [_stage(src, dst, t, i) for i, t in enumerate(movable)])
            # keys of tables not restored into the restored ones; those tables' writers wait until the swap commits
            referencing = {
                s.oid: [fk for fk in _foreign_keys(dst, s.oid, outgoing=False) if fk.table_oid not in restored]
                for s in staged
            }
            for fk in (fk for fks in referencing.values() for fk in fks):
                dst.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(sql.SQL(fk.table)))
            for s in staged:
                _check_foreign_keys(dst, s, restored)
            enable_again = [statement for s in staged for statement in _quiet(dst, s)]
            for s in reversed(staged):  # children first: rows the backup does not have
                _check_children(dst, s, referencing[s.oid])
                _delete_missing(dst, s)
            for s in staged:  # parents first: the backup's rows, inserted or put back as they were
                _put_back(dst, s)
                _advance_sequences(dst, s.oid)
            for statement in enable_again:
                dst.execute(statement)
            refreshed = _refresh_views(dst, sorted(restored))
            counts = {}
            for s in staged:
                row = dst.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(s.relation)).fetchone()
                counts[s.plan.qualified] = int(row[0]) if row else 0
            dst.commit()
            return SwapResult(counts, refreshed)
        except psycopg.Error as exc:
            dst.rollback()
            detail = exc.diag.message_detail if isinstance(exc, psycopg.errors.IntegrityError) else None
            raise DatabaseError(
                f"swap of {names} into {target.dbname} rolled back: {describe_error(exc)}"
                + (f" ({detail})" if detail else "")
            ) from None
        except DatabaseError as exc:
            dst.rollback()
            raise DatabaseError(f"swap of {names} into {target.dbname} rolled back: {exc}") from None
        except BaseException:
            dst.rollback()
            raise
