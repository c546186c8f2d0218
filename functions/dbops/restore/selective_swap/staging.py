"""The backup's rows of each chosen table, copied from the scratch copy into a temporary table on the target.

The copy runs before the swap takes any lock on the target: the temporary tables live for the session (they
outlast the swap's attempts, which roll back and retry), and only the definition is read from the live table,
in a transaction of its own that commits before the rows travel."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from dbops.errors import DatabaseError
from dbops.restore.models import TablePlan
from dbops.restore.selective_swap.catalog import (
    BINARY_COPY_OK,
    ROW_KEY,
    Staged,
    column_list,
    relation_oid,
    table_columns,
)


def stage(src: psycopg.Connection[Any], dst: psycopg.Connection[Any], plan: TablePlan, i: int) -> Staged:
    """The backup's rows of one table into a temporary table on the target (`dst` is not in autocommit: the
    definition is read and the temporary table created in one transaction, the rows copied in the next)."""
    oid = relation_oid(dst, plan)
    relation = sql.Identifier(plan.schema_name, plan.name)
    cols = table_columns(dst, oid)
    if sorted(cols) != sorted(table_columns(src, relation_oid(src, plan))):  # the order may differ (inheritance)
        raise DatabaseError(
            f"table {plan.qualified} has different columns in the target than in the backup "
            "(a migration ran since?): restore the whole database or migrate the copy first"
        )
    names = [c[0] for c in cols]
    key_row = dst.execute(ROW_KEY, [oid]).fetchone()
    temp = sql.Identifier(f"dbops_restore_{i}")
    # generated columns do not travel: the temporary table computes them again (keys and foreign keys use them)
    dst.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(temp))
    dst.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING GENERATED)").format(temp, relation))
    binary_row = dst.execute(BINARY_COPY_OK, [oid]).fetchone()
    dst.commit()  # the live table's ACCESS SHARE lock goes with it: no DDL queues behind the copy
    form = sql.SQL("binary" if binary_row and binary_row[0] else "text")
    copy_out = sql.SQL("COPY {}{} TO STDOUT (FORMAT {})").format(relation, column_list(names), form)
    copy_in = sql.SQL("COPY {}{} FROM STDIN (FORMAT {})").format(temp, column_list(names), form)
    into = dst.cursor()
    with src.cursor().copy(copy_out) as out, into.copy(copy_in) as inp:
        for block in out:
            inp.write(block)
    dst.execute(sql.SQL("ANALYZE {}").format(temp))
    dst.commit()
    return Staged(plan, oid, relation, temp, names, list(key_row[0]) if key_row else [], into.rowcount)
