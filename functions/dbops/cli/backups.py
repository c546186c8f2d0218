"""dbops sample-data | backup | backups list | verify."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from dbops import aws
from dbops.backup import catalog
from dbops.backup.catalog import BACKUP_KINDS
from dbops.backup.retention import BackupExpiry, expiries, release_for_expiry
from dbops.backup.verify import verify_entry
from dbops.cli.backup_command import cmd_backup
from dbops.cli.common import (
    EnvDefault,
    add_backup_choice,
    add_bucket,
    add_database_url,
    add_pg_bin,
    add_region,
    add_state_machine,
    find_state_machine,
    print_json,
    print_table,
    spec_from,
)
from dbops.cli.progress import ProgressPrinter
from dbops.cli.sample_data import create_sample_data
from dbops.config.backup import DEFAULT_KEEP, DEFAULT_MAX_STREAMS
from dbops.contract import REFUSED_STATUS, REQUESTED_KINDS, RETAINED_KINDS
from dbops.errors import VerificationFailed
from dbops.postgres.connection import connect
from dbops.text import human_age, human_bytes, plural

MAX_SCALE = 10_000.0  # about 1 TB


def _scale(text: str) -> float:
    """--scale: a number above 0 (1 is about 100 MB), refused by argparse otherwise (nan, -1, inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= MAX_SCALE:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r}: give a number above 0 and at most {MAX_SCALE:g}")
    return value


def cmd_sample_data(args: argparse.Namespace) -> int:
    spec = spec_from(args)
    with connect(spec.for_database("postgres")) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [spec.dbname]).fetchone()
        if not exists:
            from psycopg import sql

            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(spec.dbname)))
    counts = create_sample_data(spec, args.scale, progress=lambda t, n: print(f"  {t}: {plural(n, 'row')}", flush=True))
    print(f"sample data in {spec.dbname}: {plural(sum(counts.values()), 'row')} in {plural(len(counts), 'table')}")
    return 0


BACKUP_MACHINE_ENV = "DBOPS_BACKUP_STATE_MACHINE_ARN"


BRANCH_ENDS = ("Backup", "BackedUpOnFargate", "RecordFailure")  # the last state of each database's branch


def _plain(message: str, database: str) -> str:
    """A failed backup's error with its database named once: the line says whose it is."""
    message = message.removeprefix(f"{database}: ")  # the Backup function's "<database>: <error>"
    for phrase in (f" of database {database}", f" of {database}"):
        message = message.replace(phrase, "", 1)
    return message


def _branches(execution: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each database's result as its branch ended, from the whole history: (succeeded, failed)."""
    from dbops.aws import stepfunctions

    try:
        ends = stepfunctions.state_outputs(stepfunctions.history(execution), BRANCH_ENDS)
    except (BotoCoreError, ClientError):
        return [], []  # the execution's own cause is printed already
    succeeded = [out for name, out in ends if name != "RecordFailure" and out.get("ok")]
    return succeeded, [out for name, out in ends if name == "RecordFailure"]


def _print_success(result: dict[str, Any]) -> None:
    where = f" on {result['runner']}" if result.get("runner") else ""
    print(f"  {result['database']}: backup {result.get('backup_id') or '(see the catalog)'}{where}")


def cmd_start(args: argparse.Namespace) -> int:
    """Start the backup state machine (as the nightly schedule does) for an on-demand or pre-deployment backup,
    follow it, and print each database's result; exit 1 when any database's backup failed, 2 when the request was
    refused (a database not configured)."""
    from dbops.aws import stepfunctions  # not loaded for `dbops backup`

    arn = find_state_machine(
        args.state_machine_arn,
        what="backup",
        name_prefix="dbops-backup",
        logical_name="BackupStateMachine",
        envvar=BACKUP_MACHINE_ENV,
    )
    request: dict[str, Any] = {"kind": args.kind}
    if args.database:
        request["databases"] = args.database
    execution = stepfunctions.start(arn, f"{args.kind}-{uuid.uuid4().hex[:12]}", json.dumps(request), "backup")
    print(f"started {execution.rsplit(':', 1)[-1]}", flush=True)
    description = stepfunctions.follow(
        execution, lambda kind, name: print(f"  {'->' if kind == 'entered' else '!!'} {name}")
    )
    if description["status"] != "SUCCEEDED":
        print(f"FAILED: {stepfunctions.outcome(description)}")
        succeeded, failed = _branches(execution)
        for failure in failed:
            database = failure["database"]
            print(f"  {database}: {_plain(stepfunctions.error_message(str(failure.get('cause', ''))), database)}")
        for result in succeeded:
            _print_success(result)
        return 1
    output = json.loads(description.get("output") or "{}")
    if output.get("status") == REFUSED_STATUS:  # nothing backed up: the request itself was refused
        print(f"refused, nothing backed up: {output.get('reason', '')}")
        return 2
    for result in output.get("results", []):
        _print_success(result)
    print(f"succeeded: {args.kind} backup of every database asked for")
    return 0


def _expiry_text(expiry: BackupExpiry, keep: int) -> str:
    """`backups list`'s EXPIRES: the lifecycle's date, or what keeps the backup; and its lock."""
    if expiry.kept:
        text = f"kept: newest {keep} verified"
    elif expiry.expires_at is not None:
        text = expiry.expires_at.strftime("%Y-%m-%d")
    else:
        text = "never (no lifecycle rule)"
    if expiry.locked_until is not None:
        text += f"; locked ({(expiry.lock_mode or '').lower()}) until {expiry.locked_until:%Y-%m-%d %H:%M}"
    return text


def _entry_row(entry: catalog.CatalogEntry, expiry: BackupExpiry) -> dict[str, Any]:
    m = entry.manifest
    return {
        "class": expiry.backup_class,
        "expires_at": expiry.expires_at.isoformat() if expiry.expires_at else None,
        "kept_by_retention": expiry.kept,
        "lock_mode": expiry.lock_mode,
        "locked_until": expiry.locked_until.isoformat() if expiry.locked_until else None,
        "id": m.id,
        "kind": m.kind,
        "database": m.database,
        "finished_at": m.finished_at.isoformat(),
        "age_seconds": round(entry.age_seconds()),
        "size": m.archive_bytes,
        "format": m.format,
        "verified": entry.verified,
    }


def print_catalog(
    entries: list[catalog.CatalogEntry], expiry: dict[str, BackupExpiry] | None = None, keep: int = DEFAULT_KEEP
) -> None:
    verified = {True: "yes", False: "FAILED", None: "-"}
    extra = ["CLASS", "EXPIRES"] if expiry is not None else []
    print_table(
        ["ID", "KIND", "DATABASE", "AGE", "SIZE", "VERIFIED", *extra],
        [
            [
                e.manifest.id,
                e.manifest.kind,
                e.manifest.database,
                human_age(e.age_seconds()),
                human_bytes(e.manifest.archive_bytes),
                verified[e.verified],
                *(
                    [expiry[e.manifest.id].backup_class, _expiry_text(expiry[e.manifest.id], keep)]
                    if expiry is not None
                    else []
                ),
            ]
            for e in entries
        ],
    )


def cmd_list(args: argparse.Namespace) -> int:
    if args.region:
        aws.use_region(args.region)  # the replica bucket in the DR region
    entries = catalog.list_backups(args.bucket, kind=args.kind, database=args.database)
    expiry = expiries(args.bucket, entries)
    if args.json:
        print_json([_entry_row(e, expiry[e.manifest.id]) for e in entries])
        return 0
    print_catalog(entries, expiry, args.keep_verified or DEFAULT_KEEP)
    return 0


def _at_least_one(what: str, too_few: str) -> Callable[[str], int]:
    """An argparse type: a whole number (`what`) of at least 1; `too_few` says why 0 is refused."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{text!r}: {too_few}")
        return value

    return parse


# --keep-verified (keeping none would let the lifecycle empty the bucket) and --lock-days
_keep = _at_least_one("a whole number", "keep at least 1 verified backup")
_days = _at_least_one("a whole number of days", "lock for at least 1 day")


def cmd_verify(args: argparse.Namespace) -> int:
    entry = catalog.find_backup(args.bucket, args.backup, kind=args.kind, database=args.database)
    try:
        progress = ProgressPrinter(entry.manifest.dump.size)
        try:
            result = verify_entry(args.bucket, entry, args.pg_bin, progress=progress)
        finally:
            progress.done()
    except VerificationFailed as exc:
        print(f"FAILED: {exc}")
        return 1
    print(f"verified backup {result.backup_id} in {result.seconds:.1f}s: {result.detail}")
    if args.keep_verified is not None and entry.manifest.kind in RETAINED_KINDS:
        kept = release_for_expiry(args.bucket, entry.manifest.kind, entry.manifest.database, args.keep_verified)
        print(
            f"retention ({kept.kind} of {kept.database}): "
            f"{plural(len(kept.protected), 'backup')} kept whatever their age, "
            f"{len(kept.expirable)} expire at the bucket's age (newest {kept.keep} verified always kept)"
        )
        if kept.ledger_error:  # the tags are right; the next pass reads more of them
            print(f"warning: {kept.ledger_error}", file=sys.stderr)
    return 0


def _add_keep_verified(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument(
        "--keep-verified",
        action=EnvDefault,
        envvar="DBOPS_RETENTION_KEEP",
        required=False,
        type=_keep,
        metavar="N",
        help=help_text,
    )


def register(sub: Any) -> None:
    p = sub.add_parser("sample-data", help="create the Sprint Reports v2 sample schema and data")
    add_database_url(p)
    p.add_argument("--scale", type=_scale, default=1.0, help="1 is about 100 MB")
    p.set_defaults(run=cmd_sample_data)

    p = sub.add_parser("backup", help="dump a database into the backup bucket")
    add_database_url(p)
    add_bucket(p)
    add_pg_bin(p)
    p.add_argument(
        "--kind",
        action=EnvDefault,
        envvar="DBOPS_KIND",
        required=False,
        choices=BACKUP_KINDS,
        help="default: nightly (manual with --table)",
    )
    p.add_argument(
        "--database-name",
        action=EnvDefault,
        envvar="DBOPS_DATABASE_NAME",
        required=False,
        help="name in the catalog (default: the URL's database)",
    )
    p.add_argument(
        "--format",
        choices=["single", "parallel"],
        default="single",
        help="single: one pg_dump archive; parallel: tables in ranges, COPYed by several streams at once",
    )
    p.add_argument("--max-streams", type=int, default=DEFAULT_MAX_STREAMS, help="parallel: COPY streams at most")
    p.add_argument(
        "--table",
        action="append",
        default=[],
        metavar="TABLE",
        help="parallel: back up only this table's rows (with its partitions or children), as a selective restore's "
        "safety backup does; repeat for more; restore it by its id with those tables",
    )
    p.add_argument(
        "--lock-mode",
        choices=["governance", "compliance"],
        help="S3 Object Lock on every object written (the bucket must have Object Lock; default: DBOPS_BACKUP_LOCK)",
    )
    p.add_argument("--lock-days", type=_days, metavar="DAYS", help="with --lock-mode: how long the lock holds")
    p.set_defaults(run=cmd_backup)

    p = sub.add_parser("backups", help="the backup catalog")
    backups_sub = p.add_subparsers(dest="action", required=True)
    lp = backups_sub.add_parser("list", help="committed backups, newest first")
    add_bucket(lp)
    lp.add_argument("--kind", choices=BACKUP_KINDS)
    lp.add_argument("--database")
    lp.add_argument("--json", action="store_true")
    add_region(lp, "the bucket's region, when not the environment's (the DR region's replica)")
    _add_keep_verified(lp, "the N in 'kept: newest N verified' (the stack's retention_days.keep_newest_verified)")
    lp.set_defaults(run=cmd_list)
    sp = backups_sub.add_parser(
        "start", help="back up through the backup state machine (on demand, before a deployment), following it"
    )
    sp.add_argument("--kind", choices=REQUESTED_KINDS, default="manual")
    sp.add_argument("--database", action="append", help="a configured database (repeatable; default: every one)")
    add_state_machine(sp, BACKUP_MACHINE_ENV, "dbops-backup")
    sp.set_defaults(run=cmd_start)

    p = sub.add_parser("verify", help="check a backup's size, sha256 and a full pg_restore read")
    add_backup_choice(p)
    add_bucket(p)
    add_pg_bin(p)
    _add_keep_verified(
        p,
        "then tag the kind's older backups for expiry, never the newest N verified (the stack's "
        "retention_days.keep_newest_verified: give the same N)",
    )
    p.set_defaults(run=cmd_verify)
