"""`dbops export` of a single-format backup: restored in full into a new database, through the restore path Stage
and rehearsals take (dbops.restore.load); a database that exists is refused and left as it was."""

from __future__ import annotations

import uuid

import pytest

from dbops.backup.run import BackupRequest, run_backup
from dbops.cli import EXIT_USAGE, main
from dbops.postgres.connection import ConnectionSpec, connect
from dbops.text import human_bytes
from local_stack.postgres import LocalPostgres
from tests.support import table_checksums


def test_export_of_a_single_format_backup_restores_every_row(
    sample_db: ConnectionSpec, bucket: str, pg: LocalPostgres, capsys: pytest.CaptureFixture[str]
) -> None:
    before = table_checksums(sample_db)
    manifest = run_backup(sample_db, BackupRequest(database="sprint_reports_v2", bucket=bucket))
    target = f"export_{uuid.uuid4().hex[:8]}"
    try:
        code = main(["export", manifest.id, "--into", target, "--bucket", bucket, "--database-url", pg.url()])
        assert code == 0
        assert table_checksums(sample_db.for_database(target)) == before
        # progress (plain lines: not a terminal): the archive's bytes read, up to the manifest's size
        total = human_bytes(manifest.dump.raw_size)
        assert f"  restore: {total} of {total}, " in capsys.readouterr().err

        # a second export into the same database is refused, and the database stays as the first left it
        again = main(["export", manifest.id, "--into", target, "--bucket", bucket, "--database-url", pg.url()])
        assert again == EXIT_USAGE  # refused
        assert f"database {target} exists" in capsys.readouterr().err
        assert table_checksums(sample_db.for_database(target)) == before
    finally:
        with connect(ConnectionSpec.from_url(pg.url())) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
