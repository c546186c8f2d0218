"""Where the scratch database's contents come from: a backup in the bucket (the drill's path: the backup chosen
as a restore chooses it, its archive downloaded and checked against its manifest, `pg_restore -j`), or a fresh
`pg_dump` of the database itself when there is no bucket (it reads production the way a backup does: one
snapshot, ACCESS SHARE on every table while it runs).

Either copy reports its bytes to a `CopyProgress`: a backup's read from the bucket against the manifest's sizes;
pg_dump's archive as it grows against the database's size (an upper bound: a dump leaves out indexes and free
space)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Protocol

from dbops.backup import catalog
from dbops.errors import BackupNotFound, RehearsalRefused, RestoreRefused, ToolError
from dbops.postgres.connection import ConnectionSpec, connect, server_version_num
from dbops.postgres.pgrestore import run_pg_restore
from dbops.postgres.tools import find_tool, require_compatible, tool_version
from dbops.restore import backup_choice, versions
from dbops.restore.load import load_backup, restore_size
from dbops.restore.work_dir import work_dir

FOLDER_PREFIX = "dbops-rehearse-"
DUMP_POLL_S = 0.5  # how often the growing archive's size is read while pg_dump writes it


class CopyProgress(Protocol):
    """Bytes of the scratch copy: `start` with the size known in advance, `(what, bytes done)`, then `done`."""

    def start(self, total: int | None, of: str = "") -> None: ...

    def __call__(self, what: str, done: int) -> None: ...

    def done(self) -> None: ...


def _work_folder(configured: str | None, size: int) -> Path:
    """A folder for the archive, named with our pid so that a later rehearsal can tell it is ours and we are gone."""
    return Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-", dir=work_dir(configured, size)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_work_folders(configured: str | None = None) -> list[str]:
    """Remove the archive folders of rehearsals that died (SIGKILL skips our cleanup): in memory (/dev/shm) an
    archive would otherwise hold its gigabytes until the machine restarts."""
    removed = []
    places = {Path(p) for p in (configured, "/dev/shm", tempfile.gettempdir()) if p}
    for place in places:
        with contextlib.suppress(OSError):
            for folder in place.glob(f"{FOLDER_PREFIX}*-*"):
                pid = folder.name.removeprefix(FOLDER_PREFIX).split("-", 1)[0]
                if pid.isdigit() and not _alive(int(pid)) and folder.is_dir():
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(str(folder))
    return removed


def choose_backup(bucket: str, ref: str, kind: str | None, database: str) -> catalog.CatalogEntry:
    """The backup a restore of `ref` would use (`latest` without a kind: the newest the operator took, not a
    restore's safety copy), refused when it failed verification."""
    try:
        entry = backup_choice.choose_backup(bucket, ref, kind, database)
    except BackupNotFound as exc:
        raise RehearsalRefused(
            f"{exc}: nothing to rehearse on. Take one first (dbops backup --kind predeploy), or rehearse on a fresh "
            "dump of the database with --from-database"
        ) from None
    if entry.verified is False:
        detail = entry.verification.detail if entry.verification else "no detail"
        raise RehearsalRefused(f"backup {entry.manifest.id} failed verification: {detail}")
    return entry


def check_versions(entry: catalog.CatalogEntry, spec: ConnectionSpec, pg_bin_dir: str | None) -> None:
    """As a restore checks them: pg_restore reads the archive, the server is not older than the backup's."""
    try:
        versions.check_versions(entry.manifest, spec, pg_bin_dir)
    except RestoreRefused as exc:
        raise RehearsalRefused(str(exc)) from None


def restore_backup(
    bucket: str,
    entry: catalog.CatalogEntry,
    target: ConnectionSpec,
    *,
    pg_bin_dir: str | None = None,
    jobs: int = 2,
    folder: str | None = None,
    progress: CopyProgress | None = None,
) -> None:
    """The backup into the (empty) `target` database, as the restore's Stage step does it (a parallel backup: its
    schema archive, the rows streamed from S3)."""
    work = _work_folder(folder, entry.manifest.dump.raw_size)
    if progress is not None:
        progress.start(restore_size(entry.manifest))
    try:
        load_backup(bucket, entry.manifest, target, work, jobs=jobs, pg_bin_dir=pg_bin_dir, progress=progress)
    finally:
        if progress is not None:
            progress.done()
        shutil.rmtree(work, ignore_errors=True)


def _dump_watched(argv: list[str], env: dict[str, str], path: Path, name: str, progress: CopyProgress | None) -> None:
    """Run pg_dump into `path`, its size reported as it grows; ToolError with pg_dump's own message."""
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        while True:
            try:
                proc.wait(timeout=DUMP_POLL_S)
                break
            except subprocess.TimeoutExpired:
                pass
            finally:
                if progress is not None and path.exists():
                    progress("pg_dump", path.stat().st_size)
        if proc.returncode != 0:
            stderr.seek(0)
            raise ToolError(f"pg_dump of {name} failed: {stderr.read().decode(errors='replace').strip()[-1000:]}")


def copy_database(
    source: ConnectionSpec,
    target: ConnectionSpec,
    *,
    pg_bin_dir: str | None = None,
    jobs: int = 2,
    folder: str | None = None,
    progress: CopyProgress | None = None,
) -> None:
    """A fresh pg_dump of `source` restored into the (empty) `target` database."""
    pg_dump = tool_version(find_tool("pg_dump", pg_bin_dir))
    with connect(source) as conn:
        require_compatible(pg_dump, server_version_num(conn), source.dbname)
        row = conn.execute(
            "SELECT pg_database_size(current_database()), EXISTS (SELECT FROM pg_class WHERE relkind = 'p')"
        ).fetchone()
    size = int(row[0]) if row else 0
    if row and row[1]:
        jobs = 1  # a partitioned table: one pg_restore job, as archive.restore_jobs decides for a backup
    work = _work_folder(folder, size)
    if progress is not None:
        progress.start(size, of="database size")
    try:
        path = work / "database.dump"
        argv = [str(pg_dump.path), "--no-password", "--format=custom", "--compress=0", f"--file={path}"]
        try:
            _dump_watched(argv, source.libpq_env(), path, source.dbname, progress)
        finally:
            if progress is not None:
                progress.done()
        run_pg_restore(target, [f"--jobs={jobs}"], archive=path, pg_bin_dir=pg_bin_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
