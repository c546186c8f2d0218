"""The backup lock: backups of one database never overlap (a session-level advisory lock on the database)."""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg

from dbops.errors import BackupError

# backups of one database never overlap: each holds this session-level advisory lock on its own connection until
# its manifest is written (advisory locks are per database, and the key also carries the catalog name)
BACKUP_LOCK_CLASS = 0x64627073  # "dbps"


def backup_lock_key(database: str) -> int:
    """The second half of the backup lock's key: a stable signed 32-bit hash of the catalog name."""
    return int.from_bytes(hashlib.sha256(database.encode()).digest()[:4], "big", signed=True)


def lock_out_other_backups(conn: psycopg.Connection[Any], database: str) -> None:
    """Take the database's backup lock, or refuse at once: another backup of it is running."""
    row = conn.execute(
        "SELECT pg_try_advisory_lock(%s::int4, %s::int4)", [BACKUP_LOCK_CLASS, backup_lock_key(database)]
    ).fetchone()
    if not (row and row[0]):
        raise BackupError(
            f"another backup of {database} is running (it holds the dbops backup lock on the database): this one "
            "stopped before writing anything; the running one commits, or fails, on its own"
        )
