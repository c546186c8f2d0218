"""The catalog in the (moto) bucket: what it lists, in which order, with which verification, and what it
never counts."""

from __future__ import annotations

import pytest

from dbops import aws
from dbops.backup import catalog
from dbops.backup.catalog import StoredObject
from dbops.errors import BackupNotFound
from tests.integration.test_health_backups import DATABASE, write_backup


def test_lists_a_month_of_backups_newest_first_with_each_verification(bucket: str) -> None:
    outcomes = [True, False, None]
    written = [write_backup(bucket, hours_ago=24 * day, verified=outcomes[day % 3]) for day in range(30)]

    entries = catalog.list_backups(bucket, database=DATABASE)

    assert [e.manifest.id for e in entries] == [m.id for m in written]  # written newest first
    assert [e.verified for e in entries] == [outcomes[day % 3] for day in range(30)]
    assert catalog.find_backup(bucket, "latest", database=DATABASE).manifest.id == written[0].id


def test_objects_without_a_manifest_are_not_backups(bucket: str) -> None:
    committed = write_backup(bucket, hours_ago=1, verified=None)
    orphan = catalog.backup_prefix("nightly", DATABASE, catalog.new_backup_id())
    aws.client("s3").put_object(Bucket=bucket, Key=orphan + "database.dump.zst", Body=b"dump without manifest")

    assert [e.manifest.id for e in catalog.list_backups(bucket)] == [committed.id]
    with pytest.raises(BackupNotFound, match="not found"):
        catalog.find_backup(bucket, orphan.split("/")[-2])


def test_reads_one_backup_straight_from_its_prefix(bucket: str) -> None:
    manifest = write_backup(bucket, hours_ago=2, verified=True)

    entry = catalog.load_backup(bucket, "nightly", DATABASE, manifest.id)

    assert entry.manifest == manifest
    assert entry.verified is True
    with pytest.raises(BackupNotFound, match=f"backup {manifest.id} \\(predeploy of {DATABASE}\\) not found"):
        catalog.load_backup(bucket, "predeploy", DATABASE, manifest.id)


@pytest.mark.parametrize("gone", ["database.dump.zst", "schema.sql.zst"])
def test_a_backup_whose_archive_expired_before_its_manifest_is_not_a_backup(bucket: str, gone: str) -> None:
    """Lifecycle expires a backup's objects one by one, in no set order: a manifest left without an archive it
    names is never listed, found or counted (it could not be restored)."""
    older = write_backup(bucket, hours_ago=48, verified=True)
    manifest = write_backup(bucket, hours_ago=24, verified=True)
    schema = StoredObject(key=manifest.prefix + "schema.sql.zst", size=10, sha256="0" * 64, raw_size=20)
    manifest = manifest.model_copy(update={"schema_sql": schema})
    aws.client("s3").put_object(Bucket=bucket, Key=schema.key, Body=b"schema")
    catalog.write_manifest(bucket, manifest)
    assert catalog.find_backup(bucket, "latest").manifest.id == manifest.id

    aws.client("s3").delete_object(Bucket=bucket, Key=manifest.prefix + gone)

    assert [e.manifest.id for e in catalog.list_backups(bucket)] == [older.id]
    assert catalog.find_backup(bucket, "latest", database=DATABASE).manifest.id == older.id
    with pytest.raises(BackupNotFound, match="not found"):
        catalog.find_backup(bucket, manifest.id)
    with pytest.raises(BackupNotFound, match="not found"):
        catalog.load_backup(bucket, "nightly", DATABASE, manifest.id)  # without a listing: looked up
