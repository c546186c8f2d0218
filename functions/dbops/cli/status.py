"""dbops status: a row per database, the worst first, read from the bucket, CloudWatch and RDS (nothing run)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from dbops.cli import error_line, typed_names
from dbops.cli.common import EnvDefault, add_bucket, print_json, print_table
from dbops.config.databases import DatabaseConfig
from dbops.contract import ENV_DATABASES
from dbops.errors import ConfigError, DbopsError, validation_problems
from dbops.health.model import Status
from dbops.status import StatusReport, StatusTarget, check_status
from dbops.status.model import ASPECTS
from dbops.status.schedule import next_run

EXIT_CHECK_FAILED = 3
DESCRIPTION = """A row per configured database (backups, next backup, retention, point in time, drill, health,
rehearsal, alarms), the worst first; read from the bucket, CloudWatch and RDS only, nothing run.

Exit codes follow the monitoring-plugin convention, as `dbops health`: 0 ok, 1 warn, 2 critical, 3 when something
could not be read (and nothing is critical) or the settings are invalid. An aspect with nothing to grade
(`unknown`: no drill recorded, no RDS instance, no health report kept) changes nothing.
"""
HEADERS = [
    "DATABASE",
    "STATUS",
    "BACKUP",
    "NEXT",
    "RETAINED",
    "POINT IN TIME",
    "DRILL",
    "HEALTH",
    "REHEARSAL",
    "ALARMS",
]
_CONFIGURED: TypeAdapter[list[DatabaseConfig]] = TypeAdapter(list[DatabaseConfig])


def _targets(args: argparse.Namespace) -> list[StatusTarget]:
    """The databases: DBOPS_DATABASES (--databases), narrowed to --database; else --database; else every database
    the catalog holds backups of."""
    try:
        configured = _CONFIGURED.validate_json(args.databases) if args.databases else []
    except ValidationError as exc:
        raise ConfigError(f"invalid --databases: {validation_problems(exc, plain=True)}") from None
    by_name = {db.name: db for db in configured}
    names = args.database or list(by_name)
    if not names:
        from dbops.backup import catalog

        names = catalog.databases(args.bucket)  # the keys alone: check_status reads each database's backups
    if args.schedule:
        next_run(args.schedule, datetime.now(UTC))  # a schedule it cannot read: refused before anything is read
    return [
        StatusTarget(name=name, rds=by_name[name].rds_source() if name in by_name else None, schedule=args.schedule)
        for name in names
    ]


def _now(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--now {text!r} is not an ISO 8601 moment, e.g. 2026-12-01T09:00:00+00:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _cell(status: Status, text: str) -> str:
    return text if status in (Status.OK, Status.UNKNOWN) else f"{status.value.upper()}: {text}"


def format_status(report: StatusReport) -> list[list[str]]:
    rows = []
    for db in report.databases:
        cells = [_cell(db.aspect(name).status, db.aspect(name).text) for name in ASPECTS]
        rows.append([db.database, db.status.value.upper(), *cells])
    return rows


def cmd_status(args: argparse.Namespace) -> int:
    try:
        targets = _targets(args)
        now = _now(args.now)
    except (DbopsError, ValidationError, ValueError) as exc:
        print(f"dbops: error: {error_line(exc, typed_names(args))}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    report = check_status(args.bucket, targets, now=now)
    if args.json:
        print_json({**report.model_dump(mode="json"), "exit_code": report.exit_code})
    elif not report.databases:
        print(f"no database configured and no backup in s3://{args.bucket}")
    else:
        print(f"Status at {report.checked_at:%Y-%m-%d %H:%M:%S} UTC, s3://{report.bucket}")
        print_table(HEADERS, format_status(report))
    return report.exit_code


HELP = "every database's backups, recovery, drills, health and alarms (exit 0 ok, 1 warn, 2 critical, 3 unread)"
OPTIONS_FROM_ENV = (
    (
        "--databases",
        ENV_DATABASES,
        "the configured databases, as the functions have them (JSON: name, rds_instance_id)",
    ),
    ("--schedule", "DBOPS_BACKUP_SCHEDULE", "the backups' EventBridge expression, e.g. 'cron(0 2 * * ? *)'"),
)


def register(sub: Any) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("status", help=HELP, description=DESCRIPTION, formatter_class=formatter)
    add_bucket(p)
    for flag, envvar, text in OPTIONS_FROM_ENV:
        p.add_argument(flag, action=EnvDefault, envvar=envvar, required=False, help=text)
    p.add_argument("--database", action="append", help="only this database (repeatable)")
    p.add_argument("--now", help="grade as of this ISO 8601 moment instead of now")
    p.add_argument("--json", action="store_true", help="every aspect with its values, and exit_code")
    p.set_defaults(run=cmd_status)
