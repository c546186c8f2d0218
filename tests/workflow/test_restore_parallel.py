"""Parallel-format backups restored through the synthesized state machine: in full (the rows streamed from S3 into
the staged copy, the small tables' from the schema archive), selectively (only the chosen tables' objects read, a
small chosen table's rows from the archive), and a selective restore's own safety backup (no other table's rows)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dbops import aws
from dbops.backup import catalog
from dbops.backup.catalog import BackupManifest
from dbops.backup.parallel.run import run_parallel_backup
from dbops.backup.run import BackupRequest, run_backup
from dbops.backup.verify import verify_entry
from dbops.cli import main
from dbops.postgres.connection import ConnectionSpec, connect
from dbops.rehearsal import source
from dbops.restore.archive import download, table_of_contents
from dbops.restore.backup_choice import choose_backup
from dbops.restore.load import restore_size
from local_stack.postgres import LocalPostgres
from tests.support import table_checksums
from tests.workflow.test_restore_workflow import _incident, _structure, restore_users_and_sprints

Run = Callable[..., dict[str, Any]]
RANGE_BYTES = 64 * 1024  # small ranges: the larger sample tables come in several objects
SMALL_BYTES = 64 * 1024  # teams, users and sprints (48 kB) in the schema archive, the larger tables in objects


def _parallel_backup(spec: ConnectionSpec, bucket: str) -> BackupManifest:
    request = BackupRequest(database="sprint_reports_v2", bucket=bucket)
    manifest = run_parallel_backup(spec, request, workers=2, range_bytes=RANGE_BYTES, small_bytes=SMALL_BYTES)
    verify_entry(bucket, catalog.find_backup(bucket, manifest.id))  # Validate will not read it again
    return manifest


def test_full_restore_of_a_parallel_backup_stages_every_row_and_swaps(
    sample_db: ConnectionSpec,
    bucket: str,
    configure: Callable[..., None],
    run_restore: Run,
    caplog: pytest.LogCaptureFixture,
) -> None:
    configure(sample_db)
    good = table_checksums(sample_db)
    structure = _structure(sample_db, ["users", "sprints", "issues"])
    backup = _parallel_backup(sample_db, bucket)
    assert backup.format == "parallel" and len(backup.data) > len({o.table_oid for o in backup.data})
    assert {"teams", "users", "sprints"} == {t.name for t in backup.tables} - {o.table for o in backup.data}
    _incident(sample_db)

    result = run_restore()

    assert result["status"] == "SUCCEEDED", result.get("cause")
    assert "Check" in result["states"] and "Swap" in result["states"] and "Rollback" not in result["states"]
    assert json.loads(result["output"])["backup_id"] == backup.id
    # Stage logs its progress: bytes read from the bucket, a line at most every 10 s
    logged = [r.__dict__ for r in caplog.records if r.getMessage() == "restore progress"]
    assert logged and all(0 < line["bytes"] <= restore_size(backup) and line["step"] == "restore" for line in logged)
    assert table_checksums(sample_db) == good
    assert _structure(sample_db, ["users", "sprints", "issues"]) == structure


def test_selective_restore_of_a_parallel_backup_reads_only_its_tables_objects(
    sample_db: ConnectionSpec, bucket: str, configure: Callable[..., None], run_restore: Run
) -> None:
    configure(sample_db)
    with connect(sample_db) as conn:  # sprints, as large as users, grown past SMALL_BYTES: its rows in objects
        for _ in range(3):
            conn.execute("UPDATE sprints SET id = id")

    def back_up_and_spoil_the_other_tables() -> None:
        backup = _parallel_backup(sample_db, bucket)
        chosen = {t.oid for t in backup.tables if t.name in ("users", "sprints")}
        others = [o for o in backup.data if o.table_oid not in chosen]
        assert others and len(others) < len(backup.data)
        # users' rows are in the schema archive (its TABLE DATA entry restores them), sprints' in objects
        assert {o.table for o in backup.data} & {"users", "sprints"} == {"sprints"}
        # every other table's rows unreadable (not zstd, not their checksum): reading any of them fails the restore
        for obj in others:
            aws.client("s3").put_object(Bucket=bucket, Key=obj.key, Body=b"not this table's rows")

    result = restore_users_and_sprints(sample_db, back_up_and_spoil_the_other_tables, run_restore)

    assert "Check" in result["states"] and "Swap" in result["states"]


def test_a_rehearsal_restores_a_parallel_backup_whole(
    sample_db: ConnectionSpec, bucket: str, make_database: Callable[..., ConnectionSpec]
) -> None:
    good = table_checksums(sample_db)
    backup = _parallel_backup(sample_db, bucket)
    scratch = make_database(empty=True)

    source.restore_backup(bucket, catalog.find_backup(bucket, backup.id), scratch)

    assert table_checksums(scratch) == good


def _rows_held(bucket: str, manifest: BackupManifest, folder: Path) -> set[int]:
    """The OIDs of the tables whose rows the backup holds: in data objects or in the schema archive."""
    archive = download(bucket, manifest.dump, folder / "schema.dump")
    in_archive = {e.oid for e in table_of_contents(archive) if e.desc_and_name.startswith("TABLE DATA ")}
    return {o.table_oid for o in manifest.data} | in_archive


def _oids(spec: ConnectionSpec, tables: list[str]) -> set[int]:
    with connect(spec) as conn:
        return {int(conn.execute("SELECT %s::regclass::oid", [t]).fetchone()[0]) for t in tables}  # type: ignore[index]


def test_a_selective_restores_safety_backup_holds_its_tables_alone_and_puts_them_back(
    sample_db: ConnectionSpec, bucket: str, configure: Callable[..., None], run_restore: Run, tmp_path: Path
) -> None:
    configure(sample_db)
    run_backup(sample_db, BackupRequest(database="sprint_reports_v2", bucket=bucket))  # the single format
    _incident(sample_db)
    damaged = table_checksums(sample_db)

    restored = run_restore(tables=["users", "sprints"])

    assert restored["status"] == "SUCCEEDED", restored.get("cause")
    safety = catalog.find_backup(bucket, json.loads(restored["output"])["safety_backup_id"]).manifest
    assert (safety.kind, safety.format, safety.tables_only) == ("prerestore", "parallel", True)
    assert _rows_held(bucket, safety, tmp_path) == _oids(sample_db, ["users", "sprints"])
    assert sorted(t.qualified for t in safety.tables) == ["public.sprints", "public.users"]
    assert table_checksums(sample_db)["public.users"] != damaged["public.users"]

    whole = run_restore(backup=safety.id)

    refusal = json.loads(whole["output"])  # refused, not failed: no alarm, no failure notice
    assert whole["status"] == "SUCCEEDED" and refusal["status"] == "refused"
    assert "holds the rows of some tables only" in refusal["reason"]
    assert whole["states"][:3] == ["Request", "RestoreOrRehearse", "Validate"] and "Rollback" not in whole["states"]

    back = run_restore(backup=safety.id, tables=["users", "sprints"])

    assert back["status"] == "SUCCEEDED", back.get("cause")
    assert table_checksums(sample_db) == damaged


def test_dbops_backup_of_two_tables_restores_one_of_them_by_its_id(
    sample_db: ConnectionSpec,
    bucket: str,
    configure: Callable[..., None],
    run_restore: Run,
    pg: LocalPostgres,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """`dbops backup --format parallel --table users --table sprints`: those tables' rows alone (kind manual), which
    `latest` passes over and a selective restore by its id puts back, one table of the two."""
    configure(sample_db)
    good = table_checksums(sample_db)
    whole = run_backup(sample_db, BackupRequest(database="sprint_reports_v2", bucket=bucket))
    url = pg.url(sample_db.dbname)
    argv = ["backup", "--format", "parallel", "--table", "users", "--table", "public.sprints", "--bucket", bucket]

    assert main([*argv, "--database-url", url, "--database-name", "sprint_reports_v2"]) == 0

    assert "those tables' rows only" in capsys.readouterr().out
    backup = catalog.list_backups(bucket)[0].manifest
    assert (backup.kind, backup.format, backup.tables_only) == ("manual", "parallel", True)
    assert sorted(t.qualified for t in backup.tables) == ["public.sprints", "public.users"]
    assert _rows_held(bucket, backup, tmp_path) == _oids(sample_db, ["users", "sprints"])
    # a restore of `latest` means the newest whole backup: not this one
    assert choose_backup(bucket, "latest", None, "sprint_reports_v2").manifest.id == whole.id
    _incident(sample_db)  # rows lost from users and sprints
    damaged = table_checksums(sample_db)

    result = run_restore(backup=backup.id, tables=["sprints"])

    assert result["status"] == "SUCCEEDED", result.get("cause")
    after = table_checksums(sample_db)
    assert after["public.sprints"] == good["public.sprints"]
    assert after["public.users"] == damaged["public.users"] != good["public.users"]  # not asked for: as it was
