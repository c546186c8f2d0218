"""Listing the bucket page by page, and a listing dated by S3's own clock (dbops.backup.retention_ledger trusts what
it saw of an object only when the listing came after the second that object was written in)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from dbops import aws
from dbops.errors import BucketNotFound, StorageError


def pages(bucket: str, prefix: str, **extra: str) -> Iterator[dict[str, Any]]:
    """ListObjectsV2's answers under `prefix` (`extra`: more of its parameters, a Delimiter say); a missing bucket
    is BucketNotFound, any other failure StorageError."""
    try:
        yield from aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, **extra)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
            raise BucketNotFound(f"bucket {bucket} does not exist") from None
        raise StorageError(f"cannot list s3://{bucket}/{prefix}: {exc}") from None
    except BotoCoreError as exc:
        raise StorageError(f"cannot list s3://{bucket}/{prefix}: {exc}") from None


def list_objects_dated(bucket: str, prefix: str) -> tuple[dict[str, datetime], datetime | None]:
    """Each object's key -> LastModified, and S3's clock when the listing began (its first answer's Date header,
    None when it has none)."""
    objects: dict[str, datetime] = {}
    listed_at = None
    for page in pages(bucket, prefix):
        if listed_at is None:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                listed_at = parsedate_to_datetime(page["ResponseMetadata"]["HTTPHeaders"]["date"])
        objects.update((item["Key"], item["LastModified"]) for item in page.get("Contents", []))
    return objects, listed_at
