"""S3 replication on the moto server, which stores a bucket's replication configuration but does not run it.

`configure_replication` gives a local backup bucket what the stack gives the deployed one (infra/replication.py):
a replica bucket in the DR region (versioned, Object Lock like the source) and the rule `backups-to-dr`.
`LocalReplication.run()` then does what S3 would have done since the last run, reading that stored rule: every new
object version under the rule's prefix is copied to the destination bucket with its user metadata, content type,
tags, checksum algorithm and Object Lock retention (and tag changes on versions already copied are carried over);
delete markers are not replicated unless the rule says so, and nothing is ever deleted in the replica.
What it cannot mimic: a replica keeps the source's version id in S3 (here it gets its own), and the replication
status headers (PENDING/COMPLETED/REPLICA) are not set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from botocore.exceptions import ClientError

from dbops import aws
from dbops.contract import BACKUPS_PREFIX
from infra.replication_settings import RULE_ID

ROLE_ARN = "arn:aws:iam::123456789012:role/dbops-replication"  # moto does not assume it


def configure_replication(source: str, destination: str, region: str) -> LocalReplication:
    """Create `destination` in `region` like the DR stack's bucket, store the stack's rule on `source`, and return
    the stand-in that runs it."""
    s3 = aws.client("s3")
    locked = _object_lock_enabled(source)
    s3.create_bucket(
        Bucket=destination,
        CreateBucketConfiguration={"LocationConstraint": region},
        ObjectLockEnabledForBucket=locked,
    )
    s3.put_bucket_versioning(Bucket=destination, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_versioning(Bucket=source, VersioningConfiguration={"Status": "Enabled"})
    rule: dict[str, Any] = {
        "ID": RULE_ID,
        "Priority": 0,
        "Status": "Enabled",
        "Filter": {"Prefix": BACKUPS_PREFIX},
        "DeleteMarkerReplication": {"Status": "Disabled"},
        "Destination": {"Bucket": f"arn:aws:s3:::{destination}"},
    }
    s3.put_bucket_replication(Bucket=source, ReplicationConfiguration={"Role": ROLE_ARN, "Rules": [rule]})
    return LocalReplication(source, rules=[rule])


def _object_lock_enabled(bucket: str) -> bool:
    try:
        config = aws.client("s3").get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    except ClientError:
        return False
    return config.get("ObjectLockEnabled") == "Enabled"


@dataclass
class LocalReplication:
    """Replicates `source` by its replication rules, one `run()` at a time: `rules` as written (moto 5.2 stores
    the configuration but returns a rule's `Filter.Prefix` empty), or else the bucket's stored configuration."""

    source: str
    rules: list[dict[str, Any]] | None = None
    # (key, source version) -> (the replica's version, the tags it was given)
    copied: dict[tuple[str, str], tuple[str, dict[str, str]]] = field(default_factory=dict)

    def enabled_rules(self) -> list[dict[str, Any]]:
        if self.rules is None:
            config = aws.client("s3").get_bucket_replication(Bucket=self.source)["ReplicationConfiguration"]
            self.rules = list(config["Rules"])
        return [r for r in self.rules if r.get("Status") == "Enabled"]

    def run(self) -> list[str]:
        """Copy what is new since the last run; returns the keys copied (a key twice: two versions)."""
        done = []
        for rule in self.enabled_rules():
            prefix = rule.get("Filter", {}).get("Prefix", rule.get("Prefix", ""))
            destination = rule["Destination"]["Bucket"].rsplit(":", 1)[-1]
            pages = aws.client("s3").get_paginator("list_object_versions").paginate(Bucket=self.source, Prefix=prefix)
            for page in pages:
                # oldest first, as S3 replicates them in the order written
                for version in sorted(page.get("Versions", []), key=lambda v: v["LastModified"]):
                    if self._replicate(version["Key"], version["VersionId"], destination):
                        done.append(version["Key"])
                # delete markers: only when the rule asks (dbops' rule does not)
                if rule.get("DeleteMarkerReplication", {}).get("Status") == "Enabled":
                    for marker in page.get("DeleteMarkers", []):
                        if marker["IsLatest"] and (marker["Key"], marker["VersionId"]) not in self.copied:
                            deleted = aws.client("s3").delete_object(Bucket=destination, Key=marker["Key"])
                            self.copied[(marker["Key"], marker["VersionId"])] = (deleted.get("VersionId", ""), {})
        return done

    def _replicate(self, key: str, version_id: str, destination: str) -> bool:
        s3 = aws.client("s3")
        tags = {
            t["Key"]: t["Value"]
            for t in s3.get_object_tagging(Bucket=self.source, Key=key, VersionId=version_id)["TagSet"]
        }
        known = self.copied.get((key, version_id))
        if known is not None:
            replica, copied_tags = known
            if copied_tags != tags:  # a tag change on the source reaches the replica (s3:ReplicateTags)
                s3.put_object_tagging(
                    Bucket=destination,
                    Key=key,
                    VersionId=replica,
                    Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]},
                )
                self.copied[(key, version_id)] = (replica, tags)
            return False
        head = s3.head_object(Bucket=self.source, Key=key, VersionId=version_id, ChecksumMode="ENABLED")
        extra: dict[str, Any] = {"Metadata": head.get("Metadata", {})}
        if head.get("ContentType"):
            extra["ContentType"] = head["ContentType"]
        if head.get("ObjectLockMode"):
            extra["ObjectLockMode"] = head["ObjectLockMode"]
            extra["ObjectLockRetainUntilDate"] = head["ObjectLockRetainUntilDate"]
        checksum = next((a for a in ("SHA256", "CRC32C", "CRC32", "SHA1") if head.get(f"Checksum{a}")), None)
        if checksum:
            extra["ChecksumAlgorithm"] = checksum
        if tags:
            extra["Tagging"] = urlencode(tags)
        body = s3.get_object(Bucket=self.source, Key=key, VersionId=version_id)["Body"]
        s3.upload_fileobj(body, destination, key, ExtraArgs=extra)
        replica = s3.head_object(Bucket=destination, Key=key)["VersionId"]
        self.copied[(key, version_id)] = (str(replica), tags)
        return True
