"""PostgreSQL access: sessions, client tools (pg_dump, pg_restore), roles, and catalog queries the rooms share."""
