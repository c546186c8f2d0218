"""A database's tables as a backup's manifest records them: each with its size, shape, identity, parents and the
catalog objects that belong to it (rows are counted by the snapshot, dbops.backup.snapshot)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from dbops.backup.catalog import TableStat
from dbops.postgres.catalog import EXTENSION_MEMBER, SYSTEM_SCHEMA, TABLE_SHAPE

# what belongs to a table, by catalog identity: the objects pg_depend ties to it (auto or internal), not other
# tables (partitions are tables of their own) and not objects that merely reference it (views, foreign keys
# of other tables: deptype 'n')
ATTACHED_CATALOGS = (
    "pg_class",  # indexes and owned sequences; tables (partitions) are filtered out below
    "pg_constraint",
    "pg_trigger",
    "pg_rewrite",
    "pg_policy",
    "pg_attrdef",
    "pg_statistic_ext",
    "pg_publication_rel",
)

LIST_TABLES = sql.SQL("""
    SELECT n.nspname, c.relname, pg_total_relation_size(c.oid), {shape}, c.oid, c.relkind::text,
        ARRAY(SELECT i.inhparent::int8 FROM pg_inherits i WHERE i.inhrelid = c.oid ORDER BY i.inhseqno),
        ARRAY(SELECT DISTINCT ARRAY[d.classid::int8, d.objid::int8] FROM pg_depend d
              WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid AND d.deptype NOT IN ('n', 'e')
                AND d.classid = ANY({catalogs}::regclass[])
                AND NOT EXISTS (SELECT 1 FROM pg_class o WHERE d.classid = 'pg_class'::regclass
                                AND o.oid = d.objid AND o.relkind NOT IN ('i', 'I', 'S')))
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'm') AND {system} AND NOT {extension_member}
    ORDER BY 1, 2
""").format(
    shape=TABLE_SHAPE,
    catalogs=sql.Literal(list(ATTACHED_CATALOGS)),
    system=SYSTEM_SCHEMA,
    extension_member=EXTENSION_MEMBER,
)


def list_tables(conn: psycopg.Connection[Any]) -> list[TableStat]:
    """The database's tables, partitioned tables and materialized views as a manifest records them (rows not
    counted)."""
    return [
        TableStat(
            schema_name=r[0],
            name=r[1],
            rows=0,
            bytes=int(r[2]),
            indexes=int(r[3]),
            constraints=int(r[4]),
            oid=int(r[5]),
            relkind=r[6],
            parents=list(r[7]),
            objects=[tuple(pair) for pair in r[8]],
        )
        for r in conn.execute(LIST_TABLES).fetchall()
    ]
