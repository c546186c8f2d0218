"""SQL shared by the probes that measure relations.

Size functions open the relation with an AccessShareLock, which waits behind an AccessExclusiveLock that is
held or queued (an ALTER TABLE, a VACUUM FULL, a REINDEX). A health check must never join that queue, so
relations with such a lock on them, their indexes or their TOAST table are skipped and named instead.
"""

from __future__ import annotations

from psycopg import sql

LOCKED = sql.SQL("""
    locked AS (
        SELECT DISTINCT relation FROM pg_locks
        WHERE locktype = 'relation' AND mode = 'AccessExclusiveLock'
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    )
""")

# the user tables the backup's manifest also lists: tables and materialized views, no extension members
USER_TABLES = sql.SQL("""
    user_tables AS (
        SELECT c.oid, n.nspname, c.relname, c.reloptions,
               EXISTS (SELECT 1 FROM locked l
                       WHERE l.relation = c.oid OR l.relation = c.reltoastrelid
                          OR l.relation IN (SELECT i.indexrelid FROM pg_index i WHERE i.indrelid = c.oid)) AS is_locked
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'm')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d
                          WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
    )
""")
