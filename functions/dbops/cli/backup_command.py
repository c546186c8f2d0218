"""dbops backup: one database backed up in this process, in either format, whole or some tables' rows."""

from __future__ import annotations

import argparse
from typing import Any

from psycopg import Connection
from pydantic import ValidationError

from dbops.backup.formats import choose_format, run_in_format
from dbops.backup.parallel.plan import copy_streams
from dbops.backup.run import BackupRequest
from dbops.backup.tables import list_tables
from dbops.cli.common import spec_from
from dbops.cli.progress import ProgressPrinter
from dbops.config.backup import BackupLock
from dbops.contract import RETAINED_KINDS
from dbops.errors import ConfigError
from dbops.postgres.connection import connect
from dbops.restore.table_choice import resolve_names
from dbops.settings import BackupLockEnvironment
from dbops.text import human_bytes, plural


def _backup_lock(args: argparse.Namespace) -> BackupLock | None:
    """--lock-mode with --lock-days, else DBOPS_BACKUP_LOCK (through dbops.settings), else none."""
    if (args.lock_mode is None) != (args.lock_days is None):
        raise ConfigError("give --lock-mode and --lock-days together (or neither: DBOPS_BACKUP_LOCK, if set)")
    if args.lock_mode is not None:
        return BackupLock(mode=args.lock_mode, days=args.lock_days)
    try:
        return BackupLockEnvironment().backup_lock
    except ValidationError as exc:
        raise ConfigError(f"DBOPS_BACKUP_LOCK is not a valid lock: {exc.errors()[0]['msg']}") from None


def _backup_kind(args: argparse.Namespace) -> str:
    """--kind, else DBOPS_KIND, else nightly (manual for --table). A backup of some tables' rows is never nightly
    or predeploy: retention would count it as one of the newest verified backups and let whole ones expire."""
    kind = args.kind or ("manual" if args.table else "nightly")
    if args.table and args.format != "parallel":
        raise ConfigError("--table takes a backup of some tables in the parallel format: add --format parallel")
    if args.table and kind in RETAINED_KINDS:
        raise ConfigError(
            f"a backup of some tables only cannot be of kind {kind} (retention would count it as a whole backup): "
            "use --kind manual (the default with --table)"
        )
    return str(kind)


def _named_tables(conn: Connection[Any], names: list[str], where: str) -> list[tuple[str, str]] | None:
    """--table: each name as restore reads it (did you mean...), with its partitions or children; None: every table."""
    if not names:
        return None
    return [(t.schema_name, t.name) for t in resolve_names(names, list_tables(conn), where)]


def cmd_backup(args: argparse.Namespace) -> int:
    spec = spec_from(args)
    kind = _backup_kind(args)
    with connect(spec) as conn:  # the size known in advance: the dump is never larger than the database
        size = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])  # type: ignore[index]
        tables = _named_tables(conn, args.table, f"database {spec.dbname}")
    request = BackupRequest(
        database=args.database_name or spec.dbname,
        bucket=args.bucket,
        kind=kind,
        pg_bin_dir=args.pg_bin,
        lock=_backup_lock(args),
        tables=tables,
    )
    progress = ProgressPrinter(size, of="database size")
    choice = choose_format(args.format, None, copy_streams(args.max_streams).count)
    try:
        manifest = run_in_format(spec, request, choice, progress=progress)
    finally:
        progress.done()
    parallel = f", {len(manifest.data)} data objects by {manifest.workers} COPY streams" if manifest.data else ""
    print(
        f"backup {manifest.id} ({manifest.kind}) of {manifest.database}: {human_bytes(manifest.archive_bytes)} "
        f"from {human_bytes(manifest.raw_bytes)} in {manifest.duration_seconds:.1f}s, "
        f"{plural(len(manifest.tables), 'table')}{parallel}"
        + (" (those tables' rows only: restore them from this backup by its id)" if manifest.tables_only else "")
    )
    return 0
