"""dbops restore | restores list: start the restore state machine and follow it live."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from dbops import aws
from dbops.aws.stepfunctions import follow, outcome
from dbops.backup.catalog import BACKUP_KINDS
from dbops.cli import EXIT_USAGE, common
from dbops.cli.common import add_bucket_optional, add_region, print_json, print_table
from dbops.cli.restore_checks import check_before_start, check_replica, configured_bucket
from dbops.cli.stage_progress import StageProgress
from dbops.contract import REFUSED_STATUS
from dbops.errors import RefusedBeforeStart
from dbops.restore.models import RestoreRequest
from dbops.restore.runner import list_restores, start_restore

MACHINE_ENV = "DBOPS_RESTORE_STATE_MACHINE_ARN"


def find_state_machine(explicit: str | None) -> str:
    """The deployed (or local) restore state machine: given, or the one named dbops-restore*."""
    return common.find_state_machine(
        explicit, what="restore", name_prefix="dbops-restore", logical_name="RestoreStateMachine", envvar=MACHINE_ENV
    )


def _print_state(kind: str, name: str) -> None:
    print(f"  {'->' if kind == 'entered' else '!!'} {name}", flush=True)


def cmd_restore(args: argparse.Namespace) -> int:
    if args.region:
        if not args.bucket:
            print("dbops restore: --region restores from the replica there: give its --bucket", file=sys.stderr)
            return EXIT_USAGE
        aws.use_region(args.region)  # the replica, and the DR stack's state machine, in that region
    request = RestoreRequest(
        backup=args.backup,
        kind=args.kind,
        database=args.database,
        tables=args.table or [],
        target=args.target,
        mode="drill" if args.drill else "restore",
        dry_run=args.dry_run,
        as_of=args.as_of,
    )
    try:
        checked = check_replica(request, args.bucket, args.region) if args.region else []
        arn = find_state_machine(args.state_machine_arn)
        for line in checked or check_before_start(request, args.bucket):
            print(f"checked before starting: {line}", flush=True)
    except RefusedBeforeStart as exc:
        reason = " ".join(str(exc).split())
        print(f"REFUSED (checked before starting; no execution started): {reason}", file=sys.stderr)
        return EXIT_USAGE  # refused: nothing started
    execution = start_restore(arn, request)
    print(f"started {execution.rsplit(':', 1)[-1]}", flush=True)
    stage = StageProgress(configured_bucket(args.bucket), execution, _print_state)  # Stage's bytes, rate, time left
    description = follow(execution, stage.on_state, on_poll=stage.on_poll, exits=True)
    if description["status"] == "SUCCEEDED":
        output = json.loads(description.get("output") or "{}")
        if output.get("status") == REFUSED_STATUS:  # the execution's Validate refused it: nothing changed
            print(f"REFUSED: {output.get('reason', '')}", file=sys.stderr)
            return EXIT_USAGE  # refused: nothing started
    text = outcome(description)
    print(("succeeded: " if description["status"] == "SUCCEEDED" else "FAILED: ") + text)
    return 0 if description["status"] == "SUCCEEDED" else 1


def cmd_list(args: argparse.Namespace) -> int:
    executions = list_restores(find_state_machine(args.state_machine_arn), limit=args.limit)
    if args.json:
        print_json(executions)
        return 0
    rows: list[list[str]] = [
        [e["name"], e["status"], str(e["startDate"])[:19], str(e.get("stopDate", ""))[:19]] for e in executions
    ]
    print_table(["EXECUTION", "STATUS", "STARTED", "STOPPED"], rows)
    return 0


MAX_LIST = 1000  # Step Functions' maxResults


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_LIST:
        raise argparse.ArgumentTypeError(f"{value}: give 1 to {MAX_LIST}")
    return value


def _machine_flag(p: argparse.ArgumentParser) -> None:
    common.add_state_machine(p, MACHINE_ENV, "dbops-restore")


def register(sub: Any) -> None:
    p = sub.add_parser("restore", help="restore side by side through the state machine, following it live")
    p.add_argument("--backup", default="latest", help="backup id or latest (default)")
    p.add_argument("--kind", choices=BACKUP_KINDS, help="with latest: newest of this kind")
    p.add_argument("--database", help="configured database name (default: the only one)")
    p.add_argument("--table", action="append", help="restore only this table (repeatable)")
    p.add_argument("--target", help="target database (default: the backup's)")
    p.add_argument("--drill", action="store_true", help="restore into a scratch database, check, drop")
    p.add_argument("--dry-run", action="store_true", help="validate and show the plan; change nothing")
    p.add_argument(
        "--as-of",
        metavar="MOMENT",
        help='restore as the database was at this moment, e.g. "2026-11-29 14:04:00+00", from its RDS instance\'s '
        "point-in-time recovery (a temporary instance, deleted after) instead of a backup",
    )
    add_bucket_optional(p, "the backup bucket, to check the backup and its tables before starting")
    add_region(
        p,
        "restore from the replica in this (DR) region: reads the catalog from --bucket there and starts the "
        "DR stack's restore state machine there",
    )
    _machine_flag(p)
    p.set_defaults(run=cmd_restore)

    p = sub.add_parser("restores", help="restore executions")
    rsub = p.add_subparsers(dest="action", required=True)
    lp = rsub.add_parser("list", help="recent restore and drill executions")
    _machine_flag(lp)
    lp.add_argument("--limit", type=_limit, default=20, help=f"at most {MAX_LIST} (default 20)")
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(run=cmd_list)
