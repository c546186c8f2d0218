"""RDS and Aurora point-in-time restore into a temporary copy: its window, start, wait, endpoint, deletion, sweep.

A restore `as_of` a moment restores the database's RDS instance (`rds_instance_id`) or Aurora cluster
(`rds_cluster_id`) to that moment into `dbops-pit-<restore id>` (for Aurora: a cluster of that name and one
instance in it, of the source writer's class), in the source's subnet group, security groups and parameter group,
tagged as dbops' (purpose, restore id, execution). The restore workflow dumps it (a backup of kind `pointintime`)
and deletes it at once; Rollback deletes it on every failure; `sweep` deletes those an aborted or timed-out
execution left.

The restorable window is RDS's: from the latest of the source's creation, its EarliestRestorableTime (clusters)
and `LatestRestorableTime` minus the backup retention period, to `LatestRestorableTime` (a few minutes behind now
on RDS: the WAL uploaded so far).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from dbops import aws
from dbops.aws import stepfunctions
from dbops.contract import PIT_EXECUTION_TAG, PIT_INSTANCE_PREFIX, PIT_PURPOSE, PIT_PURPOSE_TAG
from dbops.errors import ConfigError, PointInTimeError, StorageError

Kind = Literal["instance", "cluster"]
# RDS statuses from which a restoring instance or cluster never becomes available
FAILED_STATUSES = frozenset({"failed", "incompatible-restore", "incompatible-parameters", "incompatible-network"})
NOT_FOUND = {"instance": "DBInstanceNotFound", "cluster": "DBClusterNotFoundFault"}
DEFAULT_AURORA_CLASS = "db.r6g.large"


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


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _call(what: str, fn: Any, **kwargs: Any) -> Any:
    try:
        return fn(**kwargs)
    except ClientError as exc:
        raise PointInTimeError(f"{what}: {exc.response.get('Error', {}).get('Message') or exc}") from None
    except BotoCoreError as exc:
        raise StorageError(f"{what}: {exc}") from None


def _unless_missing(what: str, kind: Kind, fn: Any, **kwargs: Any) -> Any:
    """An RDS call on one instance or cluster; None when there is no such one, a clear error otherwise."""
    try:
        return fn(**kwargs)
    except ClientError as exc:
        if _error_code(exc) == NOT_FOUND[kind]:
            return None
        raise PointInTimeError(f"{what}: {exc}") from None
    except BotoCoreError as exc:
        raise StorageError(f"{what}: {exc}") from None


def describe(kind: Kind, identifier: str) -> dict[str, Any] | None:
    """The instance or cluster as RDS describes it; None when there is none of that name."""
    rds = aws.client("rds")
    what = f"cannot describe RDS {kind} {identifier}"
    if kind == "cluster":
        answer = _unless_missing(what, kind, rds.describe_db_clusters, DBClusterIdentifier=identifier)
        found = answer["DBClusters"] if answer else []
    else:
        answer = _unless_missing(what, kind, rds.describe_db_instances, DBInstanceIdentifier=identifier)
        found = answer["DBInstances"] if answer else []
    return dict(found[0]) if found else None


def engine_versions(engine: str) -> list[str]:
    """Every version of the engine RDS offers."""
    pages = aws.client("rds").get_paginator("describe_db_engine_versions").paginate(Engine=engine)
    return [v["EngineVersion"] for page in pages for v in page["DBEngineVersions"]]


def _name(source: dict[str, Any]) -> str:
    return str(source.get("DBClusterIdentifier") or source.get("DBInstanceIdentifier"))


def restore_window(source: dict[str, Any]) -> RestoreWindow:
    """The moments this instance or cluster can be restored to; a ConfigError when it keeps no automated backups."""
    name = _name(source)
    retention_days = int(source.get("BackupRetentionPeriod") or 0)
    if retention_days <= 0:
        raise ConfigError(f"RDS {name} keeps no automated backups (backup retention 0): no point-in-time restore")
    latest = source.get("LatestRestorableTime")
    if latest is None:
        raise ConfigError(f"RDS {name} has no restorable time yet (its first automated backup is not done)")
    latest = _utc(latest)
    bounds = [latest - timedelta(days=retention_days)]
    for key in ("InstanceCreateTime", "ClusterCreateTime", "EarliestRestorableTime"):
        if source.get(key) is not None:
            bounds.append(_utc(source[key]))
    return RestoreWindow(earliest=max(bounds), latest=latest)


def temporary_instance_id(restore_id: str) -> str:
    return f"{PIT_INSTANCE_PREFIX}{restore_id}"


def _placement(source: dict[str, Any], kind: Kind) -> dict[str, Any]:
    """Where the copy goes: the source's subnet group, security groups and (non-default) parameter group."""
    found: dict[str, Any] = {}
    subnet_group = source.get("DBSubnetGroup")
    if isinstance(subnet_group, dict):
        subnet_group = subnet_group.get("DBSubnetGroupName")
    if subnet_group:
        found["DBSubnetGroupName"] = subnet_group
    groups = [g["VpcSecurityGroupId"] for g in source.get("VpcSecurityGroups", []) if g.get("VpcSecurityGroupId")]
    if groups:
        found["VpcSecurityGroupIds"] = groups
    if kind == "cluster":
        group = source.get("DBClusterParameterGroup")
        if group and not str(group).startswith("default."):
            found["DBClusterParameterGroupName"] = group
    else:
        names = [g["DBParameterGroupName"] for g in source.get("DBParameterGroups", [])]
        if names and not names[0].startswith("default."):
            found["DBParameterGroupName"] = names[0]
    return found


def _writer_class(cluster: dict[str, Any]) -> str:
    writer = next((m for m in cluster.get("DBClusterMembers", []) if m.get("IsClusterWriter")), None)
    if writer is not None:
        instance = describe("instance", writer["DBInstanceIdentifier"])
        if instance and instance.get("DBInstanceClass"):
            return str(instance["DBInstanceClass"])
    return DEFAULT_AURORA_CLASS


def start_restore(kind: Kind, source: dict[str, Any], target_id: str, as_of: datetime, tags: dict[str, str]) -> None:
    """Restore `source` to `as_of` into `target_id`, where the source lives, not public, no deletion protection;
    for Aurora the cluster and then its one instance. A retried call finds what it started."""
    rds = aws.client("rds")
    tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
    what = f"cannot restore RDS {kind} {_name(source)} to {as_of.isoformat()}"
    if kind == "instance":
        if describe("instance", target_id) is None:
            kwargs: dict[str, Any] = {
                "SourceDBInstanceIdentifier": source["DBInstanceIdentifier"],
                "TargetDBInstanceIdentifier": target_id,
                "RestoreTime": as_of,
                "PubliclyAccessible": False,
                "DeletionProtection": False,
                "MultiAZ": False,
                "CopyTagsToSnapshot": False,
                "Tags": tag_list,
                **_placement(source, kind),
            }
            if source.get("DBInstanceClass"):
                kwargs["DBInstanceClass"] = source["DBInstanceClass"]
            _call(what, rds.restore_db_instance_to_point_in_time, **kwargs)
        return
    if describe("cluster", target_id) is None:
        _call(
            what,
            rds.restore_db_cluster_to_point_in_time,
            SourceDBClusterIdentifier=source["DBClusterIdentifier"],
            DBClusterIdentifier=target_id,
            RestoreToTime=as_of,
            RestoreType="full-copy",
            DeletionProtection=False,
            CopyTagsToSnapshot=False,
            Tags=tag_list,
            **_placement(source, kind),
        )
    if describe("instance", target_id) is None:
        _call(
            f"cannot add an instance to the restored cluster {target_id}",
            rds.create_db_instance,
            DBInstanceIdentifier=target_id,
            DBClusterIdentifier=target_id,
            Engine=source["Engine"],
            DBInstanceClass=_writer_class(source),
            PubliclyAccessible=False,
            Tags=tag_list,
        )


def _status(kind: Kind, found: dict[str, Any]) -> str:
    return str(found.get("Status" if kind == "cluster" else "DBInstanceStatus", ""))


def ready_endpoint(kind: Kind, target_id: str) -> Endpoint | None:
    """The restored copy's endpoint once it is available (Aurora: the cluster and its instance); None while it is
    being created; raises when its restore failed or it is gone."""
    found = describe(kind, target_id)
    if found is None:
        raise PointInTimeError(f"temporary {kind} {target_id} is gone (deleted while the restore waited for it)")
    status = _status(kind, found)
    if status in FAILED_STATUSES:
        raise PointInTimeError(f"the point-in-time restore into {target_id} failed: status {status}")
    if status != "available":
        return None
    if kind == "cluster":
        instance = describe("instance", target_id)
        if instance is None or _status("instance", instance) != "available" or not found.get("Endpoint"):
            return None
        return Endpoint(host=str(found["Endpoint"]), port=int(found["Port"]))
    endpoint = found.get("Endpoint") or {}
    if not endpoint.get("Address"):
        return None
    return Endpoint(host=str(endpoint["Address"]), port=int(endpoint["Port"]))


def _tags(found: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in found.get("TagList", [])}


def _delete_one(kind: Kind, target_id: str) -> bool:
    found = describe(kind, target_id)
    if found is None:
        return False
    if _tags(found).get(PIT_PURPOSE_TAG) != PIT_PURPOSE:
        raise PointInTimeError(f"RDS {kind} {target_id} is not a dbops temporary copy: not deleting it")
    if _status(kind, found) == "deleting":
        return True
    rds = aws.client("rds")
    what = f"cannot delete temporary {kind} {target_id}"
    if kind == "cluster":
        done = _unless_missing(what, kind, rds.delete_db_cluster, DBClusterIdentifier=target_id, SkipFinalSnapshot=True)
    else:
        done = _unless_missing(
            what,
            kind,
            rds.delete_db_instance,
            DBInstanceIdentifier=target_id,
            SkipFinalSnapshot=True,
            DeleteAutomatedBackups=True,
        )
    return done is not None


def delete_temporary(kind: Kind, target_id: str) -> bool:
    """Delete a temporary copy (no final snapshot; Aurora: its instance, then the cluster): True if there was one.
    Only what dbops tagged as its own is deleted, whatever the name says."""
    deleted = _delete_one("instance", target_id)
    if kind == "cluster":
        deleted = _delete_one("cluster", target_id) or deleted
    return deleted


def temporary_copies() -> Iterator[tuple[Kind, dict[str, Any], dict[str, str]]]:
    """Every instance not in a cluster, and every cluster, that dbops tagged as a point-in-time restore's."""
    rds = aws.client("rds")
    try:
        for page in rds.get_paginator("describe_db_clusters").paginate():
            for cluster in page["DBClusters"]:
                if _tags(cluster).get(PIT_PURPOSE_TAG) == PIT_PURPOSE:
                    yield "cluster", cluster, _tags(cluster)
        for page in rds.get_paginator("describe_db_instances").paginate():
            for instance in page["DBInstances"]:
                if _tags(instance).get(PIT_PURPOSE_TAG) == PIT_PURPOSE and not instance.get("DBClusterIdentifier"):
                    yield "instance", instance, _tags(instance)
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"cannot list RDS instances and clusters: {exc}") from None


def _execution_running(execution_arn: str) -> bool:
    running = stepfunctions.running(execution_arn)
    if running is None:  # a copy is deleted only once its restore is known to be over
        raise StorageError(f"cannot describe execution {execution_arn}: Step Functions did not answer")
    return running


def sweep(execution_arn: str | None = None, *, orphan_after: timedelta = timedelta(hours=6)) -> list[str]:
    """Delete the temporary copies no running restore needs: those of `execution_arn` (an execution that ended:
    aborted, timed out, failed) or, without it, every one whose execution is no longer running (one without an
    execution tag once older than `orphan_after`). Returns the names deleted."""
    deleted = []
    now = datetime.now(UTC)
    for kind, found, tags in list(temporary_copies()):
        owner = tags.get(PIT_EXECUTION_TAG)
        if execution_arn is not None:
            if owner != execution_arn:
                continue
        elif owner:
            if _execution_running(owner):
                continue
        else:
            created = found.get("InstanceCreateTime") or found.get("ClusterCreateTime")
            if created is not None and now - _utc(created) < orphan_after:
                continue
        name = _name(found)
        if delete_temporary(kind, name):
            deleted.append(name)
    return deleted
