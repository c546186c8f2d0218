"""A backup of either format restored in full into a new database (no swap, no state machine): `dbops export`."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from dbops.backup.catalog import BackupManifest
from dbops.errors import RestoreRefused
from dbops.postgres.connection import ConnectionSpec
from dbops.postgres.pgrestore import run_pg_restore
from dbops.restore import databases
from dbops.restore.archive import download
from dbops.restore.parallel_load import restore_parallel


def _restore_single(
    bucket: str, manifest: BackupManifest, target: ConnectionSpec, jobs: int, pg_bin: str | None
) -> None:
    folder = Path(tempfile.mkdtemp(prefix="dbops-export-"))
    try:
        archive = download(bucket, manifest.dump, folder / "archive.dump")
        run_pg_restore(target, [f"--jobs={jobs}"], archive=archive, pg_bin_dir=pg_bin)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def export_backup(
    bucket: str, manifest: BackupManifest, server: ConnectionSpec, name: str, *, jobs: int, pg_bin: str | None = None
) -> ConnectionSpec:
    """Restore the backup into a new database `name` on `server`'s server; a failure drops what it made."""
    if databases.exists(server, name):
        raise RestoreRefused(f"database {name} exists: export restores into a new database only")
    databases.create(server, name)
    target = server.for_database(name)
    try:
        if manifest.format == "parallel":
            restore_parallel(bucket, manifest, target, jobs=jobs, pg_bin_dir=pg_bin)
        else:
            _restore_single(bucket, manifest, target, jobs, pg_bin)
    except BaseException:
        databases.drop(server, name)
        raise
    return target
