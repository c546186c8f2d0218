"""The backup bucket's lifecycle expiry, simulated over days: moto stores a lifecycle configuration but never
runs it.

The rules are the stack's own (infra.retention_settings.RetentionDays.backup_expiries, which infra.storage turns
into the bucket's CDK lifecycle rules and tests/infra/test_storage.py checks in the synthesized template), put on the
moto bucket in the S3 API's shape and read back from it. An object expires as S3 expires it: its tags match
the rule's filter and it is older than the rule's days (S3 counts from its creation, rounded up to the next
midnight UTC: written on day d, it goes at the start of day d + days + 1).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import FakeBucket, FakeDeleteMarker, S3Backend, s3_backends

from dbops import aws
from dbops.backup import catalog
from dbops.backup.catalog import BackupManifest, StoredObject, TableStat, Verification
from dbops.backup.retention import release_for_expiry
from dbops.backup.verify import verify_backup
from dbops.errors import BackupError
from infra.retention_settings import RetentionDays


def write_catalog_backup(
    bucket: str, database: str, finished: datetime, verified: bool | None, kind: str = "nightly"
) -> BackupManifest:
    """A committed backup as the catalog knows it, without a pg_dump: the object its manifest names, the manifest
    and (verified not None) its verification record."""
    backup_id = catalog.new_backup_id(finished)
    prefix = catalog.backup_prefix(kind, database, backup_id)
    manifest = BackupManifest(
        id=backup_id,
        database=database,
        kind=kind,
        dump=StoredObject(key=prefix + "database.dump.zst", size=1000, sha256="0" * 64, raw_size=5000),
        pg_dump_version="18.1",
        server_version="18.1",
        server_version_num=180001,
        started_at=finished - timedelta(minutes=2),
        finished_at=finished,
        duration_seconds=120.0,
        tables=[TableStat(schema_name="public", name="teams", rows=10, bytes=8192)],
    )
    aws.client("s3").put_object(Bucket=bucket, Key=manifest.dump.key, Body=b"archive")
    catalog.write_manifest(bucket, manifest)
    if verified is not None:
        result = Verification(backup_id=backup_id, ok=verified, checked_at=finished, seconds=3.0, detail="test")
        catalog.record_verification(bucket, manifest, result)
    return manifest


def configure_like_the_stack(bucket: str, retention: RetentionDays) -> None:
    """The backup expiry rules of the stack's bucket, on a moto bucket (versioned, as the stack's is)."""
    s3 = aws.client("s3")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    rules = []
    for expiry in retention.backup_expiries():
        tags = [{"Key": k, "Value": v} for k, v in expiry.tags.items()]
        rule_filter = {"And": {"Prefix": expiry.prefix, "Tags": tags}} if tags else {"Prefix": expiry.prefix}
        rules.append(
            {
                "ID": expiry.rule_id,
                "Status": "Enabled",
                "Filter": rule_filter,
                "Expiration": {"Days": expiry.days},
            }
        )
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})


def _matches(rule_filter: dict[str, Any], key: str, tags: dict[str, str]) -> bool:
    conditions = rule_filter.get("And", rule_filter)
    wanted = [*conditions.get("Tags", []), *([conditions["Tag"]] if "Tag" in conditions else [])]
    return key.startswith(conditions.get("Prefix", "")) and all(tags.get(t["Key"]) == t["Value"] for t in wanted)


class SimulatedLifecycle:
    """`observe(day)` after the day's writes; `expire(day)` at the day's first midnight.

    With `noncurrent_days`, an expired object's versions are also removed that many days after it expired (the
    bucket's noncurrent-version expiry, and its removal of the delete marker left alone), so a long simulation
    does not list a growing pile of versions; a version S3 may not delete yet (locked) is left, as S3 leaves it."""

    def __init__(self, bucket: str, noncurrent_days: int | None = None) -> None:
        self.bucket = bucket
        self.rules = aws.client("s3").get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        self.written: dict[tuple[str, datetime], int] = {}  # (key, LastModified): the day it was written
        self.noncurrent_days = noncurrent_days
        self.hidden: dict[str, int] = {}  # key -> the day it expired (its versions noncurrent since)

    def _store(self) -> tuple[S3Backend, FakeBucket]:
        """The moto server's own S3 (it runs in this process): the lifecycle runs inside S3, reading its objects and
        tags where they are kept, not through the API (a year of nights would be tens of thousands of requests)."""
        backend: S3Backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        return backend, backend.get_bucket(self.bucket)

    def _objects(self) -> list[tuple[str, datetime]]:
        """The bucket's current objects (key, last modified), as a listing shows them."""
        _, bucket = self._store()
        current = list(bucket.keys.items())
        return [(key, obj.last_modified) for key, obj in current if not isinstance(obj, FakeDeleteMarker)]

    def _tags(self, key: str) -> dict[str, str]:
        backend, bucket = self._store()
        tag_set = backend.get_object_tagging(bucket.keys[key])["Tags"]
        return {t["Key"]: t["Value"] for t in tag_set}

    def observe(self, day: int) -> None:
        for obj in self._objects():
            self.written.setdefault(obj, day)

    def _due(self, day: int, key: str, modified: datetime) -> list[dict[str, Any]]:
        """The enabled rules the object is old enough for and whose prefix it is under (tags checked later)."""
        age = day - self.written[(key, modified)]
        return [
            r
            for r in self.rules
            if r["Status"] == "Enabled"
            and age > r.get("Expiration", {}).get("Days", age)
            and key.startswith(r["Filter"].get("And", r["Filter"]).get("Prefix", ""))
        ]

    def expire(self, day: int) -> list[str]:
        self._remove_noncurrent(day)
        gone = [
            key
            for key, modified in self._objects()
            if (due := self._due(day, key, modified)) and any(_matches(r["Filter"], key, self._tags(key)) for r in due)
        ]
        with ThreadPoolExecutor(max_workers=8) as pool:  # versioned: a delete marker each, as expiry makes
            list(pool.map(lambda key: aws.client("s3").delete_object(Bucket=self.bucket, Key=key), gone))
        self.hidden.update(dict.fromkeys(gone, day))
        return gone

    def _remove_noncurrent(self, day: int) -> None:
        """The versions and delete markers of the keys hidden long enough, read where S3 keeps them and deleted through
        the API with one DeleteObjects for a day's keys (not a listing and deletes per key: a year of nights)."""
        if self.noncurrent_days is None:
            return
        due = {k for k, hidden_on in self.hidden.items() if day - hidden_on > self.noncurrent_days}
        if not due:
            return
        _, bucket = self._store()  # the versions as S3 keeps them (a listing per day would be a year of listings)
        versions: list[dict[str, str]] = []
        markers: list[dict[str, str]] = []
        for key in sorted(due):
            for version in bucket.keys.getlist(key, []):
                entry = {"Key": key, "VersionId": str(version.version_id)}
                (markers if isinstance(version, FakeDeleteMarker) else versions).append(entry)
        # locked: S3's lifecycle cannot remove such a version either until its lock ends; the delete marker stays
        # while a version is under it (tried again the next day)
        left = set(self._delete_versions(versions))
        self._delete_versions([m for m in markers if m["Key"] not in left])
        for key in due - left:
            del self.hidden[key]

    def _delete_versions(self, objects: list[dict[str, str]]) -> list[str]:
        """Delete these versions (1,000 a request, as S3 takes them); returns the keys of those S3 refused."""
        refused = []
        for i in range(0, len(objects), 1000):
            done = aws.client("s3").delete_objects(
                Bucket=self.bucket, Delete={"Objects": objects[i : i + 1000], "Quiet": True}
            )
            refused += [e["Key"] for e in done.get("Errors", [])]
        return refused


def whole(manifest: BackupManifest) -> set[str]:
    """Every object of a single-stream backup: its archive, manifest and verification record."""
    return {manifest.dump.key, manifest.prefix + catalog.MANIFEST, manifest.prefix + catalog.VERIFICATION}


def five_good_nights_then_35_failing(
    lifecycle: SimulatedLifecycle,
    database: str,
    good_night: Callable[[int], BackupManifest],
    failed_night: Callable[[], object],
    keep: int = 3,
) -> tuple[dict[int, BackupManifest], dict[int, set[str]]]:
    """Forty nights: a verified backup on each of the first 5, then 35 whose backup fails (wrong password), the
    retention pass every night and the lifecycle each midnight: (the backups by night, the keys expired by night)."""
    backups: dict[int, BackupManifest] = {}
    expired_on: dict[int, set[str]] = {}
    for day in range(1, 41):
        expired_on[day] = set(lifecycle.expire(day))
        if day <= 5:
            backups[day] = good_night(day)
            assert verify_backup(lifecycle.bucket, backups[day].id).ok
        else:
            with pytest.raises(BackupError, match="password authentication failed"):
                failed_night()
        # every night, after a failure too: it only ever tags, so running it more often changes nothing
        release_for_expiry(lifecycle.bucket, "nightly", database, keep)
        lifecycle.observe(day)
    return backups, expired_on
