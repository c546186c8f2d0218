"""Where an archive is unpacked for pg_restore -j: the configured folder, memory (/dev/shm), or the temporary one."""

from __future__ import annotations

import os
from pathlib import Path

SHM = Path("/dev/shm")


def work_dir(configured: str | None, archive_bytes: int) -> str | None:
    """Where the archive is unpacked for pg_restore -j: the configured folder; else memory (/dev/shm) when it
    holds twice the archive, since a file written once and read once right away gains nothing from disk and
    its writeback slows the restore; else the temporary folder."""
    if configured:
        return configured
    try:
        stats = os.statvfs(SHM)
    except OSError:
        return None
    return str(SHM) if stats.f_bavail * stats.f_frsize > 2 * archive_bytes else None
