"""A database's backup as an ECS Fargate task, for databases whose backup will not finish inside Lambda's limit.

The backup state machine runs it (ecs:runTask.sync, the restore stage task's image and task definition with this
command) when dbops.backup.placement says so, with the database and the kind in DBOPS_BACKUP_DATABASE and
DBOPS_BACKUP_KIND. It runs the Backup function's own code (dbops.backup.database_backup) with no deadline: the same
manifest, the same BackupSucceeded / BackupFailed metrics (sent with PutMetricData: CloudWatch does not read a task's
awslogs output as EMF), the same retention tagging. A missing or invalid
variable, or a backup that fails, ends the task with one line on stderr and exit code 1 (the state machine's Catch
records it for that database).
"""

from __future__ import annotations

import sys
from typing import cast

from pydantic import ValidationError

from dbops import contract
from dbops.backup.catalog import BackupKind
from dbops.contract import REQUESTED_KINDS
from dbops.errors import DbopsError, validation_problems
from dbops.settings import BackupTaskEnvironment, FunctionSettings
from handlers.backup_outcome import backup_one
from handlers.observability import send_metrics_with_api

DATABASE_VARIABLE = contract.ENV_BACKUP_DATABASE
KIND_VARIABLE = contract.ENV_BACKUP_KIND


def parse_task_request(database: str | None, kind: str | None) -> tuple[str, BackupKind]:
    """The database and kind as the state machine passed them; a ValueError names what is wrong."""
    if not database or not database.strip():
        raise ValueError(f"{DATABASE_VARIABLE} is not set: the backup state machine passes the database in it")
    if kind not in REQUESTED_KINDS:
        given = "not set" if kind is None else f"{kind[:40]!r}"
        raise ValueError(f"{KIND_VARIABLE} is {given}: give one of {', '.join(REQUESTED_KINDS)}")
    return database.strip(), cast(BackupKind, kind)


def _fail(message: str) -> int:
    print(f"dbops backup task: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    return 1


def main() -> int:
    try:
        env = BackupTaskEnvironment()
        database, kind = parse_task_request(env.database, env.kind)
        settings = FunctionSettings()
        settings.database(database)  # a database that is not configured fails here, with its name
    except ValidationError as exc:  # the settings: never echo their values (a database URL holds a password)
        return _fail(f"invalid settings: {validation_problems(exc)}")
    except (ValueError, DbopsError) as exc:
        return _fail(str(exc))
    send_metrics_with_api()
    result = backup_one(settings, database, kind, deadline=None)
    if not result.ok:
        return _fail(f"{database}: {result.error}")
    print(f"backed up {database} ({kind}): backup {result.backup_id}, {result.bytes} bytes", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
