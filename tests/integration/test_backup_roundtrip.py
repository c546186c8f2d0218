"""A backup of the sample restores into a new database with identical content (both server versions)."""

from __future__ import annotations

from collections.abc import Callable

import zstandard

from dbops import aws
from dbops.backup import catalog
from dbops.backup.run import BackupRequest, run_backup
from dbops.postgres.connection import ConnectionSpec, connect
from dbops.postgres.pgrestore import run_pg_restore
from tests.support import table_checksums


def _restore_into(manifest: catalog.BackupManifest, bucket: str, target: ConnectionSpec) -> None:
    body = aws.client("s3").get_object(Bucket=bucket, Key=manifest.dump.key)["Body"].read()
    archive = zstandard.ZstdDecompressor().decompressobj().decompress(body)
    run_pg_restore(target, ["--no-owner"], stdin=archive)


def test_backup_restores_with_identical_content(
    sample_db: ConnectionSpec, make_database: Callable[..., ConnectionSpec], bucket: str
) -> None:
    before = table_checksums(sample_db)
    manifest = run_backup(sample_db, BackupRequest(database="sprint_reports_v2", bucket=bucket))

    assert {f"{t.schema_name}.{t.name}": t.rows for t in manifest.tables} == {k: v[0] for k, v in before.items()}
    assert manifest.dump.size < manifest.dump.raw_size  # compressed
    target = make_database(empty=True)
    _restore_into(manifest, bucket, target)
    assert table_checksums(target) == before


def test_manifest_counts_rows_in_the_dumps_snapshot_while_writes_continue(
    sample_db: ConnectionSpec, make_database: Callable[..., ConnectionSpec], bucket: str
) -> None:
    progress_calls: list[int] = []

    def write_during_dump(what: str, raw: int) -> None:
        progress_calls.append(raw)
        if len(progress_calls) == 1:  # the dump is running: a concurrent writer commits new rows
            with connect(sample_db) as conn:
                conn.execute("INSERT INTO teams (name) VALUES ('late team')")

    manifest = run_backup(sample_db, BackupRequest(database="db", bucket=bucket), progress=write_during_dump)
    target = make_database(empty=True)
    _restore_into(manifest, bucket, target)
    restored = table_checksums(target)
    assert {f"{t.schema_name}.{t.name}": t.rows for t in manifest.tables} == {k: v[0] for k, v in restored.items()}
    assert table_checksums(sample_db)["public.teams"][0] == restored["public.teams"][0] + 1


def test_predeploy_backup_adds_a_schema_only_sql_dump(sample_db: ConnectionSpec, bucket: str) -> None:
    manifest = run_backup(sample_db, BackupRequest(database="db", bucket=bucket, kind="predeploy"))

    assert manifest.schema_sql is not None
    assert manifest.schema_sql.key.startswith("backups/predeploy/db/")
    body = aws.client("s3").get_object(Bucket=bucket, Key=manifest.schema_sql.key)["Body"].read()
    text = zstandard.ZstdDecompressor().decompressobj().decompress(body).decode()
    assert "CREATE TABLE public.report_snapshots" in text
    assert "COPY public" not in text  # schema only


def test_catalog_lists_committed_backups_newest_first_by_kind(sample_db: ConnectionSpec, bucket: str) -> None:
    first = run_backup(sample_db, BackupRequest(database="db", bucket=bucket, kind="nightly"))
    second = run_backup(sample_db, BackupRequest(database="db", bucket=bucket, kind="predeploy"))

    assert [e.manifest.id for e in catalog.list_backups(bucket)] == [second.id, first.id]
    assert [e.manifest.id for e in catalog.list_backups(bucket, kind="nightly")] == [first.id]
    assert catalog.find_backup(bucket, "latest").manifest.id == second.id
    assert catalog.find_backup(bucket, first.id).manifest.kind == "nightly"
