"""Streaming to and from S3 with bounded memory.

MultipartUpload takes bytes as they come, hashes them, and uploads fixed-size parts from a background
thread through a short queue, so compression and upload overlap and memory stays at a few parts (three part
buffers at most, taken as needed from a PartBuffers that uploads after one another can share). That thread
also creates the upload (and the S3 client), so the producer starts at once. Every part carries a CRC32 that
S3 checks on arrival, and the completed object keeps the composite of those CRC32s: S3 itself refuses a part
damaged on the way. On any failure the upload is aborted: S3 never holds a completed object that was not
finished on purpose.

An ObjectLock given to an upload or a put is written with the object (S3 Object Lock: the version cannot be
deleted or overwritten until it ends; compliance mode not even by the account's root): a multipart upload's on
CreateMultipartUpload, which S3 gives the completed version (the local stack teaches moto 5.2 the same:
local_stack/s3_object_lock.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from dbops import aws
from dbops.aws import s3listing
from dbops.aws.part_buffers import PartBuffers
from dbops.errors import StorageError

PART_SIZE = 8 * 1024 * 1024
MAX_PARTS = 10_000  # S3's limit per upload
BUFFERS = 3  # part buffers an upload holds at most: one filling, one queued, one uploading
CHECKSUM = "CRC32"
_STOP = object()
T = TypeVar("T")


@dataclass(frozen=True)
class ObjectLock:
    """An object version's S3 Object Lock retention: `mode` GOVERNANCE or COMPLIANCE, until `until`."""

    mode: str
    until: datetime

    def put_args(self) -> dict[str, Any]:
        return {"ObjectLockMode": self.mode.upper(), "ObjectLockRetainUntilDate": self.until}

    def retention(self) -> dict[str, Any]:
        return {"Mode": self.mode.upper(), "RetainUntilDate": self.until}


class MultipartUpload:
    def __init__(
        self,
        bucket: str,
        key: str,
        *,
        part_size: int = PART_SIZE,
        lock: ObjectLock | None = None,
        buffers: PartBuffers | None = None,
    ) -> None:
        self.bucket = bucket
        self.key = key
        self.part_size = part_size
        self.lock = lock
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._shared = buffers is not None
        self._buffers = buffers or PartBuffers()
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()  # buffers back from the upload thread
        self._taken = 1  # at most BUFFERS, taken as the parts need them
        self._part = self._buffers.take(part_size)
        self._filled = 0
        self._parts: list[dict[str, Any]] = []
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=1)  # one part queued, one uploading
        self._error: BaseException | None = None
        self._upload_id: str | None = None
        self._worker: threading.Thread | None = None
        self._completed = False

    def __enter__(self) -> MultipartUpload:
        self._worker = threading.Thread(target=self._upload_parts, name="s3-part-uploader", daemon=True)
        self._worker.start()
        return self

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._raise_if_failed()
        self.sha256.update(data)
        self.size += len(data)
        view = memoryview(data)
        offset = 0
        while offset < len(view):
            take = min(len(view) - offset, self.part_size - self._filled)
            self._part[self._filled : self._filled + take] = view[offset : offset + take]
            self._filled += take
            offset += take
            if self._filled == self.part_size:
                # the buffer is the upload thread's once queued: not also this side's to give back on a failure
                part, self._part, self._filled = self._part, bytearray(), 0
                self._enqueue(part)
                self._part = self._next_buffer()

    def _next_buffer(self) -> bytearray:
        """One the upload thread gave back, or another while fewer than BUFFERS are taken, or wait for one."""
        with contextlib.suppress(queue.Empty):
            return self._free.get_nowait()
        if self._taken < BUFFERS:
            self._taken += 1
            return self._buffers.take(self.part_size)
        return self._unless_failed(lambda: self._free.get(timeout=0.5))

    def _release(self) -> None:
        """Every buffer back to the shared ones (the upload thread has ended)."""
        buffers = [self._part]
        with contextlib.suppress(queue.Empty):
            while True:
                buffers.append(self._free.get_nowait())
        for buffer in buffers:
            if len(buffer) == self.part_size:
                self._buffers.give(buffer)
        self._part = bytearray()

    def _enqueue(self, part: bytes | bytearray) -> None:
        self._unless_failed(lambda: self._queue.put(part, timeout=0.5))

    def _unless_failed(self, wait: Callable[[], T]) -> T:
        """Repeat `wait` (a queue operation with a timeout) until it succeeds, raising once the upload failed."""
        while True:
            self._raise_if_failed()
            try:
                return wait()
            except (queue.Empty, queue.Full):
                continue

    def _raise_if_failed(self) -> None:
        if isinstance(self._error, StorageError):
            raise self._error
        if self._error is not None:
            raise StorageError(f"upload of s3://{self.bucket}/{self.key} failed: {self._error}")

    def _start(self) -> None:
        try:
            lock_args = self.lock.put_args() if self.lock else {}
            resp = aws.client("s3").create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ChecksumAlgorithm=CHECKSUM, **lock_args
            )
            self._upload_id = resp["UploadId"]
        except Exception as exc:
            self._error = StorageError(f"cannot start upload of s3://{self.bucket}/{self.key}: {exc}")

    def _upload_parts(self) -> None:
        self._start()
        number = 0
        while True:
            part = self._queue.get()
            if part is _STOP:
                return
            if self._error is None:  # after a failure, only drain: the producer never blocks on a dead worker
                number += 1
                self._upload_part(number, part)
            if len(part) == self.part_size:  # not the last part, shorter
                self._free.put(part)

    def _upload_part(self, number: int, part: bytes | bytearray) -> None:
        try:
            resp = aws.client("s3").upload_part(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=part,
                ChecksumAlgorithm=CHECKSUM,
            )
            self._parts.append(
                {"PartNumber": number, "ETag": resp["ETag"], f"Checksum{CHECKSUM}": resp[f"Checksum{CHECKSUM}"]}
            )
        except Exception as exc:  # any failure must reach the producer thread
            self._error = exc

    def _finish_worker(self) -> None:
        if self._worker is not None and self._worker.is_alive():
            self._queue.put(_STOP)
            self._worker.join()

    def complete(self) -> str:
        """Flush the last part and complete the upload; returns the object's sha256 (hex)."""
        if self._filled or self.size == 0:  # the last part, shorter; an empty object still needs one
            if self._shared:  # a copy: the buffer serves the next upload
                last: bytes | bytearray = self._part[: self._filled]
            else:  # the buffer itself, cut short: it is not used again
                last, self._part = self._part, bytearray()
                del last[self._filled :]
            self._filled = 0
            self._enqueue(last)
        self._finish_worker()
        self._release()
        self._raise_if_failed()
        try:
            aws.client("s3").complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},  # in order: one thread uploads them one by one
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot complete upload of s3://{self.bucket}/{self.key}: {exc}") from None
        self._completed = True
        return self.sha256.hexdigest()

    def abort(self) -> None:
        if self._error is None:
            self._error = RuntimeError("aborted")
        self._finish_worker()
        self._release()
        if self._upload_id is None:
            return
        try:
            aws.client("s3").abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
        except (BotoCoreError, ClientError):
            pass  # the bucket's lifecycle rule aborts incomplete uploads after a day
        self._upload_id = None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._completed:
            self.abort()  # also when the upload thread is still creating the upload: it is aborted once created


def part_size_for(expected_bytes: int) -> int:
    """8 MB parts, larger when the object could otherwise need more than S3's 10,000 parts."""
    return max(PART_SIZE, -(-expected_bytes // (MAX_PARTS - 100)))


def iter_object(bucket: str, key: str, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
    try:
        body = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"cannot read s3://{bucket}/{key}: {exc}") from None
    try:
        yield from body.iter_chunks(chunk_size)
    finally:
        body.close()


def put_json(bucket: str, key: str, body: str, lock: ObjectLock | None = None) -> None:
    put_text(bucket, key, body, "application/json", lock)


def put_text(
    bucket: str,
    key: str,
    body: str,
    content_type: str = "text/plain; charset=utf-8",
    lock: ObjectLock | None = None,
) -> None:
    lock_args = lock.put_args() if lock else {}
    try:
        aws.client("s3").put_object(Bucket=bucket, Key=key, Body=body.encode(), ContentType=content_type, **lock_args)
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"cannot write s3://{bucket}/{key}: {exc}") from None


def get_text(bucket: str, key: str) -> str | None:
    """The object's text, or None when it does not exist."""
    body = _unless_missing(
        lambda: aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read(), "read", bucket, key
    )
    return None if body is None else str(body.decode())


def list_keys(bucket: str, prefix: str) -> Iterator[str]:
    return (key for key, _ in list_objects(bucket, prefix))


def abort_uploads(bucket: str, prefix: str) -> list[str]:
    """Abort every multipart upload still open under `prefix` (one whose creation reached S3 but whose answer did
    not, say); returns their keys."""
    aborted = []
    try:
        s3 = aws.client("s3")
        for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
            for upload in page.get("Uploads", []):
                s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                aborted.append(upload["Key"])
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"cannot abort the uploads under s3://{bucket}/{prefix}: {exc}") from None
    return aborted


def delete_object(bucket: str, key: str) -> None:
    try:
        aws.client("s3").delete_object(Bucket=bucket, Key=key)
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"cannot delete s3://{bucket}/{key}: {exc}") from None


def list_objects(bucket: str, prefix: str) -> Iterator[tuple[str, datetime]]:
    """Each object's key and when it was written (S3's LastModified, which lifecycle ages count from)."""
    for page in s3listing.pages(bucket, prefix):
        yield from ((item["Key"], item["LastModified"]) for item in page.get("Contents", []))


def list_folders(bucket: str, prefix: str) -> Iterator[str]:
    """The folders right under `prefix` (S3's common prefixes at the next /), none of the objects in them listed."""
    for page in s3listing.pages(bucket, prefix, Delimiter="/"):
        yield from (folder["Prefix"] for folder in page.get("CommonPrefixes", []))


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound")


def _unless_missing(call: Callable[[], Any], doing: str, bucket: str, key: str) -> Any:
    """call()'s result, or None when the object does not exist; any other failure a StorageError."""
    try:
        return call()
    except ClientError as exc:
        if _missing(exc):
            return None
        raise StorageError(f"cannot {doing} s3://{bucket}/{key}: {exc}") from None
    except BotoCoreError as exc:
        raise StorageError(f"cannot {doing} s3://{bucket}/{key}: {exc}") from None


def exists(bucket: str, key: str) -> bool:
    return (
        _unless_missing(lambda: aws.client("s3").head_object(Bucket=bucket, Key=key), "read", bucket, key) is not None
    )


def get_tags(bucket: str, key: str) -> dict[str, str] | None:
    """The object's tags, or None when it does not exist."""
    found = _unless_missing(
        lambda: aws.client("s3").get_object_tagging(Bucket=bucket, Key=key), "read the tags of", bucket, key
    )
    return None if found is None else {t["Key"]: t["Value"] for t in found["TagSet"]}


def put_tags(bucket: str, key: str, tags: dict[str, str]) -> bool:
    """Replace the object's tag set (its current version); False when the object does not exist."""
    tagging = {"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]}
    put = _unless_missing(
        lambda: aws.client("s3").put_object_tagging(Bucket=bucket, Key=key, Tagging=tagging), "tag", bucket, key
    )
    return put is not None


def get_lock(bucket: str, key: str) -> ObjectLock | None:
    """The current version's Object Lock retention (HeadObject: moto has no GetObjectRetention), None when it has
    none or the object does not exist."""
    head = _unless_missing(lambda: aws.client("s3").head_object(Bucket=bucket, Key=key), "read", bucket, key)
    if not head or not head.get("ObjectLockMode"):
        return None
    return ObjectLock(mode=str(head["ObjectLockMode"]), until=head["ObjectLockRetainUntilDate"])


def extend_lock(bucket: str, key: str, until: datetime) -> bool:
    """Lengthen the current version's retention to `until`, in its own mode (S3 lets a retention grow, never
    shrink); False when it is unlocked, gone, or already locked that long."""
    lock = get_lock(bucket, key)
    if lock is None or lock.until >= until:
        return False
    retention = ObjectLock(mode=lock.mode, until=until).retention()
    return (
        _unless_missing(
            lambda: aws.client("s3").put_object_retention(Bucket=bucket, Key=key, Retention=retention),
            "extend the lock of",
            bucket,
            key,
        )
        is not None
    )


def lifecycle_rules(bucket: str) -> list[dict[str, Any]] | None:
    """The bucket's lifecycle rules as S3 returns them; None when it has none or they cannot be read."""
    try:
        return list(aws.client("s3").get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"])
    except (BotoCoreError, ClientError):
        return None
