"""Backups of one database never overlap: a second backup started while one runs (a manual one during the nightly
execution, say) refuses at once, clearly, leaving nothing behind; the running one commits."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from dbops import aws
from dbops.backup import catalog
from dbops.backup.catalog import BackupManifest
from dbops.backup.lock import BACKUP_LOCK_CLASS, backup_lock_key
from dbops.backup.run import BackupRequest, run_backup
from dbops.errors import BackupError
from dbops.postgres.connection import ConnectionSpec, connect

DATABASE = "sprint_reports_v2"


def _wait_for_backup_lock(spec: ConnectionSpec, timeout_s: float = 30) -> None:
    """Until a session holds the database's backup lock (the first backup has begun)."""
    key = backup_lock_key(DATABASE) & 0xFFFFFFFF  # pg_locks shows the key's halves as oids (unsigned)
    end = time.monotonic() + timeout_s
    with connect(spec) as conn:
        while time.monotonic() < end:
            row = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = %s::oid "
                "AND objid = %s::oid AND objsubid = 2 "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                [BACKUP_LOCK_CLASS, key],
            ).fetchone()
            if row == (1,):
                return
            time.sleep(0.05)
    pytest.fail("the first backup never took the backup lock")


def test_a_second_backup_of_a_database_refuses_while_one_runs(sample_db: ConnectionSpec, bucket: str) -> None:
    first: dict[str, Any] = {}

    def nightly() -> None:
        try:
            first["manifest"] = run_backup(sample_db, BackupRequest(database=DATABASE, bucket=bucket, kind="nightly"))
        except BaseException as exc:  # reported by the assertions below
            first["error"] = exc

    # a migration holds a table: the first backup waits behind it, holding the backup lock, until it ends
    with connect(sample_db, autocommit=False) as migration:
        migration.execute("LOCK TABLE report_snapshots IN ACCESS EXCLUSIVE MODE")
        thread = threading.Thread(target=nightly)
        thread.start()
        _wait_for_backup_lock(sample_db)

        with pytest.raises(BackupError) as refused:
            run_backup(sample_db, BackupRequest(database=DATABASE, bucket=bucket, kind="manual"))
        migration.rollback()
    thread.join(timeout=120)

    assert f"another backup of {DATABASE} is running" in str(refused.value)
    assert "stopped before writing anything" in str(refused.value)
    assert "error" not in first, first.get("error")
    manifest: BackupManifest = first["manifest"]
    [entry] = catalog.list_backups(bucket)
    assert (entry.manifest.id, entry.manifest.kind) == (manifest.id, "nightly")
    s3 = aws.client("s3")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))
    assert keys == sorted([manifest.dump.key, manifest.prefix + catalog.MANIFEST])  # nothing of the refused one
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []

    # the lock ends with the backup: the next one runs
    again = run_backup(sample_db, BackupRequest(database=DATABASE, bucket=bucket, kind="manual"))
    assert again.kind == "manual"
