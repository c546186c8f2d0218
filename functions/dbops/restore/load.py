"""A backup of either format loaded into an empty database: what Stage, a rehearsal and `dbops export` share.

The single format: its archive downloaded into the caller's folder (checked against the manifest on the way) and
restored with `pg_restore -j`; the parallel format: its schema archive there, its rows streamed from S3
(`parallel_load`). Either way pg_restore runs as many jobs as `archive.restore_jobs` allows for the backup's tables.
Progress is the bytes read from the bucket (decompressed), against their sum in the manifest (`restore_size`).
"""

from __future__ import annotations

from pathlib import Path

from dbops.backup.catalog import BackupManifest
from dbops.postgres.connection import ConnectionSpec
from dbops.postgres.pgrestore import run_pg_restore
from dbops.restore import archive
from dbops.restore.archive import ByteCount, Progress
from dbops.restore.parallel_load import restore_parallel


def restore_size(manifest: BackupManifest, chosen: set[int] | None = None) -> int:
    """The bytes a restore reads from the bucket, decompressed, as the manifest records them: its archive, and a
    parallel backup's data objects (of the chosen tables only, for a selective restore)."""
    objects = [o for o in manifest.data if chosen is None or o.table_oid in chosen]
    return manifest.dump.raw_size + sum(o.raw_size for o in objects)


def load_backup(
    bucket: str,
    manifest: BackupManifest,
    target: ConnectionSpec,
    folder: Path,
    *,
    jobs: int,
    pg_bin_dir: str | None = None,
    chosen: set[int] | None = None,
    progress: Progress | None = None,
) -> None:
    """Restore the backup into `target` (an empty database that exists), using `folder` (the caller's, removed by
    it) for what pg_restore reads from disk. `chosen` (pg_class OIDs): only those tables, as a selective restore
    stages them; None: the whole backup. `progress("restore", bytes)` as it reads the bucket (of `restore_size`)."""
    if manifest.format == "parallel":
        restore_parallel(
            bucket,
            manifest,
            target,
            jobs=jobs,
            pg_bin_dir=pg_bin_dir,
            work_dir=str(folder),
            chosen=chosen,
            progress=progress,
        )
        return
    local = archive.download(bucket, manifest.dump, folder / "archive.dump", ByteCount(progress, "restore"))
    args = [f"--jobs={archive.restore_jobs(manifest.tables, jobs, chosen)}"]
    if chosen is not None:
        args.append(f"--use-list={archive.selective_list(local, manifest.tables, chosen, folder, pg_bin_dir)}")
    run_pg_restore(target, args, archive=local, pg_bin_dir=pg_bin_dir)
