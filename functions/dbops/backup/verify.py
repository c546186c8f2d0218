"""Verification: the objects match their manifest byte for byte, and pg_restore can read the whole archive.

`pg_restore --list` reads only the table of contents and passes a truncated archive; a full read to
/dev/null does not. The result is recorded in the catalog next to the manifest.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from dbops.backup import catalog, stored
from dbops.backup.catalog import CatalogEntry, DataObject, Verification
from dbops.backup.run import Progress
from dbops.errors import DbopsError, VerificationFailed
from dbops.postgres.tools import StderrTail, find_tool


def _check(entry: CatalogEntry, bucket: str, pg_bin_dir: str | None, progress: Progress | None = None) -> None:
    pg_restore = find_tool("pg_restore", pg_bin_dir)
    proc = subprocess.Popen(
        [str(pg_restore), "--file=/dev/null"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stderr is not None
    stderr = StderrTail(proc.stderr)
    mismatch: str | None = None
    reading = True
    read = 0
    try:
        for data in stored.read_back(bucket, entry.manifest.dump):
            read += len(data)
            if progress:
                progress("verify", read)
            if reading:
                try:
                    proc.stdin.write(data)
                except BrokenPipeError:
                    reading = False  # pg_restore gave up; the object itself is still checked to its end
    except VerificationFailed as exc:
        mismatch = str(exc)
    finally:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
    returncode = proc.wait()
    if mismatch:
        raise VerificationFailed(mismatch)
    if returncode < 0:
        raise VerificationFailed(f"pg_restore was killed by signal {-returncode} while reading the archive")
    if returncode != 0:
        raise VerificationFailed(f"pg_restore could not read the whole archive: {stderr.text() or returncode}")


def _read_object(bucket: str, obj: DataObject) -> None:
    """A parallel backup's data object read whole: size, sha256 and a zstd stream that ends where it should."""
    try:
        for _ in stored.read_back(bucket, obj):
            pass
    except VerificationFailed as exc:
        raise VerificationFailed(f"{obj.key} (table {obj.schema_name}.{obj.table} {obj.range_text}): {exc}") from None


def _check_data(entry: CatalogEntry, bucket: str) -> None:
    """Every data object of a parallel backup, a few at a time (their rows' format is checked by the drills)."""
    with ThreadPoolExecutor(max_workers=catalog.READERS) as pool:
        list(pool.map(lambda obj: _read_object(bucket, obj), entry.manifest.data))


def verify_backup(
    bucket: str, ref: str, *, kind: str | None = None, database: str | None = None, pg_bin_dir: str | None = None
) -> Verification:
    """Check one backup (an id, or latest) and record the result; raises VerificationFailed after recording a
    failure."""
    return verify_entry(bucket, catalog.find_backup(bucket, ref, kind=kind, database=database), pg_bin_dir)


def verify_entry(
    bucket: str, entry: catalog.CatalogEntry, pg_bin_dir: str | None = None, *, progress: Progress | None = None
) -> Verification:
    """verify_backup for a backup already read from the catalog; `progress(what, bytes read)` as it reads."""
    t0 = time.monotonic()
    try:
        _check(entry, bucket, pg_bin_dir, progress)
        _check_data(entry, bucket)
        ok, detail = True, "size, sha256 and a full pg_restore read match the manifest"
        if entry.manifest.data:
            ok, detail = True, f"{detail}; so do the size and sha256 of its {len(entry.manifest.data)} data objects"
    except VerificationFailed as exc:
        ok, detail = False, str(exc)
    except DbopsError as exc:
        ok, detail = False, f"could not read the backup: {exc}"
    result = Verification(
        backup_id=entry.manifest.id,
        ok=ok,
        checked_at=datetime.now(UTC),
        seconds=round(time.monotonic() - t0, 3),
        detail=detail,
    )
    catalog.record_verification(bucket, entry.manifest, result)
    if not ok:
        raise VerificationFailed(
            f"backup {entry.manifest.id} of {entry.manifest.database} failed verification: {detail}"
        )
    return result
