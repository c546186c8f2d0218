"""`dbops maintain`: plan, progress, summary; a failure on one object is recorded, the rest still runs, exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dbops.cli import main
from dbops.maintenance import DEFAULT_RULES, MaintenanceConfig, RetentionRule
from dbops.postgres.connection import ConnectionSpec, connect


def _use(monkeypatch: pytest.MonkeyPatch, spec: ConnectionSpec, config: MaintenanceConfig, tmp_path: Path) -> None:
    assert spec.password is not None
    url = f"postgresql://{spec.user}:{spec.password.get_secret_value()}@{spec.host}:{spec.port}/{spec.dbname}"
    monkeypatch.setenv("DBOPS_DATABASE_URL", url)
    (tmp_path / "maintenance.json").write_text(config.model_dump_json())
    monkeypatch.setenv("DBOPS_MAINTENANCE_CONFIG", str(tmp_path / "maintenance.json"))


def _count(spec: ConnectionSpec, query: str) -> int:
    with connect(spec) as conn:
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return int(row[0])


def test_a_failing_rule_is_recorded_the_next_still_runs_and_the_exit_code_says_so(
    sample_db: ConnectionSpec, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # deleting old sprints outright fails: issues still reference them (the archive task moves them instead)
    doomed = RetentionRule(
        name="old sprints, deleted", table="sprints", timestamp_column="ends_on", age="2 years", mode="delete"
    )
    _use(monkeypatch, sample_db, MaintenanceConfig(rules=[doomed, DEFAULT_RULES[0]]), tmp_path)
    sprints = _count(sample_db, "SELECT count(*) FROM sprints")

    code = main(["maintain", "cleanup"])

    out = capsys.readouterr()
    assert code == 1
    assert out.out.startswith("plan: cleanup on ")
    assert "public.sprints is referenced by public.issues(sprint_id) ON DELETE NO ACTION" in out.out
    assert "[start] old sprints, deleted" in out.err and "[done] report snapshots" in out.err
    summary_line = next(line for line in out.out.splitlines() if line.startswith("cleanup on "))
    assert "1 done, 0 skipped, 1 failed" in summary_line
    assert "violates foreign key constraint" in out.out
    assert _count(sample_db, "SELECT count(*) FROM sprints") == sprints
    assert (
        _count(
            sample_db,
            "SELECT count(*) FROM report_snapshots WHERE created_at < now() - interval '6 months' AND NOT is_baseline",
        )
        == 0
    )


def test_dry_run_json_shows_the_plan_and_changes_nothing(
    sample_db: ConnectionSpec, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _use(monkeypatch, sample_db, MaintenanceConfig(), tmp_path)
    before = _count(sample_db, "SELECT count(*) FROM report_snapshots")

    code = main(["maintain", "cleanup", "--dry-run", "--json"])

    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    (planned,) = doc["plan"]["objects"]
    assert planned["rule"]["table"] == "report_snapshots" and planned["estimated_rows"] > 0
    assert doc["summary"]["dry_run"] and doc["summary"]["rows_deleted"] == 0
    assert _count(sample_db, "SELECT count(*) FROM report_snapshots") == before
