"""dbops rehearse [flags] -- COMMAND: rehearse a migration on a scratch copy of production; exit 0 pass, 1 fail,
2 bad input (flags, no command, no backup to rehearse on)."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from typing import Any, NoReturn

from dbops.backup.catalog import BACKUP_KINDS
from dbops.cli.common import EnvDefault, add_database_url, add_pg_bin, add_state_machine, print_json, spec_from
from dbops.cli.progress import ProgressPrinter
from dbops.cli.rehearse_deployed import run_deployed
from dbops.errors import ConfigError
from dbops.rehearsal import (
    RehearsalRefused,
    RehearsalRequest,
    format_report,
    parse_duration,
    run_rehearsal,
)
from dbops.rehearsal.models import DEFAULT_STALE_AFTER_S

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
DEFAULT_MAX_LOCK_S, DEFAULT_MAX_DURATION_S = 5.0, 600.0


def _duration(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a duration longer than zero")
    return seconds


def _grace(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _downgrade(text: str) -> list[str]:
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"cannot read the downgrade command: {exc}") from None
    if not argv:
        raise argparse.ArgumentTypeError("the downgrade command is empty")
    return argv


def _usage(message: str) -> int:
    print(f"dbops: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _terminated(signum: int, _frame: Any) -> NoReturn:
    """SIGTERM ends the rehearsal like Ctrl-C: the command is stopped and the scratch database dropped."""
    raise KeyboardInterrupt


def _say(line: str) -> None:
    print(f"dbops rehearse: {line}", file=sys.stderr, flush=True)


def _echo(line: str) -> None:
    print(f"  | {line}", file=sys.stderr, flush=True)


def cmd_rehearse(args: argparse.Namespace) -> int:
    if args.deployed:
        try:
            return run_deployed(args)
        except ConfigError as exc:
            return _usage(str(exc))
    if not args.migration:
        return _usage("give the migration command after --, e.g. dbops rehearse -- alembic upgrade head")
    if not args.database_url:
        return _usage("give --database-url (or DBOPS_DATABASE_URL), or rehearse in the stack with --deployed")
    if args.from_database and (args.backup != "latest" or args.kind):
        return _usage("--from-database rehearses on a fresh dump: it takes no --backup or --kind")
    if args.downgrade and args.no_downgrade:
        return _usage("give --downgrade or --no-downgrade, not both")
    spec = spec_from(args)
    request = RehearsalRequest(
        database=args.database_name or spec.dbname,
        command=args.migration,
        source="database" if args.from_database else "backup",
        backup=args.backup,
        kind=args.kind,
        url_env=args.url_env,
        downgrade=args.downgrade,
        skip_downgrade=args.no_downgrade,
        version_table=args.version_table or None,
        max_lock_s=DEFAULT_MAX_LOCK_S if args.max_lock is None else args.max_lock,
        max_duration_s=DEFAULT_MAX_DURATION_S if args.max_duration is None else args.max_duration,
        interval_s=args.interval,
        pass_env=args.pass_env or [],
        stale_after_s=args.stale_after,
    )
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if in_main_thread else None
    try:
        result = run_rehearsal(
            spec,
            request,
            bucket=None if args.from_database else args.bucket,
            pg_bin_dir=args.pg_bin,
            progress=_say,
            output=None if args.quiet else _echo,
            copy_progress=ProgressPrinter(),
        )
    except RehearsalRefused as exc:
        return _usage(str(exc))
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    if args.json:
        print_json(result.model_dump(mode="json"))
    else:
        print(format_report(result))
    return EXIT_PASS if result.passed else EXIT_FAIL


def register(sub: Any) -> None:
    p = sub.add_parser(
        "rehearse",
        help="rehearse a migration on a scratch copy of the database: locks, rewrites, rollback, verdict",
        description="Restore a backup into a scratch database, run the command after -- against it (its URL in "
        "$DATABASE_URL) while its locks are measured, run the rollback, compare the schema, drop the scratch "
        "database. Exit 0 pass, 1 fail, 2 bad input. Production is only read (the backup's server hosts the copy).",
    )
    add_database_url(p, required=False)  # not with --deployed
    p.add_argument(
        "--bucket",
        action=EnvDefault,
        envvar="DBOPS_BUCKET",
        required=False,
        help="the backup bucket (not with --from-database)",
    )
    add_pg_bin(p)
    p.add_argument(
        "--database-name",
        action=EnvDefault,
        envvar="DBOPS_DATABASE_NAME",
        required=False,
        help="the database's name in the catalog (default: the URL's database)",
    )
    p.add_argument("--backup", default="latest", help="backup id or latest (default)")
    p.add_argument("--kind", choices=BACKUP_KINDS, help="with latest: the newest of this kind")
    p.add_argument(
        "--from-database",
        action="store_true",
        help="rehearse on a fresh pg_dump of the database instead of a backup (no bucket needed; reads production)",
    )
    p.add_argument(
        "--max-lock",
        type=_duration,
        help=f"fail when a lock blocks the application longer (500ms, 5s, 2m; default {DEFAULT_MAX_LOCK_S:g}s)",
    )
    p.add_argument(
        "--max-duration",
        type=_duration,
        help="stop the command (the downgrade too, on its own clock) and fail after this long (default 10m)",
    )
    p.add_argument("--interval", type=_duration, default=0.02, help="sampling interval (default 20ms)")
    p.add_argument("--url-env", default="DATABASE_URL", help="the variable the command reads the URL from")
    p.add_argument(
        "--downgrade", type=_downgrade, help='the rollback command (default: "alembic ... downgrade <revision before>")'
    )
    p.add_argument("--no-downgrade", action="store_true", help="rehearse the upgrade alone")
    p.add_argument(
        "--version-table",
        default="alembic_version",
        help="the migration tool's version table: revision read from it, left out of the schema comparison "
        "('' for none)",
    )
    p.add_argument("--pass-env", action="append", metavar="NAME", help="pass this variable of ours to the command")
    p.add_argument(
        "--stale-after",
        type=_grace,
        default=DEFAULT_STALE_AFTER_S,
        help="drop scratch databases of dead rehearsals once this old "
        f"(default {DEFAULT_STALE_AFTER_S:.0f}s: a rehearsal's keeper session connects within it)",
    )
    p.add_argument(
        "--deployed",
        action="store_true",
        help="run it in the deployed stack (restore state machine, mode rehearse: the migration image on Fargate) "
        "and follow it; the command after -- is optional (default: the database's configured one)",
    )
    add_state_machine(p, "DBOPS_RESTORE_STATE_MACHINE_ARN", "dbops-restore")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="do not echo the command's output on stderr")
    p.add_argument("migration", nargs="*", metavar="-- COMMAND", help="the migration, e.g. alembic upgrade head")
    p.set_defaults(run=cmd_rehearse)
