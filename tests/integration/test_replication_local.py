"""The second copy in another region, on the moto server: moto stores the replication rule but does not run it, so
local_stack.replication does what S3 would. A real backup of a real database, written to a locked source bucket,
appears in the DR region's replica with the same bytes (sha256), tags, metadata and lock; retention's later tags
follow; a delete in the source and anything outside backups/ stay out of the replica."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from dbops import aws
from dbops.aws import s3stream
from dbops.backup import catalog
from dbops.backup.retention import release_for_expiry
from dbops.backup.run import BackupRequest, run_backup
from dbops.backup.verify import verify_backup
from dbops.config.backup import BackupLock, RetentionClasses
from dbops.postgres.connection import ConnectionSpec
from local_stack.aws import LocalAws
from local_stack.replication import LocalReplication, configure_replication

pytestmark = pytest.mark.any_server_version  # the flow, not the server: PostgreSQL 18 alone

DATABASE = "ledger"
DR_REGION = "us-west-2"
LOCK = BackupLock(mode="compliance", days=30)


@pytest.fixture
def buckets(local_aws: LocalAws) -> tuple[str, str, LocalReplication]:
    """The backup bucket as the stack makes it with backup_lock, its replica in the DR region with the rule, and
    the stand-in running the rule."""
    source, replica = f"dbops-src-{uuid.uuid4().hex[:12]}", f"dbops-dr-{uuid.uuid4().hex[:12]}"
    aws.client("s3").create_bucket(Bucket=source, ObjectLockEnabledForBucket=True)
    return source, replica, configure_replication(source, replica, DR_REGION)


def _read(bucket: str, key: str) -> bytes:
    return aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]


def _keys(manifest: catalog.BackupManifest) -> list[str]:
    stored = [o.key for o in catalog.stored_objects(manifest)]
    return [*stored, manifest.prefix + catalog.MANIFEST, manifest.prefix + catalog.VERIFICATION]


def test_a_backup_appears_in_the_replica_with_its_bytes_tags_metadata_and_lock(
    sample_db: ConnectionSpec, buckets: tuple[str, str, LocalReplication]
) -> None:
    source, replica, replication = buckets
    s3 = aws.client("s3")
    assert s3.get_bucket_location(Bucket=replica)["LocationConstraint"] == DR_REGION
    first = run_backup(sample_db, BackupRequest(database=DATABASE, bucket=source, kind="nightly", lock=LOCK))
    second = run_backup(sample_db, BackupRequest(database=DATABASE, bucket=source, kind="nightly", lock=LOCK))
    for manifest in (first, second):
        assert verify_backup(source, manifest.id).ok
    copied = replication.run()
    assert sorted(copied) == sorted(_keys(first) + _keys(second))

    # retention tags the first one monthly afterwards: the tags follow to the replica
    release_for_expiry(source, "nightly", DATABASE, 1, classes=RetentionClasses(weekly=90, monthly=365))
    assert replication.run() == []
    for manifest in (first, second):
        for key in _keys(manifest):
            body = _read(replica, key)
            assert hashlib.sha256(body).hexdigest() == hashlib.sha256(_read(source, key)).hexdigest(), key
            assert s3stream.get_tags(replica, key) == s3stream.get_tags(source, key), key
            head, original = s3.head_object(Bucket=replica, Key=key), s3.head_object(Bucket=source, Key=key)
            assert head["Metadata"] == original["Metadata"], key
            assert head.get("ObjectLockMode") == original.get("ObjectLockMode"), key
        assert hashlib.sha256(_read(replica, manifest.dump.key)).hexdigest() == manifest.dump.sha256
    assert s3stream.get_tags(replica, first.dump.key) == {"dbops-expirable": "true", "dbops-class": "monthly"}
    # the replica is a backup dbops can read: its catalog lists both, verified
    listed = catalog.list_backups(replica, database=DATABASE)
    assert {e.manifest.id for e in listed} == {first.id, second.id} and all(e.verified for e in listed)


def test_deletes_and_objects_outside_backups_stay_out_of_the_replica(
    sample_db: ConnectionSpec, buckets: tuple[str, str, LocalReplication]
) -> None:
    source, replica, replication = buckets
    s3 = aws.client("s3")
    manifest = run_backup(sample_db, BackupRequest(database=DATABASE, bucket=source, kind="nightly", lock=LOCK))
    s3.put_object(Bucket=source, Key="health/ledger/counters.json", Body=b"{}")
    replication.run()
    key = manifest.prefix + catalog.MANIFEST
    s3.delete_object(Bucket=source, Key=key)  # a delete marker over the locked version
    assert replication.run() == []
    assert (
        hashlib.sha256(_read(replica, key)).hexdigest()
        == hashlib.sha256(
            s3.get_object(Bucket=source, Key=key, VersionId=_versions(source, key)[0])["Body"].read()
        ).hexdigest()
    )
    listed = s3.list_object_versions(Bucket=replica)
    assert "DeleteMarkers" not in listed or listed["DeleteMarkers"] == []
    assert all(v["Key"].startswith("backups/") for v in listed["Versions"])


def _versions(bucket: str, key: str) -> list[str]:
    listed = aws.client("s3").list_object_versions(Bucket=bucket, Prefix=key)
    return [v["VersionId"] for v in listed.get("Versions", []) if v["Key"] == key]
