"""The restore workflow's steps for a restore `as_of` a moment, around the ordinary ones (dbops.restore.steps).

Validate (the moment inside the instance's restorable window, before anything starts) → RestoreToPointInTime (a
temporary instance, tagged as dbops') → WaitForInstance (polled, bounded) → DumpPointInTime (a backup of kind
`pointintime` of the temporary instance, which is then deleted, and the ordinary Validate against that backup:
tables by identity, target, versions) → the ordinary SafetyBackup, Stage, Check and Swap. Rollback and Finish
delete the temporary instance too, so every path that reaches them leaves none; `rds.sweep` removes
what an aborted or timed-out execution left.
"""

from __future__ import annotations

from datetime import UTC, datetime

from dbops import contract
from dbops.aws import rds
from dbops.backup.placement import runner_for
from dbops.backup.run import BackupRequest, run_backup
from dbops.backup.tables import list_tables
from dbops.config.databases import DatabaseConfig
from dbops.errors import ConfigError, PointInTimeError, RestoreRefused
from dbops.postgres.connection import connect, database_spec
from dbops.restore import steps
from dbops.restore.backup_choice import taken_by
from dbops.restore.models import InstanceEndpoint, RestoreState
from dbops.restore.table_choice import resolve_names
from dbops.restore.validate import requested_database, target_of
from dbops.settings import FunctionSettings

# the restore step functions' timeout (infra: RESTORE_STEP_SIZING): the dump runs in one of them, or on Fargate
LAMBDA_TIMEOUT_S = 900.0


def validate(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    """A restore from a backup: the ordinary Validate. As of a moment: the instance and the moment, checked
    before anything starts (the tables are resolved once the moment's dump exists)."""
    req = state.request
    if req.as_of is None:
        return steps.validate(state, settings)
    db = requested_database(settings, req.database)
    inside_window(db, req.as_of)
    spec = database_spec(db)
    target, _ = target_of(req, spec)
    if req.tables and req.mode == "restore":
        # a name that is no table of the target would be refused after the dump, tens of minutes from now: the
        # names are checked against the target as it is now (the dump's own tables decide after it)
        with connect(spec.for_database(target)) as conn:
            resolve_names(req.tables, list_tables(conn), f"database {target}")
    return state.model_copy(
        update={
            "started_at": state.started_at or datetime.now(UTC),
            "database": db.name,
            "target_db": None if req.mode == "drill" else target,
            "temporary_instance": rds.temporary_instance_id(state.restore_id),
            # the copy is dumped where the database's backups run
            "dump_on_fargate": runner_for(settings, db.name, LAMBDA_TIMEOUT_S).runner == "fargate",
        }
    )


def inside_window(db: DatabaseConfig, moment: datetime) -> str:
    """Says where `moment` lies in the restorable window of the database's RDS instance or cluster; RestoreRefused
    when it is outside, or there is no such instance (Validate, and `dbops restore` before it starts one)."""
    ref = db.rds_source()
    if ref is None:
        raise RestoreRefused(
            f"database {db.name} has no rds_instance_id or rds_cluster_id: a point-in-time restore restores the "
            "RDS instance or Aurora cluster it runs on"
        )
    source = rds.describe(*ref)
    if source is None:
        raise RestoreRefused(f"RDS {ref[0]} {ref[1]} (database {db.name}) does not exist")
    try:
        window = rds.restore_window(source)
    except ConfigError as exc:
        raise RestoreRefused(str(exc)) from None
    as_of = moment.astimezone(UTC)
    if not window.earliest <= as_of <= window.latest:
        raise RestoreRefused(
            f"{as_of.isoformat(timespec='seconds')} is outside the restorable window of RDS {ref[0]} {ref[1]}: "
            f"{window.describe()}"
        )
    return f"{as_of.isoformat(timespec='seconds')} is inside the restorable window of RDS {ref[0]} {ref[1]}"


def restore_to_point_in_time(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    """Start restoring the source instance to the moment into the temporary instance (a retry finds it started)."""
    kind, source_id = _rds(state, settings)
    assert state.temporary_instance is not None and state.request.as_of
    source = rds.describe(kind, source_id)
    if source is None:
        raise PointInTimeError(f"RDS {kind} {source_id} is gone")
    tags = {
        contract.PIT_PURPOSE_TAG: contract.PIT_PURPOSE,
        contract.PIT_RESTORE_TAG: state.restore_id,
        "dbops:database": str(state.database),
    }
    if state.execution:
        tags[contract.PIT_EXECUTION_TAG] = state.execution
    rds.start_restore(kind, source, state.temporary_instance, state.request.as_of.astimezone(UTC), tags)
    return state.model_copy(update={"temporary_started_at": state.temporary_started_at or datetime.now(UTC)})


def wait_for_instance(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    """One poll: the endpoint once the instance is available; fails when its restore failed or took too long."""
    assert state.temporary_instance is not None
    endpoint = rds.ready_endpoint(_rds(state, settings)[0], state.temporary_instance)
    if endpoint is not None:
        return state.model_copy(update={"instance_endpoint": InstanceEndpoint(host=endpoint.host, port=endpoint.port)})
    started = state.temporary_started_at or datetime.now(UTC)
    waited = (datetime.now(UTC) - started).total_seconds() / 60
    if waited > settings.point_in_time_wait_minutes:
        raise PointInTimeError(
            f"temporary instance {state.temporary_instance} is not available after {waited:.0f} minutes "
            f"(DBOPS_POINT_IN_TIME_WAIT_MINUTES is {settings.point_in_time_wait_minutes:g})"
        )
    return state


def write_dump(state: RestoreState, settings: FunctionSettings) -> str:
    """Dump the temporary copy (a backup of kind pointintime: manifest, tables by identity) unless this restore's
    dump is in the bucket already (a retry, or the Fargate task wrote it); returns its id. The task runs this."""
    assert state.instance_endpoint is not None and state.temporary_instance is not None and state.request.as_of
    db = settings.database(state.database)
    done = taken_by(state, settings, "pointintime")
    if done is not None:
        return done.id
    spec = database_spec(db).model_copy(
        update={"host": state.instance_endpoint.host, "port": state.instance_endpoint.port}
    )
    manifest = run_backup(
        spec,
        BackupRequest(
            database=db.name,
            bucket=settings.bucket,
            kind="pointintime",
            pg_bin_dir=settings.pg_bin_dir,
            compression_level=settings.compression_level,
            lock=settings.backup_lock,
            labels={
                "restore_id": state.restore_id,
                "as_of": state.request.as_of.astimezone(UTC).isoformat(),
                "instance": state.temporary_instance,
            },
        ),
    )
    return manifest.id


def dump_point_in_time(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    """The copy's dump (written here, or found when the Fargate task wrote it), the copy deleted, then the
    ordinary Validate against that dump."""
    backup_id = write_dump(state, settings)
    return steps.validate(delete_temporary(state, settings), settings, backup_id=backup_id)


def _rds(state: RestoreState, settings: FunctionSettings) -> tuple[rds.Kind, str]:
    found = settings.database(state.database or state.request.database).rds_source()
    if found is None:
        raise PointInTimeError(f"database {state.database} has no rds_instance_id or rds_cluster_id any more")
    return found


def delete_temporary(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    """Delete the temporary copy if there is one (gone already counts as deleted)."""
    if state.temporary_instance is None or state.temporary_deleted:
        return state
    rds.delete_temporary(_rds(state, settings)[0], state.temporary_instance)
    return state.model_copy(update={"temporary_deleted": True})


def rollback(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    """The ordinary rollback, and the temporary instance deleted whatever else failed."""
    try:
        state = steps.rollback(state, settings)
    finally:
        state = delete_temporary(state, settings)
    return state


def finish(state: RestoreState, settings: FunctionSettings) -> RestoreState:
    return steps.finish(delete_temporary(state, settings), settings)
