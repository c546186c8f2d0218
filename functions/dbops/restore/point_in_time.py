"""RDS point-in-time restore into a temporary instance: its window, start, wait, endpoint, deletion and the sweep.

A restore `as_of` a moment restores the database's RDS instance (`rds_instance_id`) to that moment into a new
instance `dbops-pit-<restore id>`, in the source's subnet group, security groups and parameter group, tagged as
dbops' (purpose, restore id, execution). The restore workflow dumps it (a backup of kind `pointintime`) and deletes
it at once; Rollback deletes it on every failure; `sweep` deletes those an aborted or timed-out execution left.

The restorable window is RDS's: from the latest of the instance's creation and `LatestRestorableTime` minus the
backup retention period, to `LatestRestorableTime` (a few minutes behind now on RDS: the WAL uploaded so far).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from dbops import aws
from dbops.errors import ConfigError, DbopsError, StorageError

PURPOSE_TAG = "dbops:purpose"
PURPOSE = "point-in-time-restore"
RESTORE_TAG = "dbops:restore-id"
EXECUTION_TAG = "dbops:execution"
INSTANCE_PREFIX = "dbops-pit-"
# RDS statuses from which a restoring instance never becomes available
FAILED_STATUSES = frozenset({"failed", "incompatible-restore", "incompatible-parameters", "incompatible-network"})


class PointInTimeError(DbopsError):
    """The temporary instance could not be restored, reached, or deleted."""


@dataclass(frozen=True)
class RestoreWindow:
    earliest: datetime
    latest: datetime

    def describe(self) -> str:
        return f"{self.earliest.isoformat(timespec='seconds')} to {self.latest.isoformat(timespec='seconds')}"


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


def _call(what: str, fn: Any, **kwargs: Any) -> Any:
    try:
        return fn(**kwargs)
    except ClientError as exc:
        raise PointInTimeError(f"{what}: {exc.response.get('Error', {}).get('Message') or exc}") from None
    except BotoCoreError as exc:
        raise StorageError(f"{what}: {exc}") from None


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def describe_instance(instance_id: str) -> dict[str, Any] | None:
    """The instance as RDS describes it; None when there is no such instance."""
    try:
        found = aws.client("rds").describe_db_instances(DBInstanceIdentifier=instance_id)["DBInstances"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "DBInstanceNotFound":
            return None
        raise PointInTimeError(f"cannot describe RDS instance {instance_id}: {exc}") from None
    except BotoCoreError as exc:
        raise StorageError(f"cannot describe RDS instance {instance_id}: {exc}") from None
    return dict(found[0]) if found else None


def restore_window(instance: dict[str, Any]) -> RestoreWindow:
    """The moments this instance can be restored to; a ConfigError when it keeps no automated backups."""
    name = instance["DBInstanceIdentifier"]
    retention_days = int(instance.get("BackupRetentionPeriod") or 0)
    if retention_days <= 0:
        raise ConfigError(
            f"RDS instance {name} keeps no automated backups (backup retention 0): no point-in-time restore"
        )
    latest = instance.get("LatestRestorableTime")
    if latest is None:
        raise ConfigError(f"RDS instance {name} has no restorable time yet (its first automated backup is not done)")
    latest = _utc(latest)
    earliest = latest - timedelta(days=retention_days)
    created = instance.get("InstanceCreateTime")
    if created is not None:
        earliest = max(earliest, _utc(created))
    return RestoreWindow(earliest=earliest, latest=latest)


def temporary_instance_id(restore_id: str) -> str:
    return f"{INSTANCE_PREFIX}{restore_id}"


def start_restore(source: dict[str, Any], target_id: str, as_of: datetime, tags: dict[str, str]) -> None:
    """Restore `source` to `as_of` into `target_id`, where the source lives (subnet group, security groups,
    parameter group), not publicly accessible, no deletion protection. A retried call finds it started already."""
    if describe_instance(target_id) is not None:
        return
    kwargs: dict[str, Any] = {
        "SourceDBInstanceIdentifier": source["DBInstanceIdentifier"],
        "TargetDBInstanceIdentifier": target_id,
        "RestoreTime": as_of,
        "PubliclyAccessible": False,
        "DeletionProtection": False,
        "MultiAZ": False,
        "CopyTagsToSnapshot": False,
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
    }
    subnet_group = (source.get("DBSubnetGroup") or {}).get("DBSubnetGroupName")
    if subnet_group:
        kwargs["DBSubnetGroupName"] = subnet_group
    groups = [g["VpcSecurityGroupId"] for g in source.get("VpcSecurityGroups", []) if g.get("VpcSecurityGroupId")]
    if groups:
        kwargs["VpcSecurityGroupIds"] = groups
    parameter_groups = [g["DBParameterGroupName"] for g in source.get("DBParameterGroups", [])]
    if parameter_groups and not parameter_groups[0].startswith("default."):
        kwargs["DBParameterGroupName"] = parameter_groups[0]
    if source.get("DBInstanceClass"):
        kwargs["DBInstanceClass"] = source["DBInstanceClass"]
    _call(
        f"cannot restore RDS instance {source['DBInstanceIdentifier']} to {as_of.isoformat()}",
        aws.client("rds").restore_db_instance_to_point_in_time,
        **kwargs,
    )


def ready_endpoint(target_id: str) -> Endpoint | None:
    """The restored instance's endpoint once it is available; None while it is being created; raises when its
    restore failed or the instance is gone."""
    instance = describe_instance(target_id)
    if instance is None:
        raise PointInTimeError(f"temporary instance {target_id} is gone (deleted while the restore waited for it)")
    status = str(instance.get("DBInstanceStatus", ""))
    if status in FAILED_STATUSES:
        raise PointInTimeError(f"the point-in-time restore into {target_id} failed: status {status}")
    endpoint = instance.get("Endpoint") or {}
    if status != "available" or not endpoint.get("Address"):
        return None
    return Endpoint(host=str(endpoint["Address"]), port=int(endpoint["Port"]))


def delete_instance(target_id: str) -> bool:
    """Delete a temporary instance (no final snapshot, no automated backups kept): True if it was there. Only
    instances dbops tagged as its own are deleted, whatever the id says."""
    instance = describe_instance(target_id)
    if instance is None:
        return False
    if _tags(instance).get(PURPOSE_TAG) != PURPOSE:
        raise PointInTimeError(f"RDS instance {target_id} is not a dbops temporary instance: not deleting it")
    if instance.get("DBInstanceStatus") == "deleting":
        return True
    try:
        aws.client("rds").delete_db_instance(
            DBInstanceIdentifier=target_id, SkipFinalSnapshot=True, DeleteAutomatedBackups=True
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "DBInstanceNotFound":
            return False
        raise PointInTimeError(f"cannot delete temporary instance {target_id}: {exc}") from None
    except BotoCoreError as exc:
        raise StorageError(f"cannot delete temporary instance {target_id}: {exc}") from None
    return True


def _tags(instance: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("TagList", [])}


def temporary_instances() -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    """Every instance dbops tagged as a point-in-time restore's, with its tags."""
    pages = aws.client("rds").get_paginator("describe_db_instances").paginate()
    try:
        for page in pages:
            for instance in page["DBInstances"]:
                tags = _tags(instance)
                if tags.get(PURPOSE_TAG) == PURPOSE:
                    yield instance, tags
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"cannot list RDS instances: {exc}") from None


def _execution_running(execution_arn: str) -> bool:
    try:
        status = aws.client("stepfunctions").describe_execution(executionArn=execution_arn)["status"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
            return False
        raise StorageError(f"cannot describe execution {execution_arn}: {exc}") from None
    except BotoCoreError as exc:
        raise StorageError(f"cannot describe execution {execution_arn}: {exc}") from None
    return bool(status == "RUNNING")


def sweep(execution_arn: str | None = None, *, orphan_after: timedelta = timedelta(hours=6)) -> list[str]:
    """Delete the temporary instances no running restore needs: those of `execution_arn` (an execution that ended:
    aborted, timed out, failed) or, without it, every one whose execution is no longer running (one without an
    execution tag once older than `orphan_after`). Returns the ids deleted."""
    deleted = []
    now = datetime.now(UTC)
    for instance, tags in temporary_instances():
        owner = tags.get(EXECUTION_TAG)
        if execution_arn is not None:
            if owner != execution_arn:
                continue
        elif owner:
            if _execution_running(owner):
                continue
        else:
            created = instance.get("InstanceCreateTime")
            if created is not None and now - _utc(created) < orphan_after:
                continue
        if delete_instance(instance["DBInstanceIdentifier"]):
            deleted.append(instance["DBInstanceIdentifier"])
    return deleted
