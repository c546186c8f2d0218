"""The Validate step: backup, verification, tables, target and versions checked before anything is touched."""

from __future__ import annotations

from datetime import UTC, datetime

from dbops.backup import catalog
from dbops.backup.verify import verify_entry
from dbops.config.databases import DatabaseConfig
from dbops.errors import ConfigError, RestoreRefused, VerificationFailed
from dbops.postgres.connection import ConnectionSpec, database_spec
from dbops.restore import databases
from dbops.restore.backup_choice import choose_backup, newest_verified
from dbops.restore.models import RestoreRequest, RestoreState
from dbops.restore.table_choice import resolve_tables, unrestorable_in, whole_plan
from dbops.restore.versions import check_versions
from dbops.settings import FunctionSettings


def target_of(req: RestoreRequest, spec: ConnectionSpec) -> tuple[str, bool]:
    """The database a request restores into (a drill's: the configured one, which names its work copy) and whether
    it exists; a selective restore is refused when it does not."""
    target = spec.dbname if req.mode == "drill" else (req.target or spec.dbname)
    target_existed = databases.exists(spec, target)
    if req.tables and req.mode == "restore" and not target_existed:
        raise RestoreRefused(f"target database {target} does not exist: a selective restore needs it")
    return target, target_existed


def requested_database(settings: FunctionSettings, name: str | None) -> DatabaseConfig:
    """The configured database the request names (or the only one); a name that is not configured is the request's
    own fault: refused."""
    try:
        return settings.database(name)
    except ConfigError as exc:
        raise RestoreRefused(str(exc)) from None


def validate(state: RestoreState, settings: FunctionSettings, backup_id: str | None = None) -> RestoreState:
    """Check everything before anything is touched: backup, verification, tables, target, versions. `backup_id`:
    that backup instead of the request's (a point-in-time restore's dump of its moment)."""
    req = state.request
    db = requested_database(settings, req.database)
    spec = database_spec(db)
    if backup_id is not None:
        entry = catalog.find_backup(settings.bucket, backup_id, database=db.name)
    elif req.disaster:
        entry = newest_verified(settings.bucket, db.name)
    else:
        entry = choose_backup(settings.bucket, req.backup, req.kind, db.name)
    manifest = entry.manifest
    if entry.verified is False:  # a damaged backup is a fault, not a bad request: it fails the restore (alarmed)
        raise VerificationFailed(
            f"backup {manifest.id} failed verification: {entry.verification and entry.verification.detail}"
        )
    if entry.verified is None:
        verify_entry(settings.bucket, entry, settings.pg_bin_dir)
    plans = resolve_tables(req.tables, manifest) if req.tables else whole_plan(manifest)
    check_versions(manifest, spec, settings.pg_bin_dir)
    target, target_existed = target_of(req, spec)
    if req.tables and req.mode == "restore":
        missing = unrestorable_in(spec.for_database(target), plans)
        if missing:
            raise RestoreRefused(f"not restorable into target {target}: {', '.join(missing)}")
    return state.model_copy(
        update={
            "started_at": state.started_at or datetime.now(UTC),
            "database": db.name,
            "backup_id": manifest.id,
            "backup_kind": manifest.kind,
            "backup_finished_at": manifest.finished_at,
            "archive_size": manifest.dump.raw_size,
            "target_db": None if req.mode == "drill" else target,
            "target_existed": target_existed and req.mode == "restore",
            "work_db": databases.work_name(target, state.restore_id, state.record_kind),
            "pre_restore_db": databases.work_name(target, state.restore_id, databases.PRE_RESTORE)
            if req.mode == "restore" and not req.tables and target_existed
            else None,
            "tables": plans,
            "use_fargate": manifest.raw_bytes > settings.fargate_threshold_bytes,
            "app_hook": db.app_hook is not None,
        }
    )
