"""Scratch databases of rehearsals: made, kept alive, dropped, and swept when their rehearsal died.

A rehearsal's database is `<db>__rehearse_<UTC yyyymmddHHMMSS>_<4 hex>`: the server's clock at its creation is in
its name, so its age is known even if the rehearsal was killed between CREATE DATABASE and anything else. It is
also marked with `COMMENT ON DATABASE` holding JSON (created_at, source database, backup, host and pid of the
rehearsal) for people looking at the server.

While a rehearsal lives it holds a *keeper* session on its scratch database (application_name
`dbops rehearsal keeper`), opened right after CREATE DATABASE, before the archive is downloaded, and closed just
before the drop. That session is the proof of life: `drop_stale` drops a scratch database whose keeper is gone and
that is older than a grace period (which only has to cover the milliseconds between CREATE DATABASE and the keeper's
connection). Other sessions do not keep it: a rehearsal killed with SIGKILL leaves its migration command running in
its own process group, and those sessions end with the drop (WITH FORCE). Every rehearsal sweeps first, and a
daily function can call `drop_stale` too.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from dbops.connection import ConnectionSpec, connect, server_version_num
from dbops.restore import databases

PURPOSE = "rehearse"
KEEPER_APP = "dbops rehearsal keeper"
MARKER_KEY = "dbops_rehearsal"
_STAMP = "%Y%m%d%H%M%S"
NAME_PATTERN = r"__rehearse_(\d{14})_[0-9a-f]{4}$"
_NAME = re.compile(NAME_PATTERN)


@dataclass
class Scratch:
    """A live scratch database: its name, how to reach it, and the keeper session's pid (not the command's)."""

    rehearsal_id: str
    name: str
    spec: ConnectionSpec
    keeper_pid: int
    created_at: datetime


def _server_now(spec: ConnectionSpec) -> datetime:
    with connect(databases.admin_spec(spec)) as conn:
        row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    return row[0].astimezone(UTC)


def new_id(created_at: datetime) -> str:
    return f"{created_at.astimezone(UTC).strftime(_STAMP)}_{secrets.token_hex(2)}"


def created_at_of(name: str) -> datetime | None:
    """When the scratch database `name` was created (the server's clock, from its name), or None: not one of ours."""
    match = _NAME.search(name)
    if match is None:
        return None
    return datetime.strptime(match.group(1), _STAMP).replace(tzinfo=UTC)


def _mark(conn: psycopg.Connection[Any], name: str, marker: dict[str, Any]) -> None:
    conn.execute(
        sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(name), sql.Literal(json.dumps(marker, sort_keys=True, default=str))
        )
    )


@contextmanager
def scratch_database(spec: ConnectionSpec, database: str, **marker: Any) -> Iterator[Scratch]:
    """Create a scratch database on `spec`'s server with its keeper session, yield it, and drop it whatever
    happens (the keeper is closed first; any session the command left is ended by the drop)."""
    created_at = _server_now(spec)
    rehearsal_id = new_id(created_at)
    name = databases.work_name(database, rehearsal_id, PURPOSE)
    databases.create(spec, name)
    try:
        target = spec.for_database(name)
        with connect(target) as keeper:
            keeper.execute(sql.SQL("SET application_name = {}").format(sql.Literal(KEEPER_APP)))
            if server_version_num(keeper) >= 140000:  # an idle keeper must outlive any idle_session_timeout
                keeper.execute("SET idle_session_timeout = 0")
            keeper.execute("SET statement_timeout = 0")
            info = {
                MARKER_KEY: rehearsal_id,
                "created_at": created_at.isoformat(),
                "source_database": database,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                **marker,
            }
            _mark(keeper, name, info)
            yield Scratch(rehearsal_id, name, target, keeper.info.backend_pid, created_at)
    finally:
        databases.drop(spec, name)


LIST_SCRATCH = """
    SELECT d.datname,
           EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname AND a.application_name = %s),
           now()
    FROM pg_database d
    WHERE d.datname ~ %s
    ORDER BY 1
"""


def drop_stale(spec: ConnectionSpec, older_than: timedelta = timedelta(minutes=1)) -> list[str]:
    """Drop the scratch databases, on `spec`'s server, of rehearsals that are gone: no keeper session on it, and
    created longer than `older_than` ago (by the server's clock). Returns the names dropped."""
    with connect(databases.admin_spec(spec)) as conn:
        rows = conn.execute(LIST_SCRATCH, [KEEPER_APP, NAME_PATTERN]).fetchall()
    dropped = []
    for name, alive, now in rows:
        created = created_at_of(name)
        if alive or created is None or now - created < older_than:
            continue
        databases.drop(spec, name)
        dropped.append(str(name))
    return dropped
