"""The five maintenance tasks planned (what runs, on which objects, why), then executed object by object."""

# `plan_task`, `execute_plan` and `run_task` are the entry points the CLI, the handler and the demo use. Each
# task is one object that both plans and runs (base.py): analyze.py, vacuum.py, reindex.py, and cleanup.py for
# cleanup and archive (the retention rules, in batches: row_cleanup.py).

from __future__ import annotations

import time
from datetime import UTC, datetime

import psycopg

from dbops.config.maintenance import MaintenanceConfig, Task
from dbops.errors import DbopsError
from dbops.maintenance.analyze import AnalyzeJob
from dbops.maintenance.base import MaintenanceJob, RunContext, object_name, result_of
from dbops.maintenance.cleanup import RuleJob
from dbops.maintenance.models import MaintenanceSummary, ObjectResult, Plan, PlannedObject, Progress, ProgressEvent
from dbops.maintenance.reindex import ReindexJob
from dbops.maintenance.runner import Deadline, Session
from dbops.maintenance.vacuum import VacuumJob
from dbops.postgres.connection import ConnectionSpec, server_version_num

JOBS: dict[Task, MaintenanceJob] = {
    "analyze": AnalyzeJob(),
    "vacuum": VacuumJob(),
    "reindex": ReindexJob(),
    "cleanup": RuleJob("cleanup"),
    "archive": RuleJob("archive"),
}


def _ignore(_: ProgressEvent) -> None:
    pass


def plan_task(spec: ConnectionSpec, task: Task, config: MaintenanceConfig, *, database: str | None = None) -> Plan:
    """What `task` would do on the database now. Raises ConfigError (bad rule) before anything changes."""
    with Session(spec, config) as session:
        session.set_timeouts(config.lock_timeout_s, config.batch_statement_timeout_s)
        version = server_version_num(session.conn)
        found, notes = JOBS[task].plan(session.conn, config, version)
    return Plan(
        task=task,
        database=database or spec.dbname,
        server_version=version,
        planned_at=datetime.now(UTC),
        objects=found,
        notes=notes,
    )


def execute_plan(
    spec: ConnectionSpec,
    plan: Plan,
    config: MaintenanceConfig,
    *,
    progress: Progress | None = None,
    deadline: float | None = None,
) -> MaintenanceSummary:
    """Run a plan object by object; a failure on one object is recorded and the others still run."""
    started, t0 = datetime.now(UTC), time.monotonic()
    task = JOBS[plan.task]
    results: list[ObjectResult] = []
    time_limit = Deadline(deadline)
    with Session(spec, config, time_limit) as session:
        ctx = RunContext(session, config, progress or _ignore, time_limit)
        task.prepare(ctx, plan)
        for obj in plan.objects:
            results.append(_execute_object(task, ctx, plan, obj))
    return MaintenanceSummary(
        task=plan.task,
        database=plan.database,
        started_at=started,
        duration_seconds=round(time.monotonic() - t0, 3),
        objects=results,
    )


def _execute_object(task: MaintenanceJob, ctx: RunContext, plan: Plan, obj: PlannedObject) -> ObjectResult:
    name = object_name(obj)
    if obj.skip_reason:
        return result_of(obj, "skipped", detail=obj.skip_reason)
    if ctx.deadline.passed():
        return result_of(obj, "skipped", detail="time limit reached before it began")
    ctx.progress(ProgressEvent(event="start", object=name, message=f"{obj.action}: {obj.reason}"))
    t0 = time.monotonic()
    try:
        result = task.run(ctx, plan, obj)
    except (psycopg.Error, DbopsError) as exc:
        result = result_of(obj, "failed", seconds=round(time.monotonic() - t0, 3), detail=str(exc))
    ctx.progress(
        ProgressEvent(
            event="done",
            object=name,
            message=f"{result.status} in {result.seconds:.1f}s" + (f": {result.detail}" if result.detail else ""),
            rows=result.rows_deleted + result.rows_archived,
        )
    )
    return result


def run_task(
    spec: ConnectionSpec,
    task: Task,
    config: MaintenanceConfig,
    *,
    database: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    deadline: float | None = None,
) -> MaintenanceSummary:
    """Plan `task`, then (unless dry_run) execute the plan. Raises ConfigError/DatabaseError before any change."""
    t0 = time.monotonic()
    plan = plan_task(spec, task, config, database=database)
    if dry_run:
        return planned_summary(plan, time.monotonic() - t0)
    return execute_plan(spec, plan, config, progress=progress, deadline=deadline)


def planned_summary(plan: Plan, seconds: float = 0.0) -> MaintenanceSummary:
    """A dry run's summary: every object as planned, nothing run."""
    return MaintenanceSummary(
        task=plan.task,
        database=plan.database,
        dry_run=True,
        started_at=plan.planned_at,
        duration_seconds=round(seconds, 3),
        objects=[
            result_of(o, "skipped" if o.skip_reason else "planned", detail=o.skip_reason or o.reason)
            for o in plan.objects
        ],
    )
