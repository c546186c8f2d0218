"""A backup of either format restored in full into a new database (no swap, no state machine): `dbops export`."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from dbops.backup.catalog import BackupManifest
from dbops.errors import RestoreRefused
from dbops.postgres.connection import ConnectionSpec
from dbops.restore import databases
from dbops.restore.archive import Progress
from dbops.restore.load import load_backup


def export_backup(
    bucket: str,
    manifest: BackupManifest,
    server: ConnectionSpec,
    name: str,
    *,
    jobs: int,
    pg_bin: str | None = None,
    progress: Progress | None = None,
) -> ConnectionSpec:
    """Restore the backup into a new database `name` on `server`'s server; a failure drops what it made.
    `progress("restore", bytes)` as it reads the bucket (of `load.restore_size`)."""
    if databases.exists(server, name):
        raise RestoreRefused(f"database {name} exists: export restores into a new database only")
    databases.create(server, name)
    target = server.for_database(name)
    folder = Path(tempfile.mkdtemp(prefix="dbops-export-"))
    try:
        load_backup(bucket, manifest, target, folder, jobs=jobs, pg_bin_dir=pg_bin, progress=progress)
    except BaseException:
        databases.drop(server, name)
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return target
