"""A fault injected at every step leaves the target exactly as it was, and the execution fails with a clear cause."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dbops import aws
from dbops.backup import catalog
from dbops.backup.run import BackupRequest, run_backup
from dbops.backup.verify import verify_backup
from dbops.cli.sample_data import create_sample_data
from dbops.errors import RestoreError
from dbops.postgres.connection import ConnectionSpec, connect
from dbops.restore import outcome, steps
from dbops.restore.models import RestoreRequest, RestoreState, StepError
from dbops.settings import FunctionSettings
from local_stack.postgres import LocalPostgres
from tests.support import WhenProcessWrites, kill, table_checksums

Run = Callable[..., dict[str, Any]]


def _backup_then_change(spec: ConnectionSpec, bucket: str) -> dict[str, tuple[int, str]]:
    """A verified backup, then the database moves on: returns the state a failed restore must leave untouched."""
    verify_backup(bucket, run_backup(spec, BackupRequest(database="sprint_reports_v2", bucket=bucket)).id)
    with connect(spec) as conn:
        conn.execute("DELETE FROM sprints WHERE state = 'planned'")
        conn.execute("UPDATE users SET full_name = 'changed since the backup' WHERE id % 5 = 0")
    return table_checksums(spec)


def _assert_failed_cleanly(
    result: dict[str, Any], cause: str, spec: ConnectionSpec, before: dict[str, tuple[int, str]]
) -> None:
    assert result["status"] == "FAILED", " > ".join(result["states"])
    assert cause in result["cause"], result["cause"]
    assert "Rollback" in result["states"] and "NotifyFailure" in result["states"]
    assert table_checksums(spec) == before


def _work_databases(spec: ConnectionSpec) -> list[str]:
    with connect(spec.for_database("postgres")) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", [spec.dbname + "\\_\\_%"]
            ).fetchall()
        ]


# The fault strikes the restoring pg_restore (not the version check), as soon as it has read anything: its
# leader reads the table of contents and leaves the data to workers, so a later mark could find it exiting.


def test_pg_restore_killed_during_stage(
    sample_db: ConnectionSpec, bucket: str, configure: Callable[..., None], run_restore: Run
) -> None:
    configure(sample_db)
    before = _backup_then_change(sample_db, bucket)
    with WhenProcessWrites("pg_restore", 1, kill, counter="rchar", arg="--jobs") as fault:
        result = run_restore()
    assert fault.fired_at_bytes is not None
    _assert_failed_cleanly(result, "was killed by signal 9", sample_db, before)
    assert _work_databases(sample_db) == []


def _flip_a_byte(body: bytes) -> bytes:
    altered = bytearray(body)
    altered[len(body) // 3] ^= 0x55
    return bytes(altered)


def _cut_in_half(body: bytes) -> bytes:
    return body[: len(body) // 2]


@pytest.mark.parametrize(
    ("damage", "tables"),
    [(_flip_a_byte, ["users", "sprints"]), (_cut_in_half, None)],
    ids=["altered-selective", "truncated-full"],
)
def test_archive_damaged_after_verification_is_caught_in_stage_before_the_target_is_touched(
    sample_db: ConnectionSpec,
    bucket: str,
    configure: Callable[..., None],
    run_restore: Run,
    damage: Callable[[bytes], bytes],
    tables: list[str] | None,
) -> None:
    configure(sample_db)
    before = _backup_then_change(sample_db, bucket)
    key = catalog.find_backup(bucket, "latest").manifest.dump.key
    body = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=damage(body))

    result = run_restore(**({"tables": tables} if tables else {}))

    _assert_failed_cleanly(result, "does not match its manifest", sample_db, before)
    assert "Stage" in result["states"]
    assert _work_databases(sample_db) == []


def test_failed_check_rolls_back(
    sample_db: ConnectionSpec, bucket: str, configure: Callable[..., None], run_restore: Run
) -> None:
    configure(sample_db)
    before = _backup_then_change(sample_db, bucket)
    manifest = catalog.find_backup(bucket, "latest").manifest
    for table in manifest.tables:  # the manifest and the archive disagree: the check must catch it
        if table.name == "users":
            table.rows += 1
    catalog.write_manifest(bucket, manifest)

    result = run_restore()

    _assert_failed_cleanly(result, "public.users has", sample_db, before)
    assert "Check" in result["states"] and "Swap" not in result["states"]
    assert _work_databases(sample_db) == []


def test_failed_swap_rolls_back_in_one_transaction(
    sample_db: ConnectionSpec, bucket: str, configure: Callable[..., None], run_restore: Run
) -> None:
    configure(sample_db)
    run_backup(sample_db, BackupRequest(database="sprint_reports_v2", bucket=bucket))
    with connect(sample_db) as conn:
        # since the backup: a new sprint with an issue in it; restoring `sprints` alone would orphan the issue
        sprint = conn.execute(
            "INSERT INTO sprints (team_id, name, starts_on, ends_on) VALUES (1, 'new', current_date, current_date) "
            "RETURNING id"
        ).fetchone()
        assert sprint is not None
        conn.execute(
            "INSERT INTO issues (sprint_id, key, title, status) VALUES (%s, 'SR-NEW', 't', 'todo')", [sprint[0]]
        )
        conn.execute("DELETE FROM users WHERE id = (SELECT max(id) FROM users)")
    before = table_checksums(sample_db)

    result = run_restore(tables=["users", "sprints"])

    _assert_failed_cleanly(result, "rolled back", sample_db, before)
    # the constraint, the table not restored and the offending key are named
    assert "issues_sprint_id_fkey" in result["cause"] and "rows of issues" in result["cause"]
    assert f"keys (sprint_id): {sprint[0]}" in result["cause"]
    assert _work_databases(sample_db) == []


def test_server_stopped_during_stage(
    pg: LocalPostgres, bucket: str, configure: Callable[..., None], run_restore: Run
) -> None:
    # its own server, which this test stops; durable, so what was committed before the crash survives it
    server = LocalPostgres(
        pg.bin_dir, settings={"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
    ).start()
    try:
        admin = ConnectionSpec.from_url(server.url())
        with connect(admin) as conn:
            conn.execute("CREATE DATABASE sprint_reports_v2")
        spec = admin.for_database("sprint_reports_v2")
        create_sample_data(spec, 0.05)
        configure(spec)
        before = _backup_then_change(spec, bucket)

        with WhenProcessWrites("pg_restore", 1, lambda pid: server.kill(), counter="rchar", arg="--jobs") as fault:
            result = run_restore()
        assert fault.fired_at_bytes is not None

        assert result["status"] == "FAILED", " > ".join(result["states"])
        assert "restore of sprint_reports_v2 failed" in result["cause"]
        server.start()  # the database host comes back: the target is exactly as it was
        assert table_checksums(spec) == before
    finally:
        server.destroy()


def test_custom_check_that_fails_stops_the_restore_before_the_swap(
    sample_db: ConnectionSpec, bucket: str, configure: Callable[..., None], run_restore: Run
) -> None:
    configure(
        sample_db,
        restore_checks=[
            "SELECT count(*) > 0 FROM users",
            "SELECT NOT EXISTS (SELECT 1 FROM sprints WHERE state = 'planned')",  # false in the backup
        ],
    )
    before = _backup_then_change(sample_db, bucket)

    result = run_restore()

    _assert_failed_cleanly(result, 'custom check "SELECT NOT EXISTS', sample_db, before)
    assert "Swap" not in result["states"]
    assert _work_databases(sample_db) == []


def test_a_stage_that_outlives_its_restore_drops_what_it_made(
    sample_db: ConnectionSpec, bucket: str, configure: Callable[..., None]
) -> None:
    """Stage runs beside the safety backup: when that fails, Rollback drops the work database and the restore ends
    (its record written) while a Lambda or task already running Stage goes on. Once done, Stage sees the record,
    drops what it made and fails, so nothing is left behind on the server."""
    configure(sample_db)
    _backup_then_change(sample_db, bucket)
    settings = FunctionSettings()
    state = steps.validate(RestoreState(request=RestoreRequest(tables=["users"])), settings)
    outcome.notify_failure(state.model_copy(update={"error": StepError(Error="BackupError", Cause="killed")}), settings)

    with pytest.raises(RestoreError, match=f"restore {state.restore_id} ended while its stage ran"):
        steps.stage(state, settings)

    assert _work_databases(sample_db) == []
