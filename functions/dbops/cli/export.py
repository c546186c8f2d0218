"""dbops export: a backup (either format) restored in full into a new database, in this process."""

from __future__ import annotations

import argparse
import time
from typing import Any

from dbops.backup import catalog
from dbops.cli.common import add_backup_choice, add_bucket, add_database_url, add_pg_bin, spec_from
from dbops.cli.progress import ProgressPrinter
from dbops.restore.export import export_backup
from dbops.restore.load import restore_size


def cmd_export(args: argparse.Namespace) -> int:
    entry = catalog.find_backup(args.bucket, args.backup, kind=args.kind, database=args.database)
    manifest = entry.manifest
    t0 = time.monotonic()
    progress = ProgressPrinter(restore_size(manifest))
    try:
        export_backup(
            args.bucket, manifest, spec_from(args), args.into, jobs=args.jobs, pg_bin=args.pg_bin, progress=progress
        )
    finally:
        progress.done()
    objects = f" ({len(manifest.data)} data objects)" if manifest.data else ""
    seconds = time.monotonic() - t0
    print(f"backup {manifest.id} ({manifest.format}{objects}) of {manifest.database}: {args.into} in {seconds:.1f}s")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("export", help="restore a backup in full into a new database (no swap)")
    add_database_url(p)
    add_backup_choice(p)
    p.add_argument("--into", required=True, help="the new database's name (on the --database-url server)")
    p.add_argument("--jobs", type=int, default=2, help="data objects loaded at once, and pg_restore -j")
    add_bucket(p)
    add_pg_bin(p)
    p.set_defaults(run=cmd_export)
