"""Catalog SQL that backup and restore share: a table's shape, which schemas and relations are the user's, and a
table's own rows."""

from __future__ import annotations

from psycopg import sql

# a table's shape as the manifest records it and a restore checks it: its indexes and its constraints
# (primary key, unique, check, exclusion), for the pg_class row `c`
TABLE_SHAPE = sql.SQL("""
    (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid),
    (SELECT count(*) FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype IN ('p', 'u', 'c', 'x'))
""")

# the namespace `n` is a user's (not the catalogs, TOAST or temporary tables); the pg_class row `c` is an
# extension's own (pg_dump dumps it with the extension)
SYSTEM_SCHEMA = sql.SQL(
    "n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'"
)
EXTENSION_MEMBER = sql.SQL("EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')")


def count_rows(schema: str, name: str, relkind: str) -> sql.Composed:
    """A table's own rows (FROM ONLY: an inheritance parent without its children); a partitioned table holds
    none of its own, so it is never counted."""
    only = sql.SQL("ONLY ") if relkind == "r" else sql.SQL("")
    return sql.SQL("SELECT count(*) FROM {}{}").format(only, sql.Identifier(schema, name))
