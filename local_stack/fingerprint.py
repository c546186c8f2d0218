"""What a database holds, table by table: row count and an md5 over the rows in a stable order.

The demo and the tests compare these before and after a restore to show nothing was lost or changed.
"""

from __future__ import annotations

from psycopg import sql

from dbops.postgres.connection import ConnectionSpec, connect


def table_fingerprints(spec: ConnectionSpec) -> dict[str, tuple[int, str]]:
    """{schema.table: (rows, md5 of the rows ordered by their text)} for every user table."""
    result: dict[str, tuple[int, str]] = {}
    with connect(spec, statement_timeout_ms=0) as conn:
        tables = conn.execute("SELECT schemaname, relname FROM pg_stat_user_tables ORDER BY 1, 2").fetchall()
        for schema, name in tables:
            row = conn.execute(
                sql.SQL(
                    "SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') FROM {} t"
                ).format(sql.Identifier(schema, name))
            ).fetchone()
            assert row is not None
            result[f"{schema}.{name}"] = (int(row[0]), str(row[1]))
    return result
