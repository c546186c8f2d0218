"""The row statements of a selective swap: rows the backup does not have deleted (children first), the backup's
rows updated or inserted by key (parents first), a keyless table compared as a multiset of whole rows; the
target's own triggers and rules quiet meanwhile, owned sequences advanced, materialized views refreshed.

Each change is also countable without being made (`count_changes`): the swap counts them before it takes its
locks, to estimate how long it will hold them."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from dbops.restore.selective_swap.catalog import (
    ENABLE,
    TRIGGERS_AND_RULES,
    VIEWS_READING,
    Staged,
    col,
    column_list,
    match,
)


def _row_text(alias: str, columns: list[str]) -> sql.Composable:
    """A row's columns as text: rows compare whatever their types (not every type has an equality operator)."""
    return sql.SQL("ROW({})::text").format(sql.SQL(", ").join(col(alias, c) for c in columns))


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


def _missing_where(s: Staged) -> sql.Composable:
    """Live rows (alias `live`) the backup does not have: by key, or for a table without one, as a multiset."""
    if s.key:
        return sql.SQL("NOT EXISTS (SELECT 1 FROM {tmp} b WHERE {on})").format(
            tmp=s.temp, on=match("b", s.key, "live", s.key)
        )
    return sql.SQL(
        "live.ctid = ANY(ARRAY(SELECT l.dbops_row_id FROM ({live}) l WHERE NOT EXISTS "
        "(SELECT 1 FROM ({backup}) b WHERE b.dbops_row_text = l.dbops_row_text AND b.dbops_n = l.dbops_n)))"
    ).format(
        live=_numbered(sql.SQL("ONLY {}").format(s.relation), "x", s.columns),
        backup=_numbered(s.temp, "y", s.columns),
    )


def _missing_rows(s: Staged) -> sql.Composed:
    return sql.SQL("SELECT 1 FROM ONLY {t} AS live WHERE {w}").format(t=s.relation, w=_missing_where(s))


def _changed_where(s: Staged) -> sql.Composable | None:
    """Backup rows (alias `b`) whose live row (alias `live`, same key) differs; None: nothing to update."""
    others = [c for c in s.columns if c not in s.key]
    if not (s.key and others):
        return None
    return sql.SQL("{on} AND {a} IS DISTINCT FROM {b}").format(
        on=match("b", s.key, "live", s.key), a=_row_text("live", others), b=_row_text("b", others)
    )


def _changed_rows(s: Staged, where: sql.Composable) -> sql.Composed:
    return sql.SQL("SELECT 1 FROM ONLY {t} AS live, {tmp} b WHERE {w}").format(t=s.relation, tmp=s.temp, w=where)


def _new_rows_source(s: Staged) -> sql.Composed:
    """`... FROM` this: the backup's rows the live table lacks."""
    if s.key:
        return sql.SQL("{tmp} b WHERE NOT EXISTS (SELECT 1 FROM ONLY {t} live WHERE {on})").format(
            tmp=s.temp, t=s.relation, on=match("b", s.key, "live", s.key)
        )
    # after the delete, the live rows are the backup's first copies of each row: add the rest
    return sql.SQL(
        "({backup}) b WHERE NOT EXISTS "
        "(SELECT 1 FROM ({live}) l WHERE l.dbops_row_text = b.dbops_row_text AND l.dbops_n = b.dbops_n)"
    ).format(
        backup=_numbered(s.temp, "y", s.columns),
        live=_numbered(sql.SQL("ONLY {}").format(s.relation), "x", s.columns),
    )


def count_changes(conn: psycopg.Connection[Any], s: Staged) -> int:
    """Rows the swap would delete, update and insert in this table if the live rows stayed as they are now."""
    queries = [_missing_rows(s), sql.SQL("SELECT 1 FROM {}").format(_new_rows_source(s))]
    if (where := _changed_where(s)) is not None:
        queries.append(_changed_rows(s, where))
    total = 0
    conn.execute("SET LOCAL enable_nestloop = off")
    for query in queries:
        row = conn.execute(sql.SQL("SELECT count(*) FROM ({}) changes").format(query)).fetchone()
        total += int(row[0]) if row else 0
    conn.execute("SET LOCAL enable_nestloop TO DEFAULT")
    return total


def delete_missing(conn: psycopg.Connection[Any], s: Staged) -> None:
    """Live rows the backup does not have: by key, or for a table without one, as a multiset of whole rows."""
    where = _missing_where(s)
    _execute_if_any(
        conn, _missing_rows(s), sql.SQL("DELETE FROM ONLY {t} AS live WHERE {w}").format(t=s.relation, w=where)
    )


def put_back(conn: psycopg.Connection[Any], s: Staged) -> None:
    """The backup's rows: changed rows updated, missing ones inserted with their own identity values."""
    if (changed := _changed_where(s)) is not None:
        others = [c for c in s.columns if c not in s.key]
        _execute_if_any(
            conn,
            _changed_rows(s, changed),
            sql.SQL("UPDATE ONLY {t} AS live SET {set} FROM {tmp} b WHERE {w}").format(
                t=s.relation,
                set=sql.SQL(", ").join(sql.SQL("{c} = b.{c}").format(c=sql.Identifier(c)) for c in others),
                tmp=s.temp,
                w=changed,
            ),
        )
    cols = sql.SQL(", ").join(sql.Identifier("b", c) for c in s.columns)
    # a table emptied since the backup (an incident's DELETE, then autovacuum) is planned as empty, and a nested
    # loop would rescan it for every backup row as this INSERT fills it: quadratic (1.35 M rows ran for over 10
    # minutes). A hash or merge anti-join reads the live table once.
    conn.execute("SET LOCAL enable_nestloop = off")
    conn.execute(
        sql.SQL("INSERT INTO {t}{cols} OVERRIDING SYSTEM VALUE SELECT {sel} FROM {source}").format(
            t=s.relation,
            cols=column_list(s.columns),
            sel=cols if s.columns else sql.SQL(""),
            source=_new_rows_source(s),
        )
    )
    conn.execute("SET LOCAL enable_nestloop TO DEFAULT")


def quiet(conn: psycopg.Connection[Any], s: Staged) -> list[sql.Composed]:
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


def advance_sequences(conn: psycopg.Connection[Any], oid: int) -> None:
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


def refresh_views(conn: psycopg.Connection[Any], oids: list[int]) -> list[str]:
    """Materialized views reading the restored tables, refreshed (concurrently where a unique index allows
    it, so their readers go on); views never populated stay so."""
    refreshed = []
    for name, populated, unique in conn.execute(VIEWS_READING, [oids]).fetchall():
        if populated:
            how = sql.SQL("CONCURRENTLY ") if unique else sql.SQL("")
            conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}{}").format(how, sql.SQL(name)))
            refreshed.append(name)
    return refreshed
