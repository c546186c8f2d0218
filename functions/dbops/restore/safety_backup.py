"""The SafetyBackup step: a backup of the target as it is now (kind prerestore) before a restore replaces it.

A full restore replaces the whole database: its safety backup is whole. A selective restore's swap changes the rows
of the chosen tables only (its foreign-key checks refuse any change that would reach another table's rows, and it
quiets the tables' own triggers and rules), so its safety backup holds those tables' rows alone: a parallel-format
backup limited to them (with their partitions and children as the target has them now), which a selective
restore of those tables puts back like any other backup.
"""

from __future__ import annotations

from dbops.backup.catalog import BackupManifest
from dbops.backup.parallel.plan import copy_streams
from dbops.backup.parallel.run import run_parallel_backup
from dbops.backup.run import BackupRequest, run_backup
from dbops.restore.backup_choice import taken_by
from dbops.restore.connections import target_spec
from dbops.restore.models import RestoreState
from dbops.settings import FunctionSettings


def safety_backup(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    """A fresh backup of the target as it is now (kind prerestore), unless the target is new."""
    if state.drill or not state.target_existed or state.safety_backup_id:
        return state
    taken = taken_by(state, settings, "prerestore")  # a retried step: reuse it
    if taken is not None:
        return state.model_copy(update={"safety_backup_id": taken.id})
    request = BackupRequest(
        database=str(state.database),
        bucket=settings.bucket,
        kind="prerestore",
        pg_bin_dir=settings.pg_bin_dir,
        labels={"restore_id": state.restore_id},
        tables=[(t.schema_name, t.name) for t in state.tables] if state.selective else None,
        lock=settings.backup_lock,
    )
    manifest: BackupManifest
    if state.selective:
        streams = copy_streams(
            settings.max_streams, lambda_memory_mb=settings.lambda_memory_mb, task_cpu_units=settings.task_cpu_units
        )
        manifest = run_parallel_backup(target_spec(state, settings), request, workers=streams.count)
    else:
        manifest = run_backup(target_spec(state, settings), request)
    return state.model_copy(update={"safety_backup_id": manifest.id})
