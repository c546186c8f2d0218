"""The Stage step: the backup restored into the work database beside the target, from a local copy of its archive
(a parallel backup: its schema archive, the rows streamed from S3; a selective restore reads only its tables')."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from dbops.errors import RestoreError
from dbops.restore import databases, records
from dbops.restore.archive import Progress
from dbops.restore.backup_choice import chosen_manifest
from dbops.restore.connections import server_spec
from dbops.restore.load import load_backup, restore_size
from dbops.restore.models import RestoreState
from dbops.restore.progress_file import ProgressFile, tee
from dbops.restore.work_dir import work_dir
from dbops.settings import FunctionSettings


def stage(
    state: RestoreState,
    settings: FunctionSettings,
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
) -> RestoreState:
    """Restore into the work database (`<db>__restore_<id>`), from a local copy so pg_restore -j can run;
    `progress("restore", bytes)` as it reads the bucket. Run by the state machine (the state knows its execution),
    the figures are published in the bucket too (`progress_file`); `warn` hears of a write that failed.
    Returns the state it was given: it runs beside SafetyBackup, whose state the execution goes on with."""
    spec = server_spec(state, settings)  # its secret read once: the work database's spec is derived from it
    assert state.work_db is not None
    databases.drop(spec, state.work_db)  # a retried stage starts clean
    databases.create(spec, state.work_db)
    work = spec.for_database(state.work_db)
    folder = Path(tempfile.mkdtemp(prefix="dbops-restore-", dir=work_dir(settings.work_dir, state.archive_size)))
    try:
        manifest = chosen_manifest(state, settings)
        chosen = {t.oid for t in state.tables if t.oid is not None} if state.selective else None
        published = (
            ProgressFile(settings.bucket, state.execution, restore_size(manifest, chosen), warn=warn)
            if state.execution
            else None
        )
        with published or contextlib.nullcontext():
            load_backup(
                settings.bucket,
                manifest,
                work,
                folder,
                jobs=settings.restore_jobs,
                pg_bin_dir=settings.pg_bin_dir,
                chosen=chosen,
                progress=tee(progress, published),
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if records.load(settings.bucket, state.record_kind, str(state.database), state.restore_id) is not None:
        # the safety backup beside it failed, and Rollback ended the restore while this ran: what it made is no
        # one's (Rollback dropped the work database before it was made, or Lambda ran on after the failure)
        databases.drop(spec, state.work_db)
        raise RestoreError(f"restore {state.restore_id} ended while its stage ran: {state.work_db} dropped")
    return state
