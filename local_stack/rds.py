"""RDS point-in-time restore on the local stack: moto's RDS, with real PostgreSQL recovery behind it.

moto records `restore_db_instance_to_point_in_time` and answers with a fake endpoint. For a DB instance
registered here (`serve_point_in_time_restores` or `create_local_instance`), backed by a local archiving server
and its WalArchive (local_stack.pitr), the call does what RDS does:

* The API call checks the request (RestoreTime xor UseLatestRestorableTime; BackupRetentionPeriod > 0; the time
  within the window, else InvalidParameterValue / InvalidParameterCombination / PointInTimeRestoreNotEnabled as
  RDS answers), lets moto create the instance record (tags, parameter group, security groups...) and returns it
  with DBInstanceStatus "creating" and no Endpoint, as RDS does.
* A background thread flushes the source's WAL into the archive (RDS ships WAL every 5 minutes; the stand-in
  archives on demand), recovers a new server from the base backup to the time (WalArchive.recover_to) and the
  instance becomes "available" with Endpoint 127.0.0.1 and the new server's port; the master password is the
  source's (the same cluster). If recovery fails the status is "incompatible-restore", as on RDS, and the reason is
  logged and kept (`restore_error`).
* `delete_db_instance` of a restored instance stops its server and removes its directory (waiting for a recovery
  still under way to end first, bounded by the recovery's own timeouts).

The window: from the base backup (`WalArchive.base_backup_time`; the source's InstanceCreateTime is moved back to
it when later) to LatestRestorableTime. While the source server runs, LatestRestorableTime is the moment of the
describe: every restore flushes the WAL first, so any moment up to now is restorable (RDS lags up to ~5 min). When
the source server is down (a simulated crash), it is the last flush's time: what the archive is known to hold, and
a restore then recovers from the archive without flushing.

RestoreTime is used as given, microseconds included; what "the database as it was at T" holds is set out in
local_stack.pitr (every commit at or before T). `stop_all` destroys every restored server (test teardown, demo
exit).

Aurora: a cluster registered with `create_local_cluster` works the same way through
`restore_db_cluster_to_point_in_time` (status "creating" until its server is promoted, endpoint 127.0.0.1 and the
new server's port; the caller adds the instance, as on RDS) and `delete_db_cluster`.

Instances and clusters not registered behave exactly as plain moto. moto runs in this process (local_stack.aws), so the
patches below act on the server that boto3 reaches over HTTP.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID
from moto.rds.exceptions import InvalidParameterCombination, InvalidParameterValue, RDSClientError
from moto.rds.models import DBCluster, DBInstance, RDSBackend, rds_backends

from dbops import aws
from dbops.errors import ConfigError
from local_stack.pitr import WalArchive
from local_stack.postgres import LocalPostgres

logger = logging.getLogger(__name__)

LOCAL_ADDRESS = "127.0.0.1"
RECOVERY_WAIT_S = 180.0  # a delete waits this long for a recovery under way (flush 30 s, start 60 s, promotion 60 s)

_original_restore = RDSBackend.restore_db_instance_to_point_in_time
_original_cluster_restore = RDSBackend.restore_db_cluster_to_point_in_time
_original_cluster_delete = RDSBackend.delete_db_cluster
_original_cluster_status: property = DBCluster.status  # type: ignore[assignment]
_original_cluster_endpoint: property = DBCluster.endpoint  # type: ignore[assignment]
_original_cluster_latest: property = DBCluster.latest_restorable_time  # type: ignore[assignment]
_original_delete = RDSBackend.delete_db_instance
_original_address: property = DBInstance.address  # type: ignore[assignment]
_original_endpoint: property = DBInstance.endpoint  # type: ignore[assignment]
_original_latest: property = DBInstance.latest_restorable_time  # type: ignore[assignment]


class PointInTimeRestoreNotEnabled(RDSClientError):
    def __init__(self, identifier: str) -> None:
        super().__init__(
            "PointInTimeRestoreNotEnabled",
            f"SourceDBInstanceIdentifier {identifier} refers to a DB instance with BackupRetentionPeriod equal to 0.",
        )


@dataclass(eq=False)
class _Source:
    instance: DBInstance | DBCluster  # the moto resource: an instance, or an Aurora cluster
    server: LocalPostgres
    archive: WalArchive


@dataclass(eq=False)
class _Restore:
    instance: DBInstance | DBCluster
    source: _Source
    target: datetime | None  # None: the latest restorable time, taken when the WAL is flushed
    thread: threading.Thread | None = None
    server: LocalPostgres | None = None
    deleted: bool = False


_lock = threading.Lock()
_installed = False
_sources: dict[int, _Source] = {}  # by id() of the moto DBInstance (the entry holds it, so the id stays its own)
_restores: dict[int, _Restore] = {}
_errors: dict[str, str] = {}  # target identifier -> why its recovery failed
_released = threading.Event()  # cleared by slow_restores(): new restores stay "creating" until it is set
_released.set()


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _naive(moment: datetime) -> datetime:
    """moto keeps its times as naive UTC."""
    return _utc(moment).replace(tzinfo=None)


def _running(server: LocalPostgres) -> bool:
    return (server.data_dir / "postmaster.pid").exists()


def _source_of(instance: Any) -> _Source | None:
    entry = _sources.get(id(instance))
    return entry if entry is not None and entry.instance is instance else None


def _restore_of(instance: Any) -> _Restore | None:
    entry = _restores.get(id(instance))
    return entry if entry is not None and entry.instance is instance else None


def _latest_restorable(source: _Source) -> datetime:
    """LatestRestorableTime of a registered source (UTC, aware); see the module's docstring."""
    if _running(source.server):
        return datetime.now(UTC)
    return source.archive.last_flush_time or source.archive.base_backup_time


# The patched moto methods and properties.


def _address(self: DBInstance) -> str:
    source = _source_of(self)
    restore = _restore_of(self)
    if source is not None or (restore is not None and restore.server is not None):
        return LOCAL_ADDRESS
    return str(_original_address.fget(self))  # type: ignore[misc]


def _endpoint(self: DBInstance) -> dict[str, Any] | None:
    restore = _restore_of(self)
    if restore is not None and restore.server is None:
        return None  # RDS shows no Endpoint until the instance is available
    return dict(_original_endpoint.fget(self))  # type: ignore[misc]


def _latest_restorable_time(self: DBInstance) -> datetime:
    source = _source_of(self)
    if source is None:
        return _original_latest.fget(self)  # type: ignore[misc]
    return _naive(_latest_restorable(source))


def _requested_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return _utc(value)
    try:
        return _utc(datetime.fromisoformat(str(value)))
    except ValueError:
        raise InvalidParameterValue(
            f"RestoreTime {value} is not a valid ISO 8601 time, e.g. 2025-03-07T23:45:00Z"
        ) from None


def _check_request(source: _Source, identifier: str, overrides: Any) -> datetime | None:
    """The restore's target (None: the latest restorable time), or the error RDS answers with."""
    target = _requested_time(overrides.get("restore_time"))
    use_latest = str(overrides.get("use_latest_restorable_time") or "").lower() in ("true", "1")
    if target is not None and use_latest:
        raise InvalidParameterCombination("Cannot specify both RestoreTime and UseLatestRestorableTime.")
    if target is None and not use_latest:
        raise InvalidParameterCombination("Specify either RestoreTime or UseLatestRestorableTime.")
    if not source.instance.backup_retention_period:
        raise PointInTimeRestoreNotEnabled(identifier)
    if target is not None:
        earliest, latest = source.archive.base_backup_time, _latest_restorable(source)
        if not earliest <= target <= latest:
            raise InvalidParameterValue(
                f"RestoreTime {target.isoformat()} is outside the restorable window of {identifier}: "
                f"{earliest.isoformat()} (earliest) to {latest.isoformat()} (LatestRestorableTime)."
            )
    return target


def _restore(self: RDSBackend, source_db_identifier: str, target_db_identifier: str, overrides: Any) -> DBInstance:
    source = _source_of(self.databases.get(str(source_db_identifier).lower()))
    if source is None:
        return _original_restore(self, source_db_identifier, target_db_identifier, overrides)
    target = _check_request(source, source_db_identifier, overrides)
    instance = _original_restore(self, source_db_identifier, target_db_identifier, overrides)
    instance.status = "creating"
    instance.port = DBInstance.default_port(instance.engine)  # not the source's: the new server's once available
    _start_recovery(_Restore(instance=instance, source=source, target=target))
    return instance


def _identifier(resource: Any) -> str:
    return str(resource.db_cluster_identifier if isinstance(resource, DBCluster) else resource.db_instance_identifier)


def _start_recovery(entry: _Restore) -> None:
    identifier = _identifier(entry.instance)
    entry.thread = threading.Thread(target=_recover, args=(entry,), name=f"dbops-pitr-{identifier}", daemon=True)
    with _lock:
        _restores[id(entry.instance)] = entry
        _errors.pop(identifier, None)
    entry.thread.start()


def _restore_cluster(
    self: RDSBackend,
    db_cluster_identifier: str,
    source_db_cluster_identifier: str,
    restore_type: str = "full-copy",
    restore_to_time: datetime | None = None,
    use_latest_restorable_time: bool = False,
    **overrides: Any,
) -> DBCluster:
    """Aurora: the cluster restored to the time (its instance is created by the caller, as on RDS)."""
    args = (self, db_cluster_identifier, source_db_cluster_identifier, restore_type, restore_to_time)
    source = _source_of(self.clusters.get(str(source_db_cluster_identifier)))
    if source is None:
        return _original_cluster_restore(*args, use_latest_restorable_time, **overrides)
    request = {"restore_time": restore_to_time, "use_latest_restorable_time": use_latest_restorable_time}
    target = _check_request(source, source_db_cluster_identifier, request)
    cluster = _original_cluster_restore(*args, use_latest_restorable_time, **overrides)
    cluster.port = DBCluster.default_port(cluster.engine)
    _start_recovery(_Restore(instance=cluster, source=source, target=target))
    return cluster


def _cluster_status(self: DBCluster) -> str:
    restore = _restore_of(self)
    if restore is not None and restore.server is None and self._status != "incompatible-restore":
        return "creating"  # until its server is promoted
    return str(_original_cluster_status.fget(self))  # type: ignore[misc]


def _cluster_endpoint(self: DBCluster) -> str:
    restore = _restore_of(self)
    if _source_of(self) is not None or (restore is not None and restore.server is not None):
        return LOCAL_ADDRESS
    return str(_original_cluster_endpoint.fget(self))  # type: ignore[misc]


def _cluster_latest_restorable_time(self: DBCluster) -> datetime:
    source = _source_of(self)
    if source is None:
        return _original_cluster_latest.fget(self)  # type: ignore[misc]
    return _naive(_latest_restorable(source))


def _delete_cluster(self: RDSBackend, cluster_identifier: str, *args: Any, **kwargs: Any) -> DBCluster:
    cluster = self.clusters.get(str(cluster_identifier))
    deleted = _original_cluster_delete(self, cluster_identifier, *args, **kwargs)
    if cluster is not None:
        _forget(cluster)
    return deleted


def _recover(entry: _Restore) -> None:
    """The background half of a restore: flush, recover, then "available" (or "incompatible-restore")."""
    source, identifier = entry.source, _identifier(entry.instance)
    while not _released.wait(0.05):  # held by slow_restores()
        if entry.deleted:
            return
    try:
        if _running(source.server):
            latest = source.archive.flush(source.server)
        else:  # the source is down: what the archive holds is all there is
            latest = source.archive.last_flush_time or source.archive.base_backup_time
        server = source.archive.recover_to(entry.target or latest, bin_dir=source.server.bin_dir)
    except Exception as exc:
        logger.warning("point-in-time restore of %s failed: %s", identifier, exc)
        with _lock:
            _errors[identifier] = str(exc)
            entry.instance.status = "incompatible-restore"
        return
    with _lock:
        orphan = entry.deleted
        if not orphan:
            entry.server = server
            entry.instance.port = server.port
            entry.instance.status = "available"
    if orphan:  # deleted while it recovered
        server.destroy()


def _delete(self: RDSBackend, db_instance_identifier: str, *args: Any, **kwargs: Any) -> DBInstance:
    instance = self.databases.get(str(db_instance_identifier).lower())
    deleted = _original_delete(self, db_instance_identifier, *args, **kwargs)
    if instance is not None:
        _forget(instance)
    return deleted


def _forget(instance: DBInstance | DBCluster) -> None:
    """Unregister an instance; a restored one's server is stopped and removed (a source's is the caller's)."""
    with _lock:
        _sources.pop(id(instance), None)
        entry = _restores.pop(id(instance), None)
        if entry is None:
            return
        entry.deleted = True
        server, entry.server = entry.server, None
    _finish(entry, server)


def _finish(entry: _Restore, server: LocalPostgres | None) -> None:
    if server is not None:
        server.destroy()
    if entry.thread is not None and entry.thread.is_alive():
        entry.thread.join(RECOVERY_WAIT_S)  # when it ends it sees `deleted` and destroys its server itself


def _install() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        RDSBackend.restore_db_instance_to_point_in_time = _restore  # type: ignore[method-assign]
        RDSBackend.delete_db_instance = _delete  # type: ignore[method-assign]
        DBInstance.address = property(_address)  # type: ignore[assignment,method-assign]
        DBInstance.endpoint = property(_endpoint)  # type: ignore[assignment,method-assign]
        DBInstance.latest_restorable_time = property(_latest_restorable_time)  # type: ignore[assignment,method-assign]
        RDSBackend.restore_db_cluster_to_point_in_time = _restore_cluster  # type: ignore[method-assign]
        RDSBackend.delete_db_cluster = _delete_cluster  # type: ignore[method-assign]
        DBCluster.status = property(_cluster_status, _original_cluster_status.fset)  # type: ignore[assignment,method-assign]
        DBCluster.endpoint = property(_cluster_endpoint)  # type: ignore[assignment,method-assign]
        DBCluster.latest_restorable_time = property(_cluster_latest_restorable_time)  # type: ignore[assignment,method-assign]
        _installed = True


# The public API.


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def serve_point_in_time_restores(
    source_instance_id: str,
    server: LocalPostgres,
    archive: WalArchive,
    *,
    account_id: str = DEFAULT_ACCOUNT_ID,
    region: str | None = None,
) -> None:
    """Back the (moto) DB instance `source_instance_id`, created beforehand, by a local archiving server and its
    archive (base backup taken): its Endpoint becomes 127.0.0.1 and the server's port, and its point-in-time
    restores are real recoveries."""
    _install()
    backend = rds_backends[account_id][region or _region()]
    instance = backend.databases.get(source_instance_id.lower())
    if instance is None:
        raise ConfigError(
            f"no DB instance {source_instance_id} in the local RDS ({account_id}, {region or _region()}); "
            "create it first (create_local_instance does both)"
        )
    started = _naive(archive.base_backup_time)  # raises when there is no base backup yet
    with _lock:
        instance.port = server.port
        if instance.instance_create_time > started:
            instance.instance_create_time = started
        _sources[id(instance)] = _Source(instance=instance, server=server, archive=archive)


def create_local_instance(
    identifier: str,
    server: LocalPostgres,
    archive: WalArchive,
    retention_days: int = 7,
    *,
    instance_class: str = "db.t3.micro",
) -> None:
    """Create the (moto) DB instance for a local archiving server through the RDS API (engine postgres, the
    server's version, user and password) and register it (serve_point_in_time_restores)."""
    out = subprocess.run([server.bin("postgres"), "--version"], capture_output=True, text=True, check=True).stdout
    version = re.search(r"\(PostgreSQL\) (\d+(?:\.\d+)?)", out)
    rds = aws.client("rds")
    rds.create_db_instance(
        DBInstanceIdentifier=identifier,
        Engine="postgres",
        EngineVersion=version.group(1) if version else f"{server.major}.0",
        DBInstanceClass=instance_class,
        AllocatedStorage=20,
        MasterUsername=server.user,
        MasterUserPassword=server.password,
        Port=server.port,
        BackupRetentionPeriod=retention_days,
    )
    serve_point_in_time_restores(identifier, server, archive, region=rds.meta.region_name)


def create_local_cluster(
    identifier: str,
    server: LocalPostgres,
    archive: WalArchive,
    retention_days: int = 7,
    *,
    engine_mode: str = "provisioned",
) -> None:
    """Aurora's stand-in: a (moto) aurora-postgresql cluster with one writer instance, backed by a local archiving
    server and its archive (base backup taken), its endpoint 127.0.0.1 and the server's port; its point-in-time
    restores (restore_db_cluster_to_point_in_time) are real recoveries, as for an instance. `engine_mode`
    "serverless" (Aurora Serverless v1, which takes no instances) has no writer instance."""
    _install()
    rds = aws.client("rds")
    rds.create_db_cluster(
        DBClusterIdentifier=identifier,
        Engine="aurora-postgresql",
        EngineMode=engine_mode,
        MasterUsername=server.user,
        MasterUserPassword=server.password,
        Port=server.port,
        BackupRetentionPeriod=retention_days,
    )
    if engine_mode != "serverless":
        rds.create_db_instance(
            DBInstanceIdentifier=f"{identifier}-writer",
            DBClusterIdentifier=identifier,
            Engine="aurora-postgresql",
            DBInstanceClass="db.r6g.large",
        )
    backend = rds_backends[DEFAULT_ACCOUNT_ID][rds.meta.region_name]
    cluster = backend.clusters[identifier]
    started = _naive(archive.base_backup_time)
    with _lock:
        cluster.port = server.port
        cluster.earliest_restorable_time = started
        if cluster.cluster_create_time > started:
            cluster.cluster_create_time = started
        _sources[id(cluster)] = _Source(instance=cluster, server=server, archive=archive)


@contextmanager
def slow_restores() -> Iterator[None]:
    """Point-in-time restores started inside the block stay "creating" until it ends, as RDS's take tens of
    minutes: for what happens while a restore waits (an execution aborted, a wait that times out). A restore
    deleted meanwhile never recovers."""
    _released.clear()
    try:
        yield
    finally:
        _released.set()


def restore_error(target_instance_id: str) -> str | None:
    """Why the last point-in-time restore into `target_instance_id` failed (status incompatible-restore), if it did."""
    with _lock:
        return _errors.get(target_instance_id.lower())


def stop_all() -> None:
    """Destroy every restored server (waiting for recoveries under way): test teardown, the end of a demo. Their
    moto records stay, "stopped"; the sources stay registered until their instance is deleted, and their servers
    are the caller's to stop."""
    with _lock:
        entries = list(_restores.values())
        _restores.clear()
        servers = []
        for entry in entries:
            entry.deleted = True
            servers.append(entry.server)
            entry.server = None
            if entry.instance.status in ("creating", "available"):
                entry.instance.status = "stopped"
    for entry, server in zip(entries, servers, strict=True):
        _finish(entry, server)
