"""One database's backup as the Backup function and its Fargate task run it: back up, verify, apply retention."""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import BaseModel, Field

from dbops.backup import catalog
from dbops.backup.catalog import BackupKind, BackupManifest
from dbops.backup.formats import FormatChoice, choose_format, run_in_format
from dbops.backup.parallel.plan import copy_streams
from dbops.backup.retention import RetentionResult, release_for_expiry
from dbops.backup.run import BackupRequest
from dbops.backup.verify import verify_entry
from dbops.errors import DbopsError, StorageError
from dbops.postgres.connection import database_spec
from dbops.settings import FunctionSettings


class DatabaseBackup(BaseModel):
    """What happened: the committed manifest or the error; whether it was verified; what retention did."""

    database: str
    kind: BackupKind
    seconds: float
    manifest: BackupManifest | None = None
    error: str | None = None
    could_not_run: bool = Field(default=False, description="the error: the database, a tool or storage out of reach")
    verified: bool = False
    retention: RetentionResult | None = None
    retention_error: str | None = None
    format_reason: str | None = Field(default=None, description="why this format and this many COPY streams")


def _time_to_verify(manifest: BackupManifest, deadline: float | None) -> bool:
    """A full read takes about as long as the backup did: verify when the time left holds it twice over."""
    return deadline is None or deadline - time.monotonic() >= 2 * manifest.duration_seconds


def format_for(settings: FunctionSettings, name: str) -> FormatChoice:
    """The database's configured format (auto: from its last committed backup) and the COPY streams it may use."""
    db = settings.database(name)
    configured = db.backup_format
    streams = copy_streams(
        db.backup_max_streams or settings.max_streams,
        lambda_memory_mb=settings.lambda_memory_mb,
        task_cpu_units=settings.task_cpu_units,
    )
    last = None
    if configured == "auto":
        entries = catalog.list_backups(settings.bucket, database=name)
        last = entries[0].manifest if entries else None
    choice = choose_format(configured, last, streams.count)
    return FormatChoice(choice.format, choice.workers, choice.reason, streams.why)


def back_up_database(
    settings: FunctionSettings,
    name: str,
    kind: BackupKind,
    deadline: float | None,
    progress: Callable[[str, int], None] | None = None,
) -> DatabaseBackup:
    """Back up one database (`deadline`: a time.monotonic() moment, None for no limit), then read the committed
    backup back whole (size, sha256, a full pg_restore read) when time allows: retention counts only verified
    backups, and a committed but unreadable backup is a failed one. Retention runs last and never fails the
    committed backup (the next backup's pass repeats it)."""
    t0 = time.monotonic()
    verified = False
    choice: FormatChoice | None = None
    try:
        choice = format_for(settings, name)
        request = BackupRequest(
            database=name,
            bucket=settings.bucket,
            kind=kind,
            pg_bin_dir=settings.pg_bin_dir,
            compression_level=settings.compression_level,
            lock=settings.backup_lock,
        )
        spec = database_spec(settings.database(name))
        manifest = run_in_format(spec, request, choice, deadline=deadline, progress=progress)
        if _time_to_verify(manifest, deadline):
            verify_entry(settings.bucket, catalog.CatalogEntry(manifest=manifest), settings.pg_bin_dir)
            verified = True
    except DbopsError as exc:
        return DatabaseBackup(
            database=name,
            kind=kind,
            error=str(exc),
            could_not_run=exc.could_not_run or isinstance(exc, StorageError),
            seconds=round(time.monotonic() - t0, 3),
        )
    outcome = DatabaseBackup(
        database=name,
        kind=kind,
        manifest=manifest,
        verified=verified,
        seconds=manifest.duration_seconds,
        format_reason=f"{choice.format} ({choice.workers} COPY streams at most, {choice.streams_why}): {choice.reason}",
    )
    try:
        outcome.retention = release_for_expiry(
            settings.bucket, kind, name, settings.retention_keep, classes=settings.retention_classes()
        )
    except DbopsError as exc:
        outcome.retention_error = str(exc)
    return outcome
