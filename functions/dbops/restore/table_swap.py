"""Selective swap: replace chosen tables' rows in the live target from the scratch copy, in one transaction.

Rows travel by binary COPY into temporary tables on the target; then, while writers are held off with an
EXCLUSIVE lock (readers go on), rows missing from the backup are deleted (children first) and the backup's
rows upserted by primary key (parents first). The target's own foreign keys check every row; if anything
fails, the transaction rolls back and the target is exactly as it was.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from dbops.connection import ConnectionSpec, connect, describe_error
from dbops.errors import DatabaseError

COLUMNS = """
    SELECT a.attname, format_type(a.atttypid, a.atttypmod)
    FROM pg_attribute a
    WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
    ORDER BY a.attnum
"""
PRIMARY_KEY = """
    SELECT a.attname FROM pg_index i
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
    WHERE i.indrelid = %s::regclass AND i.indisprimary
    ORDER BY array_position(i.indkey::int2[], a.attnum)
"""
REFERENCES = """
    SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint
    WHERE contype = 'f' AND conrelid = ANY(%s::regclass[]) AND confrelid = ANY(%s::regclass[])
      AND conrelid <> confrelid
"""


def _regclass(table: str) -> str:
    schema, name = table.split(".", 1)
    return sql.Identifier(schema, name).as_string(None)


def _columns(conn: psycopg.Connection[Any], table: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in conn.execute(COLUMNS, [_regclass(table)]).fetchall()]


def parents_first(conn: psycopg.Connection[Any], tables: list[str]) -> list[str]:
    """Order tables so that every referenced table comes before the tables referencing it."""
    regs = [_regclass(t) for t in tables]
    by_reg = dict(zip(conn.execute("SELECT unnest(%s::regclass[])::text", [regs]).fetchall(), tables, strict=True))
    edges = [(r[0], r[1]) for r in conn.execute(REFERENCES, [regs, regs]).fetchall()]
    names = {k[0]: v for k, v in by_reg.items()}
    ordered: list[str] = []
    pending = list(tables)
    while pending:
        ready = [
            t
            for t in pending
            if not any(names.get(child) == t and names.get(parent) in pending for child, parent in edges)
        ]
        if not ready:
            ready = pending[:1]  # a reference cycle: order does not matter within one transaction anyway
        for t in ready:
            ordered.append(t)
            pending.remove(t)
    return ordered


def swap_tables(
    scratch: ConnectionSpec, target: ConnectionSpec, tables: list[str], lock_timeout_s: int = 30
) -> dict[str, int]:
    """Make the target's `tables` hold exactly the scratch copy's rows; returns rows per table afterwards."""
    with (
        connect(scratch, statement_timeout_ms=0) as src,
        connect(target, autocommit=False, statement_timeout_ms=0) as dst,
    ):
        try:
            order = parents_first(dst, tables)
            dst.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{lock_timeout_s}s")))
            for table in order:
                dst.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.SQL(_regclass(table))))
            staged: dict[str, tuple[sql.Identifier, list[str], list[str]]] = {}
            for i, table in enumerate(order):
                cols = _columns(dst, table)
                if cols != _columns(src, table):
                    raise DatabaseError(
                        f"table {table} has different columns in the target than in the backup "
                        "(a migration ran since?): restore the whole database or migrate the copy first"
                    )
                names = [c[0] for c in cols]
                pk = [r[0] for r in dst.execute(PRIMARY_KEY, [_regclass(table)]).fetchall()]
                if not pk:
                    raise DatabaseError(f"table {table} has no primary key: rows cannot be matched for a swap")
                temp = sql.Identifier(f"dbops_restore_{i}")
                dst.execute(
                    sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                        temp, sql.SQL(", ").join(map(sql.Identifier, names)), sql.SQL(_regclass(table))
                    )
                )
                col_list = sql.SQL(", ").join(map(sql.Identifier, names))
                copy_out = sql.SQL("COPY {} ({}) TO STDOUT (FORMAT binary)").format(sql.SQL(_regclass(table)), col_list)
                copy_in = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(temp, col_list)
                with src.cursor().copy(copy_out) as out, dst.cursor().copy(copy_in) as inp:
                    for block in out:
                        inp.write(block)
                dst.execute(sql.SQL("ANALYZE {}").format(temp))
                staged[table] = (temp, names, pk)
            for table in reversed(order):  # children first: rows the backup does not have
                temp, names, pk = staged[table]
                same_key = sql.SQL(" AND ").join(sql.SQL("b.{c} = live.{c}").format(c=sql.Identifier(c)) for c in pk)
                dst.execute(
                    sql.SQL("DELETE FROM {t} live WHERE NOT EXISTS (SELECT 1 FROM {tmp} b WHERE {on})").format(
                        t=sql.SQL(_regclass(table)), tmp=temp, on=same_key
                    )
                )
            for table in order:  # parents first: the backup's rows, inserted or put back as they were
                temp, names, pk = staged[table]
                others = [c for c in names if c not in pk]
                col_list = sql.SQL(", ").join(map(sql.Identifier, names))
                action = (
                    sql.SQL("DO NOTHING")
                    if not others
                    else sql.SQL("DO UPDATE SET {} WHERE ({}) IS DISTINCT FROM ({})").format(
                        sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in others),
                        sql.SQL(", ").join(
                            sql.SQL("{t}.{c}").format(t=sql.Identifier(table.split(".", 1)[1]), c=sql.Identifier(c))
                            for c in others
                        ),
                        sql.SQL(", ").join(sql.SQL("EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in others),
                    )
                )
                dst.execute(
                    sql.SQL(
                        "INSERT INTO {t} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols} FROM {tmp} "
                        "ON CONFLICT ({k}) {action}"
                    ).format(
                        t=sql.SQL(_regclass(table)),
                        cols=col_list,
                        tmp=temp,
                        k=sql.SQL(", ").join(map(sql.Identifier, pk)),
                        action=action,
                    )
                )
                _advance_sequences(dst, table)
            counts = {}
            for table in order:
                row = dst.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(_regclass(table)))).fetchone()
                counts[table] = int(row[0]) if row else 0
            dst.commit()
            return counts
        except psycopg.Error as exc:
            dst.rollback()
            raise DatabaseError(
                f"swap of {', '.join(tables)} into {target.dbname} rolled back: {describe_error(exc)}"
            ) from None
        except BaseException:
            dst.rollback()
            raise


def _advance_sequences(conn: psycopg.Connection[Any], table: str) -> None:
    """Sequences owned by the table's columns never go backwards below the restored ids."""
    rows = conn.execute(
        "SELECT a.attname, pg_get_serial_sequence(%s, a.attname) FROM pg_attribute a "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
        [table, _regclass(table)],
    ).fetchall()
    for column, sequence in rows:
        if sequence:
            conn.execute(
                sql.SQL(
                    "SELECT setval({seq}, GREATEST((SELECT last_value FROM {seqid}), "
                    "(SELECT coalesce(max({c}), 1) FROM {t})))"
                ).format(
                    seq=sql.Literal(sequence),
                    seqid=sql.SQL(sequence),
                    c=sql.Identifier(column),
                    t=sql.SQL(_regclass(table)),
                )
            )
