"""A maintenance task as one object: it plans its objects and builds the statement each of them runs."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from dbops.config.maintenance import MaintenanceConfig
from dbops.maintenance.models import ObjectKind, ObjectResult, Plan, PlannedObject, Progress, Status
from dbops.maintenance.objects import TableStats
from dbops.maintenance.rules import CheckedRule
from dbops.maintenance.runner import Deadline, Session, attempt

Planned = tuple[list[PlannedObject], list[str]]
"""The objects a task will work on, and notes on how they were chosen."""


def object_name(obj: PlannedObject) -> str:
    """How plans, summaries and progress name an object: a rule by its name, anything else schema.name."""
    return obj.rule.name if obj.rule is not None else obj.display


def result_of(obj: PlannedObject, status: Status, **fields: Any) -> ObjectResult:
    """The result of running (or not running) a planned object."""
    return ObjectResult(kind=obj.kind, name=object_name(obj), action=obj.action, status=status, **fields)


@dataclass
class RunContext:
    """What every object of one execution shares: the session, the configuration, progress and the time limit."""

    session: Session
    config: MaintenanceConfig
    progress: Progress
    deadline: Deadline
    checked: dict[str, CheckedRule] = field(default_factory=dict)  # rule tasks: the rules checked by prepare


class MaintenanceJob(ABC):
    """Plans a task's objects (`plan`) and runs each planned object (`run`)."""

    @abstractmethod
    def plan(self, conn: psycopg.Connection[Any], config: MaintenanceConfig, version: int) -> Planned:
        """The objects to work on now and why, on a server of `version` (server_version_num)."""

    def prepare(self, ctx: RunContext, plan: Plan) -> None:
        """Before the first object runs: raise (a DbopsError) to run none of them. Nothing by default."""
        return None

    @abstractmethod
    def run(self, ctx: RunContext, plan: Plan, obj: PlannedObject) -> ObjectResult:
        """Run one planned object; lock waits are retried, the outcome is recorded in the result."""


@dataclass(frozen=True)
class Statement:
    """One maintenance statement: a command applied to one object. The command's text is the plan's action."""

    command: sql.SQL
    target: sql.Identifier

    @property
    def composed(self) -> sql.Composed:
        return sql.SQL("{} {}").format(self.command, self.target)

    @property
    def action(self) -> str:
        return self.command.as_string()


class StatementJob(MaintenanceJob):
    """A task that runs one statement per object (ANALYZE, VACUUM, REINDEX): the statement shown is the one run."""

    @abstractmethod
    def command(self, kind: ObjectKind, version: int) -> sql.SQL:
        """What runs on an object of `kind` on a server of `version`."""

    def statement(self, kind: ObjectKind, schema_name: str, name: str, version: int) -> Statement:
        return Statement(self.command(kind, version), sql.Identifier(schema_name, name))

    def planned(
        self, version: int, *, kind: ObjectKind, schema_name: str, name: str, reason: str, **extra: Any
    ) -> PlannedObject:
        """A planned object whose action is the text of the statement `run` executes on it."""
        action = self.statement(kind, schema_name, name, version).action
        return PlannedObject(kind=kind, schema_name=schema_name, name=name, action=action, reason=reason, **extra)

    def planned_table(self, version: int, stats: TableStats, reason: str) -> PlannedObject:
        return self.planned(version, kind="table", schema_name=stats.table.schema, name=stats.table.name, reason=reason)

    def lock_timeout_s(self, config: MaintenanceConfig) -> float:
        return config.lock_timeout_s

    def execute(self, ctx: RunContext, obj: PlannedObject, statement: Statement, lock_s: float) -> None:
        """One attempt at the statement, with its own lock and statement timeouts."""
        ctx.session.set_timeouts(lock_s, ctx.config.statement_timeout_s)
        ctx.session.conn.execute(statement.composed)

    def run(self, ctx: RunContext, plan: Plan, obj: PlannedObject) -> ObjectResult:
        statement = self.statement(obj.kind, obj.schema_name, obj.name, plan.server_version)
        lock_s = self.lock_timeout_s(ctx.config)
        t0 = time.monotonic()
        outcome = attempt(
            lambda: self.execute(ctx, obj, statement, lock_s),
            what=obj.display,
            config=ctx.config,
            progress=ctx.progress,
            deadline=ctx.deadline,
            lock_timeout_s=lock_s,
        )
        seconds = round(time.monotonic() - t0, 3)
        return result_of(obj, outcome.status, attempts=outcome.attempts, seconds=seconds, detail=outcome.detail)
