"""The Stage step: the backup restored into the work database beside the target, from a local copy of its archive
(a parallel backup: its schema archive, the rows streamed from S3; a selective restore reads only its tables')."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from dbops.postgres.pgrestore import run_pg_restore
from dbops.restore import archive, databases
from dbops.restore.backup_choice import chosen_manifest
from dbops.restore.connections import server_spec
from dbops.restore.models import RestoreState
from dbops.restore.parallel_load import restore_parallel
from dbops.restore.work_dir import work_dir
from dbops.settings import FunctionSettings


def stage(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    """Restore into the work database (`<db>__restore_<id>`), from a local copy so pg_restore -j can run."""
    spec = server_spec(state, settings)  # its secret read once: the work database's spec is derived from it
    assert state.work_db is not None
    databases.drop(spec, state.work_db)  # a retried stage starts clean
    databases.create(spec, state.work_db)
    work = spec.for_database(state.work_db)
    folder = Path(tempfile.mkdtemp(prefix="dbops-restore-", dir=work_dir(settings.work_dir, state.archive_size)))
    try:
        manifest = chosen_manifest(state, settings)
        chosen = {t.oid for t in state.tables if t.oid is not None}
        if manifest.format == "parallel":
            jobs, bin_dir = settings.restore_jobs, settings.pg_bin_dir
            only = chosen if state.selective else None
            restore_parallel(
                settings.bucket, manifest, work, jobs=jobs, pg_bin_dir=bin_dir, work_dir=str(folder), chosen=only
            )
            return state
        local = archive.download(settings.bucket, manifest.dump, folder / "archive.dump")
        args = [f"--jobs={archive.restore_jobs(manifest.tables, settings.restore_jobs)}"]
        if state.selective:
            listing = archive.selective_list(local, manifest.tables, chosen, folder, settings.pg_bin_dir)
            args.append(f"--use-list={listing}")
        run_pg_restore(work, args, archive=local, pg_bin_dir=settings.pg_bin_dir)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return state
