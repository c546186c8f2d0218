"""Maintenance function: an EventBridge schedule per task (detail {"task": ...}) or a direct invoke
{"task": ..., "database": ..., "dry_run": ...}. Metrics per database and task: MaintenanceFailed, RowsDeleted,
RowsArchived, DurationSeconds. Failures are recorded in the summary and the MaintenanceFailed metric (the
alarm's source); the invocation itself succeeds so an async retry does not repeat the whole task."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from dbops import contract
from dbops.errors import DbopsError
from dbops.maintenance import MaintenanceSummary, ProgressEvent, Task, run_task
from dbops.maintenance.models import Progress
from dbops.postgres.connection import database_spec
from dbops.settings import MaintenanceSettings
from handlers.events import databases_to_run, deadline_for, parse_invocation
from handlers.observability import emit, logger, tracer


class MaintenanceInvocation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: Task
    database: str | None = Field(default=None, description="omit to maintain every configured database")
    dry_run: bool = False


class MaintenanceResponse(BaseModel):
    summaries: list[MaintenanceSummary]


def parse_event(event: Any) -> MaintenanceInvocation:
    return parse_invocation(MaintenanceInvocation, event, "maintenance event")


def _log_progress(database: str, task: Task) -> Progress:
    def log(event: ProgressEvent) -> None:
        logger.info(
            f"maintenance {event.event}: {event.message}",
            extra={"database": database, "task": task, "object": event.object, "rows": event.rows},
        )

    return log


def _maintain_one(
    settings: MaintenanceSettings, name: str, invocation: MaintenanceInvocation, deadline: float
) -> MaintenanceSummary:
    started, t0 = datetime.now(UTC), time.monotonic()
    task = invocation.task
    try:
        summary = run_task(
            database_spec(settings.database(name)),
            task,
            settings.config_for(name),
            database=name,
            dry_run=invocation.dry_run,
            progress=_log_progress(name, task),
            deadline=deadline,
        )
    except DbopsError as exc:  # a refused rule or an unreachable database: nothing ran
        logger.error("maintenance could not run", extra={"database": name, "task": task, "error": str(exc)})
        summary = MaintenanceSummary(
            task=task,
            database=name,
            dry_run=invocation.dry_run,
            started_at=started,
            duration_seconds=round(time.monotonic() - t0, 3),
            error=str(exc),
        )
    dims = {contract.DIMENSION_TASK: task}
    emit(contract.MAINTENANCE_FAILED, summary.failed, MetricUnit.Count, name, dims)
    emit(contract.ROWS_DELETED, summary.rows_deleted, MetricUnit.Count, name, dims)
    emit(contract.ROWS_ARCHIVED, summary.rows_archived, MetricUnit.Count, name, dims)
    emit(contract.DURATION_SECONDS, summary.duration_seconds, MetricUnit.Seconds, name, dims)
    logger.info(
        "maintenance finished",
        extra={
            "database": name,
            "task": task,
            "done": summary.done,
            "skipped": summary.skipped,
            "failed": summary.failed,
            "rows_deleted": summary.rows_deleted,
            "rows_archived": summary.rows_archived,
            "seconds": summary.duration_seconds,
        },
    )
    return summary


@logger.inject_lambda_context(correlation_id_path="id", clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = MaintenanceSettings()
    invocation = parse_event(event)
    databases = databases_to_run(settings.databases, invocation.database)
    deadline = deadline_for(context, settings.deadline_margin_s)
    summaries = [_maintain_one(settings, db.name, invocation, deadline) for db in databases]
    return MaintenanceResponse(summaries=summaries).model_dump(mode="json")
