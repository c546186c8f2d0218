"""Verification: the object matches its manifest byte for byte, and pg_restore can read the whole archive.

`pg_restore --list` reads only the table of contents and passes a truncated archive; a full read to
/dev/null does not. The result is recorded in the catalog next to the manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import time
from datetime import UTC, datetime

import zstandard

from dbops import catalog, s3stream
from dbops.catalog import CatalogEntry, Verification
from dbops.errors import DbopsError, VerificationFailed
from dbops.pgtools import find_tool


def _check(entry: CatalogEntry, bucket: str, pg_bin_dir: str | None) -> None:
    manifest = entry.manifest
    obj = manifest.dump
    pg_restore = find_tool("pg_restore", pg_bin_dir)
    proc = subprocess.Popen(
        [str(pg_restore), "--file=/dev/null"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stderr is not None
    digest = hashlib.sha256()
    size = 0
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    problem: str | None = None
    try:
        for chunk in s3stream.iter_object(bucket, obj.key):
            digest.update(chunk)
            size += len(chunk)
            proc.stdin.write(decompressor.decompress(chunk))
        if not decompressor.eof:
            problem = "the compressed stream ends early (truncated object)"
    except zstandard.ZstdError as exc:
        problem = f"the object is not a valid zstd stream: {exc}"
    except BrokenPipeError:
        pass  # pg_restore gave up; its exit code and stderr say why
    finally:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
    stderr = proc.stderr.read().decode(errors="replace").strip()
    returncode = proc.wait()
    if size != obj.size:
        raise VerificationFailed(f"size {size} bytes differs from the manifest's {obj.size} bytes")
    if digest.hexdigest() != obj.sha256:
        raise VerificationFailed("sha256 of the object differs from the manifest's")
    if problem:
        raise VerificationFailed(problem)
    if returncode < 0:
        raise VerificationFailed(f"pg_restore was killed by signal {-returncode} while reading the archive")
    if returncode != 0:
        raise VerificationFailed(f"pg_restore could not read the whole archive: {stderr or returncode}")


def verify_backup(
    bucket: str, ref: str, *, kind: str | None = None, database: str | None = None, pg_bin_dir: str | None = None
) -> Verification:
    """Check one backup and record the result; raises VerificationFailed after recording a failure."""
    entry = catalog.find_backup(bucket, ref, kind=kind, database=database)
    t0 = time.monotonic()
    try:
        _check(entry, bucket, pg_bin_dir)
        ok, detail = True, "size, sha256 and a full pg_restore read match the manifest"
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
