"""The backup bucket's lifecycle expiry, simulated over days: moto stores a lifecycle configuration but never
runs it.

The rules are the stack's own (infra.retention_settings.RetentionDays.backup_expiries, which infra.storage turns
into the bucket's CDK lifecycle rules and tests/infra/test_storage.py checks in the synthesized template), put on the
moto bucket in the S3 API's shape and read back from it. An object expires as S3 expires it: its tags match
the rule's filter and it is older than the rule's days (S3 counts from its creation, rounded up to the next
midnight UTC: written on day d, it goes at the start of day d + days + 1).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dbops import aws
from infra.retention_settings import RetentionDays


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
    """`observe(day)` after the day's writes; `expire(day)` at the day's first midnight."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self.rules = aws.client("s3").get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        self.written: dict[tuple[str, datetime], int] = {}  # (key, LastModified): the day it was written

    def _objects(self) -> list[tuple[str, datetime]]:
        pages = aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return [(o["Key"], o["LastModified"]) for page in pages for o in page.get("Contents", [])]

    def observe(self, day: int) -> None:
        for obj in self._objects():
            self.written.setdefault(obj, day)

    def expire(self, day: int) -> list[str]:
        s3 = aws.client("s3")
        gone = []
        for key, modified in self._objects():
            age = day - self.written[(key, modified)]
            due = [r for r in self.rules if r["Status"] == "Enabled" and age > r.get("Expiration", {}).get("Days", age)]
            if not due:
                continue  # too young for any rule, whatever its tags
            tag_set = s3.get_object_tagging(Bucket=self.bucket, Key=key)["TagSet"]
            tags = {t["Key"]: t["Value"] for t in tag_set}
            if any(_matches(rule["Filter"], key, tags) for rule in due):
                s3.delete_object(Bucket=self.bucket, Key=key)  # versioned: a delete marker, as expiry makes
                gone.append(key)
        return gone
