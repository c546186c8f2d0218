"""Whole-database operations on the server: create, drop, rename, fence off connections.

They run from the maintenance database (`postgres`), never inside a transaction block.
"""

from __future__ import annotations

import time

from psycopg import sql

from dbops.errors import DatabaseError
from dbops.postgres.connection import ConnectionSpec, connect

MAX_NAME = 63
PRE_RESTORE = "pre_restore"  # work_name's purpose for the copy a full restore keeps of the database it replaced


def admin_spec(spec: ConnectionSpec) -> ConnectionSpec:
    return spec.for_database("postgres")


def work_name(target: str, restore_id: str, purpose: str) -> str:
    suffix = f"__{purpose}_{restore_id}"
    return target[: MAX_NAME - len(suffix)] + suffix


def existing(spec: ConnectionSpec, *names: str) -> set[str]:
    """Which of `names` exist on the server, in one query."""
    with connect(admin_spec(spec)) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", [list(names)]).fetchall()
    return {str(r[0]) for r in rows}


def named_for(spec: ConnectionSpec, purpose: str) -> dict[str, str]:
    """The databases on the server named as `work_name` names them for `purpose`: name -> the restore id in it."""
    marker = f"__{purpose}_"
    pattern = "%" + marker.replace("_", "\\_") + "%"
    with connect(admin_spec(spec)) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [pattern]).fetchall()
    return {str(r[0]): str(r[0]).rsplit(marker, 1)[1] for r in rows}


def exists(spec: ConnectionSpec, name: str) -> bool:
    return name in existing(spec, name)


def create(spec: ConnectionSpec, name: str) -> None:
    with connect(admin_spec(spec)) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))


def drop(spec: ConnectionSpec, name: str) -> None:
    with connect(admin_spec(spec)) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def allow_connections(spec: ConnectionSpec, name: str, allow: bool) -> None:
    with connect(admin_spec(spec)) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                sql.Identifier(name), sql.SQL("true" if allow else "false")
            )
        )


def end_connections(spec: ConnectionSpec, name: str, wait_s: float = 30) -> None:
    """Terminate every other session on `name` and wait until they are gone."""
    with connect(admin_spec(spec)) as conn:
        deadline = time.monotonic() + wait_s
        while True:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )
            left = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [name]).fetchone()
            if not left or left[0] == 0:
                return
            if time.monotonic() > deadline:
                raise DatabaseError(f"sessions on {name} did not end within {wait_s:.0f}s")
            time.sleep(0.1)


def rename(spec: ConnectionSpec, old: str, new: str) -> None:
    with connect(admin_spec(spec)) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new)))
