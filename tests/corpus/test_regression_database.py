"""The regression corpus holds what it claims: many tables of many kinds, and pg_dump 18 dumps it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dbops.postgres.connection import ConnectionSpec, connect
from dbops.postgres.tools import find_tool

pytestmark = pytest.mark.corpus

USER_RELS = (
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'"
)

# name -> (query counting such objects, the least count expected)
FEATURES: dict[str, tuple[str, int]] = {
    "user tables": (f"SELECT count(*) {USER_RELS} AND c.relkind IN ('r', 'p')", 300),
    "partitioned tables": (f"SELECT count(*) {USER_RELS} AND c.relkind = 'p'", 10),
    "inheritance children": (
        "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE c.relkind = 'r' AND NOT c.relispartition",
        10,
    ),
    "schemas holding tables": (f"SELECT count(DISTINCT n.nspname) {USER_RELS} AND c.relkind IN ('r', 'p')", 2),
    "tables whose names need quoting": (
        f"SELECT count(*) {USER_RELS} AND c.relkind IN ('r', 'p') AND quote_ident(c.relname) <> c.relname",
        1,
    ),
    "foreign keys": ("SELECT count(*) FROM pg_constraint WHERE contype = 'f'", 10),
    "tables with row level security": (f"SELECT count(*) {USER_RELS} AND c.relrowsecurity", 1),
    "materialized views": (f"SELECT count(*) {USER_RELS} AND c.relkind = 'm'", 1),
    "rules": ("SELECT count(*) FROM pg_rewrite WHERE rulename <> '_RETURN'", 1),
    "triggers": ("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal", 1),
    "domains, enums, composites, ranges": (
        "SELECT count(DISTINCT t.typtype) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
        "LEFT JOIN pg_class c ON c.oid = t.typrelid "
        "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' "
        "AND (t.typtype IN ('d', 'e', 'r') OR c.relkind = 'c')",
        4,
    ),
    "large objects": ("SELECT count(*) FROM pg_largeobject_metadata", 1),
}


@pytest.mark.parametrize("feature", list(FEATURES))
def test_regression_database_holds(regression_db: ConnectionSpec, feature: str) -> None:
    query, least = FEATURES[feature]
    with connect(regression_db) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None and row[0] >= least, f"{feature}: {row} < {least}"


def test_pg_dump_dumps_it(regression_db: ConnectionSpec, tmp_path: Path) -> None:
    archive = tmp_path / "regression.dump"
    dump = subprocess.run(
        [str(find_tool("pg_dump")), "-Fc", "-f", str(archive)],
        env=regression_db.libpq_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert dump.returncode == 0, dump.stderr[-2000:]
    assert archive.stat().st_size > 1_000_000
