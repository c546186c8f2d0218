"""A database's backup as an ECS Fargate task, for databases whose backup will not finish inside Lambda's limit.

The backup state machine runs it (ecs:runTask.sync, the restore stage task's image and task definition with this
command) when dbops.backup.placement says so, with the database and the kind in DBOPS_BACKUP_DATABASE and
DBOPS_BACKUP_KIND. It runs the Backup function's own code (dbops.backup.database_backup) with no deadline: the same
manifest, the same BackupSucceeded / BackupFailed metrics (sent with PutMetricData: CloudWatch does not read a task's
awslogs output as EMF), the same retention tagging. Anything else ends the task with one line on stderr and the
command line's exit codes (dbops.contract): 2 a missing or invalid variable or an unknown database (nothing done),
3 the database, a tool or the bucket out of reach, 1 a backup that ran and failed. The state machine's Catch records
it for that database, and `dbops backups start` prints the task's stop reason and exit code with its meaning.
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


def _fail(message: str, code: int) -> int:
    print(f"dbops backup task: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    return code


def main() -> int:
    try:
        env = BackupTaskEnvironment()
        database, kind = parse_task_request(env.database, env.kind)
        settings = FunctionSettings()
        settings.database(database)  # a database that is not configured fails here, with its name
    except ValidationError as exc:  # the settings: never echo their values (a database URL holds a password)
        return _fail(f"invalid settings: {validation_problems(exc)}", contract.EXIT_USAGE)
    except (ValueError, DbopsError) as exc:
        return _fail(str(exc), contract.EXIT_USAGE)
    send_metrics_with_api()
    result = backup_one(settings, database, kind, deadline=None)
    if not result.ok:
        code = contract.EXIT_COULD_NOT_RUN if result.could_not_run else contract.EXIT_FAILURE
        return _fail(f"{database}: {result.error}", code)
    print(f"backed up {database} ({kind}): backup {result.backup_id}, {result.bytes} bytes", flush=True)
    return contract.EXIT_DONE


if __name__ == "__main__":
    sys.exit(main())
