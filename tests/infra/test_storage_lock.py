"""Immutable backups and grandfather-father-son retention in the template: the bucket created with S3 Object Lock
(and no default retention) when `backup_lock` is set, one lifecycle rule per class of nightly backups, the functions
told the lock and the classes, and the health counters' old versions gone after a day."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from dbops.config.backup import BackupLock
from dbops.contract import ENV_BACKUP_LOCK, ENV_RETENTION_MONTHLY_DAYS, ENV_RETENTION_WEEKLY_DAYS
from tests.infra.conftest import Synth


def _bucket(synthesized: Synth) -> dict[str, Any]:
    return synthesized.json["Resources"][synthesized.logical_id(synthesized.stack.storage.bucket)]["Properties"]


def _rule(synthesized: Synth, prefix: str) -> dict[str, Any]:
    """The bucket's one lifecycle rule for `prefix`."""
    (rule,) = [r for r in _bucket(synthesized)["LifecycleConfiguration"]["Rules"] if r.get("Prefix") == prefix]
    return rule  # type: ignore[no-any-return]


def test_the_bucket_has_object_lock_enabled_without_a_default_retention(synthesized: Synth) -> None:
    bucket = _bucket(synthesized)
    assert bucket["ObjectLockEnabled"] is True
    # per-object retention only: a default rule would lock the health counters, verification and restore records
    assert "Rule" not in bucket.get("ObjectLockConfiguration", {})
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}


def test_object_lock_is_off_unless_configured() -> None:
    from aws_cdk import App, Stack
    from aws_cdk.assertions import Template

    from infra.retention_settings import RetentionDays
    from infra.storage import BackupStorage

    stack = Stack(App(context={"@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True}))
    storage = BackupStorage(stack, "Storage", retention=RetentionDays())
    bucket = Template.from_stack(stack).to_json()["Resources"][stack.get_logical_id(storage.bucket.node.default_child)]  # type: ignore[arg-type]
    assert "ObjectLockEnabled" not in bucket["Properties"]
    assert "ObjectLockConfiguration" not in bucket["Properties"]


def test_health_counters_old_versions_expire_after_a_day(synthesized: Synth) -> None:
    """The health function rewrites health/ every 5 minutes: ~288 versions a day per object on a versioned bucket."""
    assert _rule(synthesized, "health/") == {
        "Id": "health-expire-noncurrent",
        "Prefix": "health/",
        "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
        "Status": "Enabled",
    }


def test_restore_progress_expires_after_a_week_and_its_old_versions_after_a_day(synthesized: Synth) -> None:
    """A restore's Stage rewrites restore-progress/<execution>.json every 2 s while it runs; nothing reads it after."""
    assert _rule(synthesized, "restore-progress/") == {
        "Id": "restore-progress-expire",
        "Prefix": "restore-progress/",
        "ExpirationInDays": 7,
        "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
        "Status": "Enabled",
    }


def test_retention_ledgers_old_versions_expire_after_a_day_and_a_forgotten_one_after_a_month(
    synthesized: Synth,
) -> None:
    """Every retention pass rewrites retention/<kind>/<database>.json (written unlocked); a ledger not rewritten for a
    week is read in full anyway, so one left a month (its database no longer backed up) may go."""
    assert _rule(synthesized, "retention/") == {
        "Id": "retention-ledger-expire",
        "Prefix": "retention/",
        "ExpirationInDays": 30,
        "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
        "Status": "Enabled",
    }


def _backup_environment(synthesized: Synth) -> dict[str, Any]:
    function_id = synthesized.logical_id(synthesized.stack.functions.by_name["Backup"])
    return synthesized.json["Resources"][function_id]["Properties"]["Environment"]["Variables"]  # type: ignore[no-any-return]


def test_the_functions_are_told_the_lock_with_each_kinds_age_and_the_classes(synthesized: Synth) -> None:
    env = _backup_environment(synthesized)
    lock = BackupLock.model_validate_json(env[ENV_BACKUP_LOCK])
    # a nightly backup locked for the lock's days; predeploy, prerestore and point-in-time dumps for their ages
    # (the test settings: 120, 21, 30); manual backups (400 days) too
    assert lock == BackupLock(
        mode="compliance", days=30, kind_days={"predeploy": 120, "prerestore": 21, "manual": 400, "pointintime": 30}
    )
    assert (env[ENV_RETENTION_WEEKLY_DAYS], env[ENV_RETENTION_MONTHLY_DAYS]) == ("90", "365")


def test_the_functions_may_write_and_read_retention_and_never_bypass_governance(synthesized: Synth) -> None:
    actions: set[str] = set()
    for policy in synthesized.resources("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            found = statement["Action"]
            actions.update([found] if isinstance(found, str) else found)
    assert {"s3:PutObjectRetention", "s3:GetObjectRetention"} <= actions
    assert not {a for a in actions if "Bypass" in a or a in ("s3:*", "*")}
    assert json.dumps(synthesized.json).count("s3:BypassGovernanceRetention") == 0


@pytest.mark.parametrize(
    ("retention", "message"),
    [
        ({"nightly": 30, "weekly": 30}, "weekly (30 days) must keep backups longer than nightly"),
        ({"weekly": 120, "monthly": 90}, "monthly (90 days) must keep backups at least as long as weekly"),
    ],
)
def test_classes_must_outlive_the_nightly_backups(retention: dict[str, int], message: str) -> None:
    from infra.retention_settings import RetentionDays

    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RetentionDays.model_validate(retention)


def test_a_lock_mode_must_be_governance_or_compliance() -> None:
    from infra.retention_settings import BackupLockSettings

    with pytest.raises(ValidationError):
        BackupLockSettings.model_validate({"mode": "legal-hold", "days": 30})
