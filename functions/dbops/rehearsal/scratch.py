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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from dbops.postgres.connection import ConnectionSpec, connect, server_version_num
from dbops.rehearsal import access
from dbops.restore import databases

PURPOSE = "rehearse"
KEEPER_APP = "dbops rehearsal keeper"
MARKER_KEY = "dbops_rehearsal"
_STAMP = "%Y%m%d%H%M%S"
NAME_PATTERN = r"__rehearse_(\d{14})_[0-9a-f]{4}$"
# a deployed rehearsal's execution is surely over after the restore state machine's time limit (4 h)
EXECUTION_TIME_LIMIT = timedelta(hours=4, minutes=15)
# a scratch database younger than this is never dropped by a sweep: its keeper may not have connected yet
STALE_AFTER = timedelta(minutes=1)
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


def create(spec: ConnectionSpec, database: str, **marker: Any) -> tuple[str, str, datetime]:
    """A new, empty scratch database on `spec`'s server, marked; returns (rehearsal id, name, created at)."""
    created_at = _server_now(spec)
    rehearsal_id = new_id(created_at)
    name = databases.work_name(database, rehearsal_id, PURPOSE)
    databases.create(spec, name)
    info = {
        MARKER_KEY: rehearsal_id,
        "created_at": created_at.isoformat(),
        "source_database": database,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        **marker,
    }
    with connect(databases.admin_spec(spec)) as conn:
        _mark(conn, name, info)
    return rehearsal_id, name, created_at


def drop(spec: ConnectionSpec, name: str) -> None:
    """Drop a scratch database (its sessions ended) and the temporary role a deployed rehearsal made for it."""
    databases.drop(spec, name)
    rehearsal_id = name.rsplit("__rehearse_", 1)[-1]
    access.drop_role(spec, access.role_name(rehearsal_id))


@contextmanager
def scratch_database(spec: ConnectionSpec, database: str, **marker: Any) -> Iterator[Scratch]:
    """Create a scratch database on `spec`'s server with its keeper session, yield it, and drop it whatever
    happens (the keeper is closed first; any session the command left is ended by the drop)."""
    rehearsal_id, name, created_at = create(spec, database, **marker)
    try:
        target = spec.for_database(name)
        with connect(target) as keeper:
            keeper.execute(sql.SQL("SET application_name = {}").format(sql.Literal(KEEPER_APP)))
            if server_version_num(keeper) >= 140000:  # an idle keeper must outlive any idle_session_timeout
                keeper.execute("SET idle_session_timeout = 0")
            keeper.execute("SET statement_timeout = 0")
            yield Scratch(rehearsal_id, name, target, keeper.info.backend_pid, created_at)
    finally:
        drop(spec, name)


LIST_SCRATCH = """
    SELECT d.datname,
           EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname AND a.application_name = %s),
           now(),
           shobj_description(d.oid, 'pg_database')
    FROM pg_database d
    WHERE d.datname ~ %s
    ORDER BY 1
"""
ExecutionRunning = Callable[[str], "bool | None"]


@dataclass
class Listed:
    """A scratch database as the server lists it: whether its keeper session is there, the server's clock, its
    marker."""

    name: str
    keeper: bool
    now: datetime
    marker: dict[str, Any]

    @property
    def execution(self) -> str | None:
        """The state machine execution a deployed rehearsal's scratch database belongs to."""
        execution = self.marker.get("execution")
        return str(execution) if execution else None


def listed(spec: ConnectionSpec) -> list[Listed]:
    """Every scratch database on `spec`'s server."""
    with connect(databases.admin_spec(spec)) as conn:
        rows = conn.execute(LIST_SCRATCH, [KEEPER_APP, NAME_PATTERN]).fetchall()
    return [Listed(str(name), bool(keeper), now, marker_of(comment)) for name, keeper, now, comment in rows]


def marker_of(comment: str | None) -> dict[str, Any]:
    """A scratch database's marker (its COMMENT's JSON); empty when it has none."""
    try:
        marker = json.loads(comment or "")
    except ValueError:
        return {}
    return marker if isinstance(marker, dict) else {}


def _alive(scratch: Listed, age: timedelta, running: ExecutionRunning) -> bool:
    """A rehearsal lives while its keeper session does (`dbops rehearse`), or while its state machine execution
    runs (the deployed `mode: rehearse`, which has no session between its steps); an execution that cannot be
    asked about counts as running until the state machine's own time limit is past."""
    if scratch.keeper:
        return True
    if scratch.execution is None:
        return False
    state = running(scratch.execution)
    return age < EXECUTION_TIME_LIMIT if state is None else state


def drop_stale(
    spec: ConnectionSpec,
    older_than: timedelta | None = None,
    running: ExecutionRunning | None = None,
) -> list[str]:
    """Drop the scratch databases, on `spec`'s server, of rehearsals that are gone (see `_alive`) and were created
    longer than `older_than` ago (by the server's clock), with their temporary roles; then the temporary roles
    whose scratch database is gone. Returns the names dropped. `running(execution ARN)` says whether a deployed
    rehearsal's execution runs (None: cannot tell); by default Step Functions is asked."""
    running = running or execution_running
    older_than = STALE_AFTER if older_than is None else older_than
    found = listed(spec)
    dropped = []
    for scratch in found:
        created = created_at_of(scratch.name)
        if created is None or scratch.now - created < older_than or _alive(scratch, scratch.now - created, running):
            continue
        drop(spec, scratch.name)
        dropped.append(scratch.name)
    live = {s.name.rsplit("__rehearse_", 1)[-1] for s in found if s.name not in dropped}
    dropped += access.drop_orphan_roles(spec, live, older_than)
    return dropped


def of_execution(spec: ConnectionSpec, execution: str) -> list[str]:
    """The scratch databases, on `spec`'s server, whose marker names this state machine execution."""
    return [s.name for s in listed(spec) if s.execution == execution]


def execution_running(execution: str) -> bool | None:
    """Whether a Step Functions execution is still running; None when it cannot be asked (no access, no AWS)."""
    from dbops.aws import stepfunctions

    return stepfunctions.running(execution)
