"""Where a database's backup runs (dbops.backup.placement): its configuration, else its last committed backup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dbops.backup.catalog import BackupManifest, StoredObject
from dbops.backup.placement import choose_runner, last_backup

TIMEOUT_S = 900.0  # the Backup function's


def manifest(
    seconds: float, raw: int, *, schema_raw: int | None = None, age_h: float = 0, kind: str = "nightly"
) -> BackupManifest:
    finished = datetime(2026, 11, 24, 2, tzinfo=UTC) - timedelta(hours=age_h)
    return BackupManifest.model_validate(
        {
            "format_version": 2,
            "id": f"b-{seconds}-{raw}-{age_h}",
            "database": "app",
            "kind": kind,
            "dump": StoredObject(key="k", size=raw // 4, sha256="0" * 64, raw_size=raw),
            "schema_sql": None
            if schema_raw is None
            else StoredObject(key="s", size=1, sha256="0" * 64, raw_size=schema_raw),
            "pg_dump_version": "18.1",
            "server_version": "18.1",
            "server_version_num": 180001,
            "started_at": finished - timedelta(seconds=seconds),
            "finished_at": finished,
            "duration_seconds": seconds,
            "tables": [],
        }
    )


@pytest.mark.parametrize(
    ("seconds", "raw", "runner"),
    [
        (100, 10**9, "lambda"),
        (540, 10**9, "lambda"),  # exactly 60% of 900 s: still fits with its margin
        (541, 10**9, "fargate"),  # over 60%: the next one may not finish
        (10, 33 * 1024**3, "fargate"),  # fast last time, but its size says it will not always be
        (10, 32 * 1024**3, "lambda"),
    ],
)
def test_auto_decides_from_the_last_backups_duration_and_size(seconds: float, raw: int, runner: str) -> None:
    choice = choose_runner("auto", manifest(seconds, raw), lambda_timeout_s=TIMEOUT_S)
    assert choice.runner == runner
    assert choice.reason  # said in the log and the execution's history


def test_the_schema_dump_of_a_predeploy_backup_counts_towards_its_size() -> None:
    last = manifest(10, 600, schema_raw=500, kind="predeploy")
    assert choose_runner("auto", last, lambda_timeout_s=TIMEOUT_S, max_raw_bytes=1000).runner == "fargate"
    assert choose_runner("auto", last, lambda_timeout_s=TIMEOUT_S, max_raw_bytes=1100).runner == "lambda"


def test_a_database_never_backed_up_runs_in_lambda() -> None:
    choice = choose_runner("auto", None, lambda_timeout_s=TIMEOUT_S)
    assert (choice.runner, choice.reason) == ("lambda", "no committed backup yet")


@pytest.mark.parametrize("configured", ["lambda", "fargate"])
def test_the_configured_runner_wins_whatever_the_last_backup(configured: str) -> None:
    for last in (None, manifest(10, 1), manifest(899, 10**12)):
        choice = choose_runner(configured, last, lambda_timeout_s=TIMEOUT_S)  # type: ignore[arg-type]
        assert (choice.runner, choice.reason) == (configured, f"configured: {configured}")


def test_the_share_and_the_size_are_settings() -> None:
    last = manifest(5, 2000)
    assert choose_runner("auto", last, lambda_timeout_s=TIMEOUT_S, max_share=0.005).runner == "fargate"  # 4.5 s
    assert choose_runner("auto", last, lambda_timeout_s=TIMEOUT_S, max_raw_bytes=1999).runner == "fargate"
    assert choose_runner("auto", last, lambda_timeout_s=TIMEOUT_S).runner == "lambda"


def test_the_last_backup_is_the_newest_of_any_kind() -> None:
    old_slow = manifest(800, 1, age_h=48)
    new_fast = manifest(10, 1, age_h=1, kind="manual")
    assert last_backup([old_slow, new_fast]) is new_fast
    assert last_backup([]) is None
    assert choose_runner("auto", last_backup([old_slow, new_fast]), lambda_timeout_s=TIMEOUT_S).runner == "lambda"
