"""The backup bucket: KMS-encrypted, TLS-only, private, versioned, logged, and expiring per backup kind."""

from __future__ import annotations

from typing import Any

from tests.infra.conftest import Synth


def _bucket(synthesized: Synth) -> dict[str, Any]:
    return synthesized.json["Resources"][synthesized.logical_id(synthesized.stack.storage.bucket)]["Properties"]


def _policy_of(synthesized: Synth, bucket: Any) -> list[dict[str, Any]]:
    bucket_id = synthesized.logical_id(bucket)
    for policy in synthesized.resources("AWS::S3::BucketPolicy").values():
        if policy["Properties"]["Bucket"] == {"Ref": bucket_id}:
            return policy["Properties"]["PolicyDocument"]["Statement"]  # type: ignore[no-any-return]
    raise AssertionError(f"no bucket policy for {bucket_id}")


RELEASED = [{"Key": "dbops-expirable", "Value": "true"}]


def _class(name: str) -> list[dict[str, str]]:
    return [*RELEASED, {"Key": "dbops-class", "Value": name}]


def _expiries(rules: list[dict[str, Any]]) -> dict[str, tuple[int, list[dict[str, str]] | None]]:
    """Each backup expiry rule: its age in days and the tags an object must carry (None: any object)."""
    backups = [r for r in rules if r.get("Prefix", "").startswith("backups/")]  # not restore-progress/'s expiry
    return {r["Id"]: (r["ExpirationInDays"], r.get("TagFilters")) for r in backups if "ExpirationInDays" in r}


def test_lifecycle_expires_each_backup_kind_at_its_configured_age(synthesized: Synth) -> None:
    rules = _bucket(synthesized)["LifecycleConfiguration"]["Rules"]
    # nightly: the guide's 30 days (default); the others as configured in the test settings. Nightly and
    # predeploy objects expire only once dbops.backup.retention tagged them (never the newest verified backups);
    # prerestore and manual backups by age alone
    # prerestore and manual backups by age alone. With weekly and monthly classes (the test settings), nightly
    # objects expire by their class tag too: one rule per class, at the class's age
    assert _expiries(rules) == {
        "expire-nightly": (30, _class("nightly")),
        "expire-nightly-weekly": (90, _class("weekly")),
        "expire-nightly-monthly": (365, _class("monthly")),
        "expire-predeploy": (120, RELEASED),
        "expire-prerestore": (21, None),
        "expire-manual": (400, None),
        "expire-pointintime": (30, None),  # the dumps point-in-time restores took (default 30 days)
    }
    assert {r["Prefix"] for r in rules if "ExpirationInDays" in r} == {
        *(f"backups/{kind}/" for kind in ("nightly", "predeploy", "prerestore", "manual", "pointintime")),
        "restore-progress/",  # a restore's Stage progress (test_storage_lock: a week)
        "retention/",  # the retention ledgers (test_storage_lock: a month)
    }
    assert all(r["Status"] == "Enabled" for r in rules)


def test_lifecycle_tag_is_the_one_retention_sets(synthesized: Synth) -> None:
    """The rule's filter and the functions' tagging share one definition: they cannot disagree."""
    from dbops.contract import EXPIRABLE_TAG, RETAINED_KINDS

    rules = _bucket(synthesized)["LifecycleConfiguration"]["Rules"]
    assert RELEASED == [{"Key": EXPIRABLE_TAG, "Value": "true"}]
    gated = {r["Prefix"] for r in rules if RELEASED[0] in r.get("TagFilters", [])}
    assert gated == {f"backups/{kind}/" for kind in RETAINED_KINDS}


def test_lifecycle_aborts_stale_multipart_uploads_and_expires_old_versions_bucket_wide(synthesized: Synth) -> None:
    rules = _bucket(synthesized)["LifecycleConfiguration"]["Rules"]
    (bucket_wide,) = [r for r in rules if "Prefix" not in r]
    assert bucket_wide["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert bucket_wide["NoncurrentVersionExpiration"] == {"NoncurrentDays": 10}
    assert bucket_wide["ExpiredObjectDeleteMarker"] is True
    assert "TagFilters" not in bucket_wide  # every stale upload and old version, tagged or not


def test_manual_backups_never_expire_by_default(tmp_path: Any) -> None:
    from aws_cdk import App, Stack
    from aws_cdk import aws_s3 as s3
    from aws_cdk.assertions import Template

    from infra.retention_settings import RetentionDays
    from infra.storage import lifecycle_rules

    stack = Stack(App())
    s3.Bucket(stack, "B", lifecycle_rules=lifecycle_rules(RetentionDays()))
    rules = Template.from_stack(stack).to_json()["Resources"]
    (bucket,) = rules.values()
    # and without weekly or monthly classes, one nightly rule on the release tag alone (as before the classes)
    assert _expiries(bucket["Properties"]["LifecycleConfiguration"]["Rules"]) == {
        "expire-nightly": (30, RELEASED),
        "expire-predeploy": (90, RELEASED),
        "expire-prerestore": (30, None),
        "expire-pointintime": (30, None),
    }


def test_bucket_is_encrypted_with_the_rotated_kms_key(synthesized: Synth) -> None:
    key_id = synthesized.logical_id(synthesized.stack.storage.key)
    (encryption,) = _bucket(synthesized)["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]},
    }
    assert encryption["BucketKeyEnabled"] is True
    key = synthesized.json["Resources"][key_id]
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == "Retain"


def test_bucket_is_private_versioned_owner_enforced_and_access_logged(synthesized: Synth) -> None:
    bucket = _bucket(synthesized)
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    logs_id = synthesized.logical_id(synthesized.stack.storage.access_logs)
    assert bucket["LoggingConfiguration"] == {
        "DestinationBucketName": {"Ref": logs_id},
        "LogFilePrefix": "backups-bucket/",
    }


def test_both_buckets_deny_any_request_without_tls(synthesized: Synth) -> None:
    storage = synthesized.stack.storage
    for bucket in (storage.bucket, storage.access_logs):
        bucket_id = synthesized.logical_id(bucket)
        denials = [s for s in _policy_of(synthesized, bucket) if s["Effect"] == "Deny"]
        insecure = [s for s in denials if s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}]
        assert len(insecure) == 1, denials
        (deny,) = insecure
        assert deny["Action"] == "s3:*"
        assert deny["Principal"] == {"AWS": "*"}
        assert deny["Resource"] == [
            {"Fn::GetAtt": [bucket_id, "Arn"]},
            {"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, "/*"]]},
        ]
        assert any(s.get("Condition") == {"NumericLessThan": {"s3:TlsVersion": 1.2}} for s in denials)


def test_access_log_bucket_takes_s3_log_delivery_by_policy_and_expires_logs(synthesized: Synth) -> None:
    storage = synthesized.stack.storage
    statements = _policy_of(synthesized, storage.access_logs)
    (delivery,) = [s for s in statements if s["Effect"] == "Allow"]
    assert delivery["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert delivery["Action"] == "s3:PutObject"
    assert delivery["Condition"]["ArnLike"] == {
        "aws:SourceArn": {"Fn::GetAtt": [synthesized.logical_id(storage.bucket), "Arn"]}
    }
    logs = synthesized.json["Resources"][synthesized.logical_id(storage.access_logs)]["Properties"]
    (encryption,) = logs["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert logs["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == 365
