"""What the Backup function and its Fargate task say about one database's backup: log lines, metrics, a result."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel

from dbops import contract
from dbops.backup.catalog import BackupKind
from dbops.backup.database_backup import back_up_database
from dbops.settings import FunctionSettings
from handlers.observability import emit, logger


class BackupResult(BaseModel):
    database: str
    ok: bool
    backup_id: str | None = None
    kind: BackupKind
    bytes: int = 0
    seconds: float = 0.0
    error: str | None = None
    could_not_run: bool = False  # the database, a tool or storage was out of reach


def backup_one(settings: FunctionSettings, name: str, kind: BackupKind, deadline: float | None) -> BackupResult:
    """Back up one database (dbops.backup.database_backup), then log and emit its metrics; `deadline`: None, no
    limit."""
    outcome = back_up_database(
        settings,
        name,
        kind,
        deadline,
        progress=lambda what, raw: logger.info("backup progress", extra={"step": what, "raw_bytes": raw}),
    )
    manifest = outcome.manifest
    if manifest is None:
        logger.error("backup failed", extra={"database": name, "kind": kind, "error": outcome.error})
        emit(contract.BACKUP_FAILED, 1, MetricUnit.Count, name)
        return BackupResult(
            database=name,
            ok=False,
            kind=kind,
            error=outcome.error,
            could_not_run=outcome.could_not_run,
            seconds=outcome.seconds,
        )
    if not outcome.verified:
        logger.warning("backup not verified: too little time left", extra={"backup_id": manifest.id})
    emit(contract.BACKUP_SUCCEEDED, 1, MetricUnit.Count, name)
    emit(contract.BACKUP_BYTES, manifest.archive_bytes, MetricUnit.Bytes, name)
    emit(contract.BACKUP_DURATION_SECONDS, manifest.duration_seconds, MetricUnit.Seconds, name)
    logger.info(
        "backup committed",
        extra={
            "database": name,
            "backup_id": manifest.id,
            "bytes": manifest.archive_bytes,
            "seconds": outcome.seconds,
            "format": manifest.format,
            "workers": manifest.workers,
            "format_reason": outcome.format_reason,
        },
    )
    if outcome.retention is not None:
        logger.info("retention applied", extra=outcome.retention.log_fields())
    else:
        logger.error("retention failed", extra={"database": name, "kind": kind, "error": outcome.retention_error})
    return BackupResult(
        database=name, ok=True, backup_id=manifest.id, kind=kind, bytes=manifest.archive_bytes, seconds=outcome.seconds
    )
