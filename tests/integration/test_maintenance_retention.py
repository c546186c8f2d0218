"""cleanup deletes exactly the rows its rule names while the application keeps writing; archive survives a kill
mid-run with every row exactly once; bad rules are refused before any change (both server versions)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dbops.errors import ConfigError, DatabaseError
from dbops.maintenance import DEFAULT_RULES, MaintenanceConfig, RetentionRule, execute_plan, plan_task, run_task
from dbops.postgres.connection import ConnectionSpec, connect
from tests.integration.maintenance_helpers import LockHolder, Timeline, Writer, rows_checksum, wait_until
from tests.support import table_checksums

REPO = Path(__file__).resolve().parents[2]
CLEANUP_RULE, ARCHIVE_RULE = DEFAULT_RULES


def _ids(spec: ConnectionSpec, query: str, params: Any = None) -> set[int]:
    with connect(spec) as conn:
        return {r[0] for r in conn.execute(query, params).fetchall()}  # type: ignore[arg-type]


def test_cleanup_deletes_exactly_the_rule_rows_while_another_session_writes(sample_db: ConnectionSpec) -> None:
    config = MaintenanceConfig(rules=[CLEANUP_RULE.model_copy(update={"batch_size": 100})], batch_pause_s=0.02)
    plan = plan_task(sample_db, "cleanup", config)
    cutoff = plan.objects[0].cutoff
    before = _ids(sample_db, "SELECT id FROM report_snapshots")
    named = _ids(sample_db, "SELECT id FROM report_snapshots WHERE created_at < %s AND NOT is_baseline", [cutoff])
    baselines = _ids(sample_db, "SELECT id FROM report_snapshots WHERE is_baseline")
    assert plan.objects[0].estimated_rows == len(named) > 1000
    inserted: list[int] = []
    existing = sorted(before)

    def app(conn: psycopg.Connection[Any]) -> None:
        row = conn.execute(
            "INSERT INTO report_snapshots (sprint_id, is_baseline, payload) VALUES (1, random() < 0.5, '{}') "
            "RETURNING id"
        ).fetchone()
        assert row is not None
        inserted.append(row[0])
        # touch any row, expired ones included, and hold its lock a moment as an application would
        conn.execute(
            "UPDATE report_snapshots SET payload = payload || '{\"seen\": true}' WHERE id = %s",
            [random.choice(existing)],
        )
        conn.execute("SELECT pg_sleep(0.002)")

    timeline = Timeline()
    with Writer(sample_db, app) as writer:
        summary = execute_plan(sample_db, plan, config, progress=timeline)

    assert not writer.errors
    (result,) = summary.objects
    start, end = timeline.window(CLEANUP_RULE.name)
    assert writer.committed_between(start, end) > 0, "the application wrote nothing during the cleanup"
    assert result.status == "done" and result.batches >= len(named) // 100
    assert result.rows_deleted == summary.rows_deleted == len(named)
    after = _ids(sample_db, "SELECT id FROM report_snapshots")
    assert after == (before - named) | set(inserted)
    assert baselines <= after


def _archive_config(path: Path, **overrides: Any) -> MaintenanceConfig:
    config = MaintenanceConfig(rules=[ARCHIVE_RULE.model_copy(update={"batch_size": 2})], **overrides)
    path.write_text(config.model_dump_json())
    return config


def _archived_sprints(spec: ConnectionSpec) -> int:
    with connect(spec) as conn:
        exists = conn.execute("SELECT to_regclass('sprints_archive') IS NOT NULL").fetchone()
        if not (exists and exists[0]):
            return 0
        row = conn.execute("SELECT count(*) FROM sprints_archive").fetchone()
    return int(row[0]) if row else 0


def test_archive_killed_mid_run_then_run_again_keeps_every_row_exactly_once(
    sample_db: ConnectionSpec, tmp_path: Path
) -> None:
    tables = ("sprints", "issues", "report_snapshots")
    before = {t: rows_checksum(sample_db, t) for t in tables}
    config = _archive_config(tmp_path / "maintenance.json", batch_pause_s=0.2)
    plan = plan_task(sample_db, "archive", config)
    to_move = plan.objects[0].estimated_rows
    assert to_move is not None and to_move >= 10
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO / 'functions'}{os.pathsep}{REPO}",
        "DBOPS_DATABASE_URL": _url(sample_db),  # never on the command line
        "DBOPS_MAINTENANCE_CONFIG": str(tmp_path / "maintenance.json"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbops.cli", "maintain", "archive"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _archived_sprints(sample_db) >= 4, "two committed batches", timeout=60)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    moved_before_kill = _archived_sprints(sample_db)
    assert 4 <= moved_before_kill < to_move, "the kill did not land mid-run"

    summary = run_task(sample_db, "archive", config.model_copy(update={"batch_pause_s": 0.0}))

    assert summary.ok
    assert summary.objects[0].rows_by_table["public.sprints"] == to_move - moved_before_kill
    for table in tables:
        assert rows_checksum(sample_db, table, f"{table}_archive") == before[table], table
    with connect(sample_db) as conn:
        row = conn.execute("SELECT count(*) FROM sprints WHERE ends_on < now() - interval '2 years'").fetchone()
        assert row == (0,)
        orphans = conn.execute(
            "SELECT count(*) FROM issues_archive i "
            "WHERE NOT EXISTS (SELECT 1 FROM sprints_archive s WHERE s.id = i.sprint_id)"
        ).fetchone()
        assert orphans == (0,)


def _url(spec: ConnectionSpec) -> str:
    assert spec.password is not None
    return f"postgresql://{spec.user}:{spec.password.get_secret_value()}@{spec.host}:{spec.port}/{spec.dbname}"


BAD_RULES = [
    (RetentionRule(name="no table", table="snapshots_v0", timestamp_column="created_at", age="1 day", mode="delete"),
     "table public.snapshots_v0 does not exist"),
    (RetentionRule(name="no column", table="report_snapshots", timestamp_column="made_at", age="1 day", mode="delete"),
     "column 'made_at' does not exist in public.report_snapshots"),
    (RetentionRule(name="not a time", table="report_snapshots", timestamp_column="payload", age="1 day", mode="delete"),
     "is jsonb, not a date or timestamp"),
    (RetentionRule(name="bad age", table="report_snapshots", timestamp_column="created_at", age="6 monts",
                   mode="delete"), "age '6 monts' is not a PostgreSQL interval"),
    (RetentionRule(name="bad syntax", table="report_snapshots", timestamp_column="created_at", age="1 day",
                   keep="is_baseline = = true", mode="delete"), "keep condition is not a valid boolean expression"),
    (RetentionRule(name="unknown column in keep", table="report_snapshots", timestamp_column="created_at",
                   age="1 day", keep="is_pinned", mode="delete"), 'column "is_pinned" does not exist'),
    (RetentionRule(name="not boolean", table="report_snapshots", timestamp_column="created_at", age="1 day",
                   keep="sprint_id + 1", mode="delete"), "must be type boolean"),
    (RetentionRule(name="escape", table="report_snapshots", timestamp_column="created_at", age="1 day",
                   keep="is_baseline) OR (true", mode="delete"), "closes more than the condition opened"),
    (RetentionRule(name="two statements", table="report_snapshots", timestamp_column="created_at", age="1 day",
                   keep="true; DROP TABLE teams", mode="delete"), "';' is not allowed"),
    (RetentionRule(name="archive no column", table="sprints", timestamp_column="ended_at", age="2 years",
                   mode="archive"), "column 'ended_at' does not exist in public.sprints"),
]  # fmt: skip


@pytest.mark.parametrize("task", ["cleanup", "archive"])
def test_bad_rules_are_refused_before_any_change(sample_db: ConnectionSpec, task: str) -> None:
    before = table_checksums(sample_db)
    rules = [CLEANUP_RULE, ARCHIVE_RULE] + [rule for rule, _ in BAD_RULES]  # the good rules must not run either
    config = MaintenanceConfig(rules=rules)

    with pytest.raises(ConfigError) as refused:
        run_task(sample_db, task, config)  # type: ignore[arg-type]

    message = str(refused.value)
    assert message.startswith("rules refused, nothing was changed")
    mode = {"cleanup": "delete", "archive": "archive"}[task]
    expected = [(rule, problem) for rule, problem in BAD_RULES if rule.mode == mode]
    assert expected  # every task has bad rules to refuse
    for rule, problem in expected:
        assert f"rule {rule.name!r}: " in message and problem in message, (rule.name, message)
    assert table_checksums(sample_db) == before  # nothing deleted, no archive table created


def test_rules_checked_again_before_running_wait_for_a_lock_no_longer_than_lock_timeout(
    sample_db: ConnectionSpec,
) -> None:
    config = MaintenanceConfig(rules=[CLEANUP_RULE], lock_timeout_s=0.2, batch_statement_timeout_s=30)
    plan = plan_task(sample_db, "cleanup", config)

    with LockHolder(sample_db, "LOCK TABLE report_snapshots IN ACCESS EXCLUSIVE MODE"):
        t0 = time.monotonic()
        with pytest.raises(DatabaseError, match="is locked by another session"):
            execute_plan(sample_db, plan, config)  # its keep condition is checked again, on the locked table
        assert time.monotonic() - t0 < 10  # the lock_timeout, not the 30 s statement timeout

    assert run_task(sample_db, "cleanup", config).rows_deleted > 0


def test_cleanup_stopped_by_the_time_limit_keeps_its_batches_and_the_next_run_finishes(
    sample_db: ConnectionSpec,
) -> None:
    config = MaintenanceConfig(rules=[CLEANUP_RULE.model_copy(update={"batch_size": 100})], batch_pause_s=0.25)
    named = len(
        _ids(
            sample_db,
            "SELECT id FROM report_snapshots WHERE created_at < now() - interval '6 months' AND NOT is_baseline",
        )
    )

    plan = plan_task(sample_db, "cleanup", config)
    first = execute_plan(sample_db, plan, config, deadline=time.monotonic() + 1.0)  # a Lambda near its timeout

    (stopped,) = first.objects
    assert stopped.status == "skipped" and "time limit" in (stopped.detail or "")
    assert 0 < stopped.rows_deleted < named
    second = run_task(sample_db, "cleanup", config.model_copy(update={"batch_pause_s": 0.0}))
    assert second.rows_deleted == named - stopped.rows_deleted
