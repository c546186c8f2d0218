"""What `dbops restore` checks itself before it starts an execution, where that is cheap: the backup exists and
the tables are tables of it (the catalog reads the backup's manifest, which lists its tables), and a moment is
inside the RDS instance's restorable window (one describe call). A request refused here starts no execution; one
these checks cannot judge (no bucket or database settings at hand, AWS unreachable) is left to the state machine's
Validate, which refuses the same things."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from dbops.backup import catalog
from dbops.errors import BackupNotFound, BucketNotFound, ConfigError, RestoreRefused, StorageError
from dbops.errors import RefusedBeforeStart as Refused
from dbops.restore.backup_choice import choose_backup
from dbops.restore.models import RestoreRequest
from dbops.restore.point_in_time_steps import inside_window
from dbops.restore.table_choice import resolve_tables
from dbops.settings import FunctionSettings


def _settings() -> FunctionSettings | None:
    """The functions' own settings when this shell has them (DBOPS_BUCKET, DBOPS_DATABASES), else None."""
    try:
        return FunctionSettings()
    except (ValidationError, ConfigError):
        return None


def configured_bucket(bucket: str | None) -> str | None:
    """The bucket given, or the functions' own when this shell has their settings."""
    settings = _settings() if bucket is None else None
    return bucket or (settings.bucket if settings else None)


def _database(request: RestoreRequest, settings: FunctionSettings | None, bucket: str | None) -> str | None:
    if settings is not None:
        try:
            return settings.database(request.database).name
        except ConfigError as exc:
            raise Refused(str(exc)) from None
    if request.database or bucket is None:
        return request.database
    names = catalog.databases(bucket)  # the keys alone: _backup reads the one database's backups
    return names[0] if len(names) == 1 else None


def _backup(request: RestoreRequest, bucket: str, database: str) -> str:
    try:
        entry = choose_backup(bucket, request.backup, request.kind, database)
        if request.tables:
            resolve_tables(request.tables, entry.manifest)
    except (BackupNotFound, RestoreRefused) as exc:
        raise Refused(str(exc)) from None
    tables = f": {', '.join(request.tables)} are tables of it" if request.tables else ""
    return f"backup {entry.manifest.id} of {database}{tables}"


def check_replica(request: RestoreRequest, bucket: str, region: str) -> list[str]:
    """`dbops restore --region R --bucket B`: the replica in the DR region must be there and hold the backup (the
    catalog read from it decides, a missing bucket or backup refuses: nothing else there can be restored)."""
    try:
        names = catalog.databases(bucket)
    except BucketNotFound:
        raise Refused(f"bucket {bucket} does not exist in region {region}") from None
    database = request.database or (names[0] if len(names) == 1 else None)
    if database is None:
        held = f"backups of {', '.join(names)}: give --database" if names else "no backup"
        raise Refused(f"bucket {bucket} in region {region} holds {held}")
    if database not in names:
        raise Refused(f"bucket {bucket} in region {region} holds no backup of {database}")
    return [_backup(request.model_copy(update={"database": database}), bucket, database)]


def _window(request: RestoreRequest, settings: FunctionSettings, database: str) -> str:
    assert request.as_of is not None
    try:
        return inside_window(settings.database(database), request.as_of)
    except RestoreRefused as exc:
        raise Refused(str(exc)) from None


def check_before_start(request: RestoreRequest, bucket: str | None) -> list[str]:
    """What was checked (a line each); raises Refused with the reason when the request is refused."""
    settings = _settings()
    bucket = bucket or (settings.bucket if settings else None)
    try:
        database = _database(request, settings, bucket)
        if database is None:
            return []
        if request.as_of is not None:
            return [_window(request, settings, database)] if settings is not None else []
        return [_backup(request, bucket, database)] if bucket is not None else []
    except (StorageError, BotoCoreError, ClientError):
        return []  # cannot tell from here: the execution's Validate checks the same
