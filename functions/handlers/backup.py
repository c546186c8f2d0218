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

import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from dbops import contract
from dbops.backup import catalog
from dbops.backup.catalog import BackupKind, BackupManifest
from dbops.backup.placement import Runner, runner_for
from dbops.backup.retention import release_for_expiry
from dbops.backup.run import BackupRequest, run_backup
from dbops.backup.verify import verify_entry
from dbops.errors import BackupsFailed, DbopsError
from dbops.postgres.connection import database_spec
from dbops.settings import FunctionSettings
from handlers.events import databases_to_run, deadline_for, parse_invocation
from handlers.observability import emit, logger, tracer


class BackupInvocation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: BackupKind = "nightly"
    database: str | None = Field(default=None, description="omit to back up every configured database")
    plan: bool = Field(default=False, description="answer where the database's backup runs, back nothing up")


class BackupResult(BaseModel):
    database: str
    ok: bool
    backup_id: str | None = None
    kind: BackupKind
    bytes: int = 0
    seconds: float = 0.0
    error: str | None = None


class BackupResponse(BaseModel):
    results: list[BackupResult]


class BackupPlan(BaseModel):
    database: str
    kind: BackupKind
    runner: Runner
    reason: str


def parse_event(event: Any) -> BackupInvocation:
    return parse_invocation(BackupInvocation, event, "backup event")


def _verify_if_time_allows(settings: FunctionSettings, manifest: BackupManifest, deadline: float | None) -> None:
    """Read the committed backup back whole (size, sha256, a full pg_restore read) when the time left holds that
    read twice over: retention counts only verified backups. A backup that fails it raises VerificationFailed
    (recorded in the catalog): a committed but unreadable backup is a failed backup."""
    if deadline is not None and deadline - time.monotonic() < 2 * manifest.duration_seconds:
        logger.warning("backup not verified: too little time left", extra={"backup_id": manifest.id})
        return
    verify_entry(settings.bucket, catalog.CatalogEntry(manifest=manifest), settings.pg_bin_dir)


def backup_one(settings: FunctionSettings, name: str, kind: BackupKind, deadline: float | None) -> BackupResult:
    """Back up one database and emit its metrics (here and in the Fargate task); `deadline`: None, no limit."""
    t0 = time.monotonic()
    try:
        spec = database_spec(settings.database(name))
        request = BackupRequest(
            database=name,
            bucket=settings.bucket,
            kind=kind,
            pg_bin_dir=settings.pg_bin_dir,
            compression_level=settings.compression_level,
        )
        manifest = run_backup(
            spec,
            request,
            deadline=deadline,
            progress=lambda what, raw: logger.info("backup progress", extra={"step": what, "raw_bytes": raw}),
        )
        _verify_if_time_allows(settings, manifest, deadline)
    except DbopsError as exc:
        logger.error("backup failed", extra={"database": name, "kind": kind, "error": str(exc)})
        emit(contract.BACKUP_FAILED, 1, MetricUnit.Count, name)
        return BackupResult(database=name, ok=False, kind=kind, error=str(exc), seconds=round(time.monotonic() - t0, 3))
    emit(contract.BACKUP_SUCCEEDED, 1, MetricUnit.Count, name)
    emit(contract.BACKUP_BYTES, manifest.dump.size, MetricUnit.Bytes, name)
    emit(contract.BACKUP_DURATION_SECONDS, manifest.duration_seconds, MetricUnit.Seconds, name)
    logger.info(
        "backup committed",
        extra={
            "database": name,
            "backup_id": manifest.id,
            "bytes": manifest.dump.size,
            "seconds": manifest.duration_seconds,
        },
    )
    try:  # never fails the committed backup; the next backup's pass repeats it
        kept = release_for_expiry(settings.bucket, kind, name, settings.retention_keep)
        logger.info("retention applied", extra=kept.log_fields())
    except DbopsError as exc:
        logger.error("retention failed", extra={"database": name, "kind": kind, "error": str(exc)})
    return BackupResult(
        database=name,
        ok=True,
        backup_id=manifest.id,
        kind=kind,
        bytes=manifest.dump.size,
        seconds=manifest.duration_seconds,
    )


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
