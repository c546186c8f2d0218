"""The SafetyBackup step: a backup of the target as it is now (kind prerestore) before a restore replaces it."""

from __future__ import annotations

from dbops.backup import catalog
from dbops.backup.run import BackupRequest, run_backup
from dbops.restore.connections import target_spec
from dbops.restore.models import RestoreState
from dbops.settings import FunctionSettings


def safety_backup(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    """A fresh backup of the target as it is now (kind prerestore), unless the target is new."""
    if state.drill or not state.target_existed or state.safety_backup_id:
        return state
    for entry in catalog.list_backups(settings.bucket, kind="prerestore", database=state.database):
        if entry.manifest.labels.get("restore_id") == state.restore_id:  # a retried step: reuse it
            return state.model_copy(update={"safety_backup_id": entry.manifest.id})
    manifest = run_backup(
        target_spec(state, settings),
        BackupRequest(
            database=str(state.database),
            bucket=settings.bucket,
            kind="prerestore",
            pg_bin_dir=settings.pg_bin_dir,
            labels={"restore_id": state.restore_id},
            lock=settings.backup_lock,
        ),
    )
    return state.model_copy(update={"safety_backup_id": manifest.id})
