"""The Check step: each staged table's rows, indexes and constraints against the manifest, then the custom checks."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from dbops.backup.catalog import IDENTITY_FORMAT
from dbops.errors import CheckFailed
from dbops.postgres.catalog import TABLE_SHAPE, count_rows
from dbops.postgres.connection import connect, describe_error
from dbops.restore.backup_choice import chosen_manifest
from dbops.restore.connections import work_spec
from dbops.restore.models import RestoreState, TablePlan
from dbops.settings import FunctionSettings
from dbops.text import plural

SHAPE_OF_TABLE = sql.SQL(
    "SELECT {shape} FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p', 'm')"
).format(shape=TABLE_SHAPE)


def _count(conn: psycopg.Connection[Any], plan: TablePlan, format_version: int) -> int:
    """A table's rows as its manifest counted them (a partitioned table has none of its own)."""
    if format_version < IDENTITY_FORMAT:  # older manifests counted an inheritance parent with its children
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(plan.schema_name, plan.name))
    elif plan.relkind == "p":
        return 0
    else:
        query = count_rows(plan.schema_name, plan.name, plan.relkind)
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else -1


def check(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    """Every restored table's row count, indexes and constraints match the manifest."""
    backup = chosen_manifest(state, settings)
    manifest = {(t.schema_name, t.name): t for t in backup.tables}
    problems, checked = [], []
    with connect(work_spec(state, settings), statement_timeout_ms=0) as conn:
        conn.execute("SET row_security = off")  # every row counts, as in the backup's count
        for plan in state.tables:
            expected = manifest[(plan.schema_name, plan.name)]
            row = conn.execute(SHAPE_OF_TABLE, [plan.schema_name, plan.name]).fetchone()
            if row is None:
                problems.append(f"{plan.qualified} is missing")
                continue
            rows = _count(conn, plan, backup.format_version)
            if rows != expected.rows:
                problems.append(f"{plan.qualified} has {plural(rows, 'row')}, the backup {expected.rows}")
            if (int(row[0]), int(row[1])) != (expected.indexes, expected.constraints):
                problems.append(
                    f"{plan.qualified} has {plural(row[0], 'index')} and {plural(row[1], 'constraint')}, "
                    f"the backup {expected.indexes} and {expected.constraints}"
                )
            checked.append(plan.qualified)
        conn.execute("SET default_transaction_read_only = on")  # custom checks may read, never write
        for query in settings.database(state.database).restore_checks:
            try:  # operator configuration, like the SQL of a migration: trusted, but run read-only
                row = conn.execute(sql.SQL(query)).fetchone()
            except psycopg.Error as exc:
                problems.append(f"custom check {query!r} failed: {describe_error(exc)}")
                continue
            if not row or row[0] is not True:
                problems.append(f"custom check {query!r} returned {row[0] if row else 'no row'}")
            else:
                checked.append(f"check: {query}")
    if problems:
        raise CheckFailed(
            f"staged copy {state.work_db} does not match backup {state.backup_id}: " + "; ".join(problems)
        )
    return state.model_copy(update={"checked": checked})
