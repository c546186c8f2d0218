"""vacuum: VACUUM (ANALYZE, SKIP_LOCKED) only on tables past the dead-tuple thresholds (nightly)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from dbops.config.maintenance import MaintenanceConfig
from dbops.errors import LockUnavailable
from dbops.maintenance import objects
from dbops.maintenance.base import Planned, RunContext, Statement, StatementJob
from dbops.maintenance.models import ObjectKind, PlannedObject

SKIP_LOCKED_SINCE = 120000
LOCK_NOT_AVAILABLE = "55P03"

VACUUM_SKIP_LOCKED = sql.SQL("VACUUM (ANALYZE, SKIP_LOCKED)")
VACUUM = sql.SQL("VACUUM (ANALYZE)")  # before 12: a locked table waits at most lock_timeout


class VacuumJob(StatementJob):
    def command(self, kind: ObjectKind, version: int) -> sql.SQL:
        return VACUUM_SKIP_LOCKED if version >= SKIP_LOCKED_SINCE else VACUUM

    def plan(self, conn: psycopg.Connection[Any], config: MaintenanceConfig, version: int) -> Planned:
        tables = objects.list_tables(conn, config.schemas)
        found = []
        for t in tables:
            if t.dead < config.vacuum_min_dead_tuples:
                continue
            passed = []
            if t.dead_ratio >= config.vacuum_dead_ratio:
                passed.append(f"ratio ≥ {config.vacuum_dead_ratio:.0%}")
            if t.dead >= config.vacuum_dead_tuples:
                passed.append(f"count ≥ {config.vacuum_dead_tuples}")
            if passed:
                reason = f"{t.dead} dead tuples, {t.dead_ratio:.1%} of {t.live + t.dead} ({', '.join(passed)})"
                found.append(self.planned_table(version, t, reason))
        notes = [
            f"{len(found)} of {len(tables)} tables past the thresholds (at least {config.vacuum_min_dead_tuples} "
            f"dead tuples and a dead ratio ≥ {config.vacuum_dead_ratio:.0%} or ≥ {config.vacuum_dead_tuples} "
            "dead tuples)"
        ]
        if version < SKIP_LOCKED_SINCE:
            notes.append("server before 12: no SKIP_LOCKED, a locked table waits at most lock_timeout")
        return found, notes

    def execute(self, ctx: RunContext, obj: PlannedObject, statement: Statement, lock_s: float) -> None:
        session = ctx.session
        session.set_timeouts(lock_s, ctx.config.statement_timeout_s)
        session.take_notices()
        session.conn.execute(statement.composed)
        if any(sqlstate == LOCK_NOT_AVAILABLE for sqlstate, _ in session.take_notices()):
            raise LockUnavailable("another session holds a lock on the table (VACUUM SKIP_LOCKED passed it)")
