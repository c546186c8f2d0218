"""Multipart uploads against the moto server: exactly the parts written, and nothing left on failure."""

from __future__ import annotations

import base64
import binascii
import hashlib
import random
import threading
from typing import Any

import pytest

from dbops import aws
from dbops.aws import s3stream
from dbops.aws.part_buffers import PartBuffers
from dbops.errors import StorageError

MB = 1024 * 1024


def _composite_crc32(data: bytes, part_size: int) -> str:
    """S3's checksum of a multipart object: the CRC32 of its parts' CRC32s (S3 adds '-' and the part count)."""
    parts = [data[i : i + part_size] for i in range(0, len(data), part_size)] or [b""]
    crcs = b"".join(binascii.crc32(p).to_bytes(4, "big") for p in parts)
    return base64.b64encode(binascii.crc32(crcs).to_bytes(4, "big")).decode()


def _etag_parts(bucket: str, key: str) -> int:
    etag = aws.client("s3").head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    return int(etag.rsplit("-", 1)[1])


# 6 parts: each of the upload's three part buffers is filled and sent more than once
@pytest.mark.parametrize(("size", "parts"), [(0, 1), (5 * MB, 1), (10 * MB, 2), (10 * MB + 1, 3), (26 * MB + 3, 6)])
def test_upload_holds_exactly_the_bytes_written_in_the_expected_parts(bucket: str, size: int, parts: int) -> None:
    data = random.Random(size).randbytes(size)  # no two parts alike
    with s3stream.MultipartUpload(bucket, "obj", part_size=5 * MB) as upload:
        for start in range(0, size, 777_777):
            upload.write(data[start : start + 777_777])
        digest = upload.complete()

    body = aws.client("s3").get_object(Bucket=bucket, Key="obj")["Body"].read()
    assert body == data
    assert digest == hashlib.sha256(data).hexdigest()
    assert _etag_parts(bucket, "obj") == parts  # a full last part adds no empty one
    head = aws.client("s3").head_object(Bucket=bucket, Key="obj", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"].split("-")[0] == _composite_crc32(data, 5 * MB)  # S3 checked every part's CRC32


@pytest.mark.parametrize("written", [0, 6 * MB])
def test_leaving_without_complete_aborts_the_upload(bucket: str, written: int) -> None:
    # with nothing written, the upload thread is typically still creating the upload when the producer fails
    with pytest.raises(RuntimeError), s3stream.MultipartUpload(bucket, "obj", part_size=5 * MB) as upload:
        upload.write(b"a" * written)
        raise RuntimeError("the producer failed")
    assert not [t for t in threading.enumerate() if t.name == "s3-part-uploader"]  # nothing still running
    s3 = aws.client("s3")
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_missing_bucket_is_a_storage_error(local_aws: object) -> None:
    upload = s3stream.MultipartUpload("dbops-no-such-bucket", "obj", part_size=5 * MB)
    expected = r"cannot start upload of s3://dbops-no-such-bucket/obj: .*NoSuchBucket"
    with pytest.raises(StorageError, match=expected), upload:
        upload.write(b"a" * (12 * MB))  # the producer learns of it by its next part at the latest
        upload.complete()


def test_each_part_carries_a_crc32_and_is_not_hashed_again_to_be_signed(bucket: str) -> None:
    sent: list[dict[str, str]] = []

    def record(request: Any, **_: Any) -> None:
        sent.append({k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()})

    events = aws.client("s3").meta.events
    events.register("before-send.s3.UploadPart", record)
    try:
        with s3stream.MultipartUpload(bucket, "obj", part_size=5 * MB) as upload:
            upload.write(b"p" * (6 * MB))
            upload.complete()
    finally:
        events.unregister("before-send.s3.UploadPart", record)
    assert len(sent) == 2
    for headers in sent:
        assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
        assert headers["x-amz-checksum-crc32"]


def test_uploads_sharing_part_buffers_hold_their_own_bytes_and_reuse_the_buffers(bucket: str) -> None:
    """One after another, as a parallel backup's objects: each object exactly its bytes (a buffer handed on while
    still in use would mix them), and every upload after the first uses the first one's three buffers, no new one;
    a failed upload hands each of its buffers back once."""
    buffers = PartBuffers()
    first: list[bytearray] = []
    for n, size in enumerate([16 * MB + 5, 3 * MB, 11 * MB, 0]):
        data = random.Random(n).randbytes(size)
        with s3stream.MultipartUpload(bucket, f"obj{n}", part_size=5 * MB, buffers=buffers) as upload:
            for start in range(0, size, 1_000_003):
                upload.write(data[start : start + 1_000_003])
            upload.complete()
        assert aws.client("s3").get_object(Bucket=bucket, Key=f"obj{n}")["Body"].read() == data
        idle = buffers._idle[5 * MB]
        first = first or list(idle)
        assert len(first) == 3 and {id(b) for b in idle} == {id(b) for b in first}
    with pytest.raises(RuntimeError), s3stream.MultipartUpload(bucket, "obj", part_size=5 * MB, buffers=buffers) as up:
        up.write(b"x" * (12 * MB))
        raise RuntimeError("the producer failed")
    assert sorted(id(b) for b in buffers._idle[5 * MB]) == sorted(id(b) for b in first)
