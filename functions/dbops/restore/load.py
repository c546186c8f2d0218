"""A backup of either format loaded into an empty database: what Stage, a rehearsal and `dbops export` share.

The single format: its archive downloaded into the caller's folder (checked against the manifest on the way) and
restored with `pg_restore -j`; the parallel format: its schema archive there, its rows streamed from S3
(`parallel_load`). Either way pg_restore runs as many jobs as `archive.restore_jobs` allows for the backup's tables.
"""

from __future__ import annotations

from pathlib import Path

from dbops.backup.catalog import BackupManifest
from dbops.postgres.connection import ConnectionSpec
from dbops.postgres.pgrestore import run_pg_restore
from dbops.restore import archive
from dbops.restore.parallel_load import restore_parallel


def load_backup(
    bucket: str,
    manifest: BackupManifest,
    target: ConnectionSpec,
    folder: Path,
    *,
    jobs: int,
    pg_bin_dir: str | None = None,
    chosen: set[int] | None = None,
) -> None:
    """Restore the backup into `target` (an empty database that exists), using `folder` (the caller's, removed by
    it) for what pg_restore reads from disk. `chosen` (pg_class OIDs): only those tables, as a selective restore
    stages them; None: the whole backup."""
    if manifest.format == "parallel":
        restore_parallel(
            bucket, manifest, target, jobs=jobs, pg_bin_dir=pg_bin_dir, work_dir=str(folder), chosen=chosen
        )
        return
    local = archive.download(bucket, manifest.dump, folder / "archive.dump")
    args = [f"--jobs={archive.restore_jobs(manifest.tables, jobs)}"]
    if chosen is not None:
        args.append(f"--use-list={archive.selective_list(local, manifest.tables, chosen, folder, pg_bin_dir)}")
    run_pg_restore(target, args, archive=local, pg_bin_dir=pg_bin_dir)
