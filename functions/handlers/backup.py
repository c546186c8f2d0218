"""Backup function: one database per invoke from the backup state machine (infra/backup_workflow.py), or a
direct invoke naming kind and database.

{"kind": ..., "database": ..., "plan": true} backs nothing up: it answers where that database's backup runs,
{"database", "kind", "runner", "reason"} (dbops.backup.placement: its configured runner, else its last committed
backup against this function's own timeout), for the state machine's choice between this function and the Fargate
task (handlers/backup_task.py).

{"kind": ..., "database": ...} backs up that database, emits BackupSucceeded or BackupFailed for it, and raises
when it failed (the state machine's Catch records it for that database only). Without "database" (a direct
invoke, or a scheduled event as the nightly rule sent before the state machine) every configured database is
backed up in turn within this one invocation, and it raises after all were tried if any failed.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from dbops.backup.catalog import BackupKind
from dbops.backup.placement import Runner, runner_for
from dbops.errors import BackupsFailed
from dbops.settings import FunctionSettings
from handlers.backup_outcome import BackupResult, backup_one
from handlers.events import databases_to_run, deadline_for, parse_invocation
from handlers.observability import logger, tracer


class BackupInvocation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: BackupKind = "nightly"
    database: str | None = Field(default=None, description="omit to back up every configured database")
    plan: bool = Field(default=False, description="answer where the database's backup runs, back nothing up")


class BackupResponse(BaseModel):
    results: list[BackupResult]


class BackupPlan(BaseModel):
    database: str
    kind: BackupKind
    runner: Runner
    reason: str


def parse_event(event: Any) -> BackupInvocation:
    return parse_invocation(BackupInvocation, event, "backup event")


def plan_backup(settings: FunctionSettings, name: str, kind: BackupKind, lambda_timeout_s: float) -> BackupPlan:
    """Where this database's backup runs (dbops.backup.placement), from its configuration and its last backup."""
    choice = runner_for(settings, name, lambda_timeout_s)
    logger.info("backup planned", extra={"database": name, "kind": kind, "runner": choice.runner, "why": choice.reason})
    return BackupPlan(database=name, kind=kind, runner=choice.runner, reason=choice.reason)


@logger.inject_lambda_context(correlation_id_path="id", clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = FunctionSettings()
    invocation = parse_event(event)
    if invocation.plan:
        if invocation.database is None:
            raise ValueError("a backup plan names its database")
        # a plan is an invoke of its own: the time it has left is this function's whole timeout
        timeout_s = context.get_remaining_time_in_millis() / 1000
        return plan_backup(settings, invocation.database, invocation.kind, timeout_s).model_dump(mode="json")
    databases = databases_to_run(settings.databases, invocation.database)
    deadline = deadline_for(context, settings.deadline_margin_s)
    results = [backup_one(settings, db.name, invocation.kind, deadline) for db in databases]
    failed = [r for r in results if not r.ok]
    if failed:
        raise BackupsFailed("; ".join(f"{r.database}: {r.error}" for r in failed))
    return BackupResponse(results=results).model_dump(mode="json")
