"""Full, selective, drill and dry-run restores through the synthesized state machine, against real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from dbops import aws
from dbops.backup import catalog
from dbops.backup.run import BackupRequest, run_backup
from dbops.postgres.connection import ConnectionSpec, connect
from dbops.restore import records
from tests.support import table_checksums

Run = Callable[..., dict[str, Any]]


def _databases(spec: ConnectionSpec) -> set[str]:
    with connect(spec.for_database("postgres")) as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}


def _structure(spec: ConnectionSpec, tables: list[str]) -> dict[str, tuple[int, int, int]]:
    """Indexes, constraints and foreign keys per table."""
    with connect(spec) as conn:
        return {
            t: tuple(
                conn.execute(  # type: ignore[misc]
                    "SELECT (SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass), "
                    "(SELECT count(*) FROM pg_constraint WHERE conrelid = %s::regclass AND contype <> 'f'), "
                    "(SELECT count(*) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f') "
                    "+ (SELECT count(*) FROM pg_constraint WHERE confrelid = %s::regclass)",
                    [t, t, t, t],
                ).fetchone()
            )
            for t in tables
        }


INCIDENT = [
    # the guide's selective-restore scenario: rows lost from users and sprints
    "DELETE FROM users u WHERE NOT EXISTS (SELECT 1 FROM issues i WHERE i.assignee_id = u.id) "
    "AND NOT EXISTS (SELECT 1 FROM report_snapshots r WHERE r.created_by = u.id)",
    "DELETE FROM sprints WHERE state = 'planned'",
    "UPDATE users SET full_name = 'overwritten' WHERE id % 3 = 0",
]


def _incident(spec: ConnectionSpec) -> None:
    with connect(spec) as conn:
        for statement in INCIDENT:
            conn.execute(statement)


def test_full_restore_swaps_in_a_checked_copy_and_keeps_the_old_one(
    sample_db: ConnectionSpec,
    bucket: str,
    configure: Callable[..., None],
    run_restore: Run,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(sample_db)
    good = table_checksums(sample_db)
    backup = run_backup(sample_db, BackupRequest(database="sprint_reports_v2", bucket=bucket))
    _incident(sample_db)
    damaged = table_checksums(sample_db)

    result = run_restore()

    assert result["status"] == "SUCCEEDED", result.get("cause")
    assert result["states"][:6] == [
        "Request",
        "RestoreOrRehearse",
        "Validate",
        "FromWhere",
        "WhatNext",
        "SafetyBackupAndStage",
    ]
    assert {"SafetyBackup", "Stage"} <= set(result["states"])
    assert "Swap" in result["states"] and "Rollback" not in result["states"]
    assert table_checksums(sample_db) == good
    state = json.loads(result["output"])
    kept = sample_db.for_database(state["pre_restore_db"])
    assert table_checksums(kept) == damaged  # the database as it was before the restore is kept aside
    safety = catalog.find_backup(bucket, state["safety_backup_id"])
    assert safety.manifest.kind == "prerestore"
    assert state["backup_id"] == backup.id
    assert "RestoreSucceeded" in capsys.readouterr().out
    [record] = records.load_all(bucket, "restore")
    assert record.ok and record.pre_restore_db == kept.dbname and record.keep_until is not None


def test_kept_copies_are_dropped_once_their_time_is_up(
    sample_db: ConnectionSpec,
    bucket: str,
    configure: Callable[..., None],
    run_restore: Run,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure(sample_db)
    monkeypatch.setenv("DBOPS_PRE_RESTORE_KEEP_DAYS", "0")  # a kept copy expires as soon as it is recorded
    run_backup(sample_db, BackupRequest(database="sprint_reports_v2", bucket=bucket))

    result = run_restore()

    assert result["status"] == "SUCCEEDED", result.get("cause")
    copy = json.loads(result["output"])["pre_restore_db"]
    [record] = records.load_all(bucket, "restore")
    assert record.pre_restore_db == copy  # it was kept and recorded...
    assert copy not in _databases(sample_db)  # ...and dropped by the cleanup of expired copies


def restore_users_and_sprints(spec: ConnectionSpec, back_up: Callable[[], object], run_restore: Run) -> dict[str, Any]:
    """Back up, lose rows of users and sprints and change teams, restore users and sprints selectively: they are as
    backed up (with their indexes and constraints), teams keeps its change, the scratch copy is gone."""
    good = table_checksums(spec)
    structure = _structure(spec, ["users", "sprints"])
    back_up()
    _incident(spec)
    with connect(spec) as conn:  # a change to a table that is not restored must survive
        conn.execute("UPDATE teams SET name = name || ' (renamed)' WHERE id = 1")
    databases_before = _databases(spec)

    result = run_restore(tables=["users", "sprints"])

    assert result["status"] == "SUCCEEDED", result.get("cause")
    after = table_checksums(spec)
    assert after["public.users"] == good["public.users"]
    assert after["public.sprints"] == good["public.sprints"]
    assert after["public.issues"] == good["public.issues"]
    assert after["public.teams"] != good["public.teams"]  # untouched by the restore
    assert _structure(spec, ["users", "sprints"]) == structure
    assert _databases(spec) == databases_before  # the scratch copy is gone
    return result


def test_selective_restore_of_two_tables_keeps_indexes_foreign_keys_and_other_tables(
    sample_db: ConnectionSpec, bucket: str, configure: Callable[..., None], run_restore: Run
) -> None:
    configure(sample_db)
    request = BackupRequest(database="sprint_reports_v2", bucket=bucket)
    restore_users_and_sprints(sample_db, lambda: run_backup(sample_db, request), run_restore)


def test_drill_restores_the_latest_backup_checks_it_records_it_and_drops_it(
    sample_db: ConnectionSpec, bucket: str, configure: Callable[..., None], run_restore: Run
) -> None:
    configure(sample_db)
    backup = run_backup(sample_db, BackupRequest(database="sprint_reports_v2", bucket=bucket))
    before = table_checksums(sample_db)
    databases_before = _databases(sample_db)

    result = run_restore(mode="drill")

    assert result["status"] == "SUCCEEDED", result.get("cause")
    assert "Swap" not in result["states"] and "StopApplication" not in result["states"]
    assert json.loads(result["output"])["safety_backup_id"] is None  # a drill touches nothing: no safety backup
    assert [e.manifest.kind for e in catalog.list_backups(bucket)] == ["nightly"]
    [drill] = records.load_all(bucket, "drill")
    assert drill.ok and drill.backup_id == backup.id and drill.seconds > 0
    assert _databases(sample_db) == databases_before
    assert table_checksums(sample_db) == before


def test_dry_run_validates_and_changes_nothing(
    sample_db: ConnectionSpec, bucket: str, configure: Callable[..., None], run_restore: Run
) -> None:
    configure(sample_db)
    run_backup(sample_db, BackupRequest(database="sprint_reports_v2", bucket=bucket))
    _incident(sample_db)
    before = table_checksums(sample_db)
    databases_before = _databases(sample_db)

    result = run_restore(tables=["users"], dry_run=True)

    assert result["status"] == "SUCCEEDED", result.get("cause")
    assert result["states"] == [
        "Request",
        "RestoreOrRehearse",
        "Validate",
        "FromWhere",
        "WhatNext",
        "Finish",
        "Restored",
    ]
    assert "dry run, nothing changed: would restore" in json.loads(result["output"])["outcome"]
    assert table_checksums(sample_db) == before
    assert _databases(sample_db) == databases_before
    assert [e.manifest.kind for e in catalog.list_backups(bucket)] == ["nightly"]


def test_application_is_put_in_maintenance_mode_during_the_restore(
    sample_db: ConnectionSpec, bucket: str, configure: Callable[..., None], run_restore: Run
) -> None:
    parameter = f"/sprint-reports/{bucket}/maintenance"
    aws.client("ssm").put_parameter(Name=parameter, Value="off", Type="String")
    configure(sample_db, app_hook={"type": "ssm", "parameter": parameter})
    run_backup(sample_db, BackupRequest(database="sprint_reports_v2", bucket=bucket))

    result = run_restore(tables=["sprints"])

    assert result["status"] == "SUCCEEDED", result.get("cause")
    history = aws.client("ssm").get_parameter_history(Name=parameter)["Parameters"]
    assert [p["Value"] for p in history] == ["off", "on", "off"]


@pytest.mark.parametrize(
    ("request_args", "cause"),
    [
        ({"tables": ["nope"]}, "'nope' is not a table in backup"),
        ({"tables": ["users_pkey"]}, "'users_pkey' is not a table in backup"),
        ({"backup": "20200101T000000Z-000000"}, "backup '20200101T000000Z-000000' not found"),
        ({"database": "billing"}, "unknown database 'billing'"),
        ({"tables": ["users"], "target": "no_such_db"}, "target database no_such_db does not exist"),
    ],
)
def test_bad_request_is_refused_in_validate_before_anything_is_touched(
    sample_db: ConnectionSpec,
    bucket: str,
    configure: Callable[..., None],
    run_restore: Run,
    request_args: dict[str, Any],
    cause: str,
) -> None:
    configure(sample_db)
    run_backup(sample_db, BackupRequest(database="sprint_reports_v2", bucket=bucket))
    before = table_checksums(sample_db)
    databases_before = _databases(sample_db)

    result = run_restore(**request_args)

    assert (
        result["status"] == "SUCCEEDED"
    )  # refused, not failed: no alarm, no notice (tests/workflow/test_refused_requests.py)
    assert cause in json.loads(result["output"])["reason"]
    assert result["states"] == ["Request", "RestoreOrRehearse", "Validate", "FromWhere", "RestoreRefused"]
    assert table_checksums(sample_db) == before
    assert _databases(sample_db) == databases_before
