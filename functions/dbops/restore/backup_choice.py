"""Which backup a restore uses: the one a request's reference means, and the chosen one's manifest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dbops.backup import catalog
from dbops.backup.catalog import BackupManifest
from dbops.errors import NoReplicatedBackup
from dbops.restore.models import RestoreState
from dbops.settings import FunctionSettings

# how much earlier than the restore's start a backup it took may say it began (the steps run on different hosts)
CLOCK_MARGIN = timedelta(minutes=1)


def _whole(manifest: BackupManifest) -> bool:
    """A backup of the whole database the operator took: not a restore's safety copy, nor some tables' rows."""
    return manifest.kind != "prerestore" and not manifest.tables_only


def choose_backup(bucket: str, ref: str, kind: str | None, database: str) -> catalog.CatalogEntry:
    """`latest` without a kind means the newest whole backup the operator took: not a safety copy of a restore, nor
    a backup of some tables' rows (`dbops backup --table`), which is restored by its id."""
    if ref == "latest" and kind is None:
        for entry in catalog.list_backups(bucket, database=database):
            if _whole(entry.manifest):
                return entry
    return catalog.find_backup(bucket, ref, kind=kind, database=database)


def newest_verified(bucket: str, database: str) -> catalog.CatalogEntry:
    """A disaster drill's backup: the newest verified whole one in the bucket, the replica; none there is
    replication's failure, not the request's."""
    for entry in catalog.list_backups(bucket, database=database):
        if _whole(entry.manifest) and entry.verified:
            return entry
    raise NoReplicatedBackup(
        f"no verified backup of {database} in bucket {bucket}: nothing has been replicated to the DR region "
        "(see the ReplicationFailed and ReplicationLag alarms of the main stack)"
    )


def chosen_manifest(state: RestoreState, settings: FunctionSettings) -> BackupManifest:
    """The chosen backup's manifest (Validate found the backup whole and verified), read straight from its prefix."""
    assert state.backup_id is not None and state.backup_kind is not None and state.database is not None
    return catalog.read_manifest(settings.bucket, state.backup_kind, state.database, state.backup_id)


def taken_by(state: RestoreState, settings: FunctionSettings, kind: str) -> BackupManifest | None:
    """The backup of `kind` this restore took already (a retried step, or the Fargate task wrote it): found among
    the backups begun since the restore started, not by reading every backup of that kind ever taken."""
    since = (state.started_at or datetime.now(UTC)) - CLOCK_MARGIN
    for entry in catalog.backups_since(settings.bucket, kind, str(state.database), since):
        if entry.manifest.labels.get("restore_id") == state.restore_id:
            return entry.manifest
    return None
