"""`dbops verify` reads the whole object back: a truncated or altered object fails and is recorded."""

from __future__ import annotations

import pytest

from dbops import aws
from dbops.backup import catalog
from dbops.backup.run import BackupRequest, run_backup
from dbops.backup.verify import verify_backup
from dbops.errors import BackupNotFound, VerificationFailed
from dbops.postgres.connection import ConnectionSpec


@pytest.fixture
def backup(sample_db: ConnectionSpec, bucket: str) -> catalog.BackupManifest:
    return run_backup(sample_db, BackupRequest(database="db", bucket=bucket))


def _replace_object(bucket: str, key: str, body: bytes) -> None:
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=body)


def _object(bucket: str, key: str) -> bytes:
    return bytes(aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def test_intact_backup_verifies_and_is_recorded(backup: catalog.BackupManifest, bucket: str) -> None:
    result = verify_backup(bucket, backup.id)
    assert result.ok
    assert catalog.find_backup(bucket, backup.id).verified is True


def test_truncated_object_fails_verification(backup: catalog.BackupManifest, bucket: str) -> None:
    body = _object(bucket, backup.dump.key)
    _replace_object(bucket, backup.dump.key, body[: len(body) // 2])

    with pytest.raises(VerificationFailed, match="size"):
        verify_backup(bucket, "latest")
    assert catalog.find_backup(bucket, backup.id).verified is False


def test_altered_object_of_the_same_size_fails_verification(backup: catalog.BackupManifest, bucket: str) -> None:
    body = bytearray(_object(bucket, backup.dump.key))
    body[len(body) // 2] ^= 0xFF
    _replace_object(bucket, backup.dump.key, bytes(body))

    with pytest.raises(VerificationFailed, match="sha256"):
        verify_backup(bucket, backup.id)


def test_archive_cut_short_but_matching_its_manifest_fails_the_full_read(
    backup: catalog.BackupManifest, bucket: str
) -> None:
    """A dump cut in half, recompressed and its manifest rewritten to match: only a full read catches it."""
    import hashlib

    import zstandard

    raw = zstandard.ZstdDecompressor().decompressobj().decompress(_object(bucket, backup.dump.key))
    cut = zstandard.ZstdCompressor().compress(raw[: len(raw) // 2])
    _replace_object(bucket, backup.dump.key, cut)
    forged = backup.model_copy(
        update={"dump": backup.dump.model_copy(update={"size": len(cut), "sha256": hashlib.sha256(cut).hexdigest()})}
    )
    catalog.write_manifest(bucket, forged)

    with pytest.raises(VerificationFailed, match="pg_restore could not read the whole archive"):
        verify_backup(bucket, backup.id)


def test_unknown_backup_id_is_a_clear_error(bucket: str) -> None:
    with pytest.raises(BackupNotFound, match="backup '20200101T000000Z-000000' not found"):
        verify_backup(bucket, "20200101T000000Z-000000")
