"""What the catalog reads to find one backup: requests that grow neither with the number of backups in the bucket
nor with the objects of the backup found (a parallel backup of a large database has hundreds). The requests are
counted as the S3 client sends them to the moto server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dbops import aws
from dbops.backup import catalog
from dbops.backup.parallel.run import run_parallel_backup
from dbops.backup.run import BackupRequest
from dbops.errors import BackupNotFound
from dbops.postgres.connection import ConnectionSpec
from tests.integration.lifecycle_helpers import write_catalog_backup

DATABASE = "app"
pytestmark = pytest.mark.any_server_version  # the requests, not the server: PostgreSQL 18 alone


@contextmanager
def s3_requests() -> Iterator[list[tuple[str, str]]]:
    """Each S3 request sent meanwhile: (operation, its Prefix or Key)."""
    sent: list[tuple[str, str]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        sent.append((model.name, params.get("Prefix") or params.get("Key") or ""))

    events = aws.client("s3").meta.events
    events.register("provide-client-params.s3", record, unique_id="test-catalog-reads")
    try:
        yield sent
    finally:
        events.unregister("provide-client-params.s3", unique_id="test-catalog-reads")


def _many_objects_backup(spec: ConnectionSpec, bucket: str) -> catalog.BackupManifest:
    """A real parallel backup split into many objects (every table a COPY job, 64 kB ranges)."""
    request = BackupRequest(database=DATABASE, bucket=bucket, kind="manual")
    manifest = run_parallel_backup(spec, request, workers=2, range_bytes=64 * 1024, small_bytes=0)
    assert len(manifest.data) >= 10
    return manifest


def test_a_backup_found_by_id_lists_only_its_own_prefix_and_heads_none_of_its_objects(
    sample_db: ConnectionSpec, bucket: str
) -> None:
    now = datetime.now(UTC)
    others = [write_catalog_backup(bucket, DATABASE, now - timedelta(days=d), True) for d in range(1, 8)]
    manifest = _many_objects_backup(sample_db, bucket)

    with s3_requests() as sent:
        entry = catalog.find_backup(bucket, manifest.id, database=DATABASE)

    assert entry.manifest == manifest
    listed = [prefix for operation, prefix in sent if operation == "ListObjectsV2"]
    assert sorted(listed) == sorted(catalog.backup_prefix(k, DATABASE, manifest.id) for k in catalog.BACKUP_KINDS)
    assert [op for op, _ in sent if op not in ("ListObjectsV2", "GetObject")] == []  # no HEAD per object
    assert [key for op, key in sent if op == "GetObject"] == [manifest.prefix + catalog.MANIFEST]
    assert all(o.prefix not in key for o in others for _, key in sent)

    with s3_requests() as sent:  # by kind and id, whole
        assert catalog.load_backup(bucket, "manual", DATABASE, manifest.id).manifest == manifest
    assert [op for op, _ in sent] == ["ListObjectsV2", "GetObject"]
    with s3_requests() as sent:  # its manifest alone, as Stage and Check read the backup Validate chose
        assert catalog.read_manifest(bucket, "manual", DATABASE, manifest.id) == manifest
    assert sent == [("GetObject", manifest.prefix + catalog.MANIFEST)]


def test_a_backup_whose_object_is_gone_is_not_found_by_id(sample_db: ConnectionSpec, bucket: str) -> None:
    manifest = _many_objects_backup(sample_db, bucket)
    aws.client("s3").delete_object(Bucket=bucket, Key=manifest.data[-1].key)

    with pytest.raises(BackupNotFound, match=manifest.id):  # it could not be restored
        catalog.find_backup(bucket, manifest.id, database=DATABASE)


def test_backups_since_a_moment_read_only_the_backups_begun_since(bucket: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    old = [write_catalog_backup(bucket, DATABASE, now - timedelta(hours=h), True, kind="prerestore") for h in (5, 3)]
    new = [write_catalog_backup(bucket, DATABASE, now + timedelta(seconds=s), None, kind="prerestore") for s in (0, 9)]

    with s3_requests() as sent:
        found = catalog.backups_since(bucket, "prerestore", DATABASE, now)

    assert sorted(e.manifest.id for e in found) == sorted(m.id for m in new)
    read = [key for op, key in sent if op == "GetObject"]
    assert sorted(read) == sorted(m.prefix + catalog.MANIFEST for m in new)
    assert not any(m.prefix in key for m in old for _, key in sent)
