"""Foreign keys checked both ways before any row changes, so a selective swap never breaks one and never cascades
into a table that was not chosen: backup rows whose parent was deleted since, and rows of other tables that
reference rows the backup does not have, fail the swap with the constraint and a sample of the keys. Run once
before the swap takes its locks (a refusal then holds no lock) and again under them (the rows may have changed)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from dbops.errors import DatabaseError
from dbops.restore.selective_swap.catalog import ForeignKey, Staged, col, from_, match, not_null

SAMPLE_KEYS = 5


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
            cols=sql.SQL(", ").join(col("b", c) for c in fk.columns),
            tmp=staged.temp,
            not_null=not_null("b", fk.columns),
            ref=from_(fk.ref_table, fk.ref_kind),
            match=match("r", fk.ref_columns, "b", fk.columns),
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
            cols=sql.SQL(", ").join(col("c", c) for c in fk.columns),
            child=from_(fk.table, fk.table_kind),
            not_null=not_null("c", fk.columns),
            live=staged.relation,
            live_match=match("l", fk.ref_columns, "c", fk.columns),
            tmp=staged.temp,
            backup_match=match("b", fk.ref_columns, "c", fk.columns),
            n=sql.Literal(SAMPLE_KEYS),
        ),
    )


def check_parents(conn: psycopg.Connection[Any], staged: Staged, referenced: list[ForeignKey]) -> None:
    """Backup rows referencing parents that are gone: fail before anything changes (`referenced`: the table's keys
    into tables not restored; a restored parent comes from the same snapshot, and the target's own constraint
    checks it)."""
    for fk in referenced:
        if keys := _missing_parents(conn, staged, fk):
            raise DatabaseError(
                f"the backup's rows of {staged.plan.qualified} reference rows that are no longer in {fk.ref_table} "
                f"(constraint {fk.describe()}; keys ({', '.join(fk.columns)}): {'; '.join(keys)}): "
                f"restore {fk.ref_table} too, or put those rows back first"
            )


def check_children(conn: psycopg.Connection[Any], staged: Staged, referencing: list[ForeignKey]) -> None:
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
