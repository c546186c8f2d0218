"""`dbops restore` starts the state machine and follows it live; `dbops restores list` shows executions."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from dbops.aws import s3stream
from dbops.backup.run import BackupRequest, run_backup
from dbops.cli import main
from dbops.postgres.connection import ConnectionSpec, connect
from dbops.restore.load import restore_size
from dbops.restore.progress_file import ProgressFile, read_progress
from dbops.text import human_bytes
from tests.support import table_checksums

pytestmark = pytest.mark.any_server_version  # the flow, not the server: PostgreSQL 18 alone


def test_cli_selective_restore_follows_the_execution_state_by_state(
    sample_db: ConnectionSpec,
    bucket: str,
    configure: Callable[..., None],
    restore_machine: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(sample_db)
    good = table_checksums(sample_db)
    run_backup(sample_db, BackupRequest(database="sprint_reports_v2", bucket=bucket))
    with connect(sample_db) as conn:
        conn.execute("DELETE FROM sprints WHERE state = 'planned'")

    code = main(["restore", "--table", "sprints", "--state-machine-arn", restore_machine])

    out = capsys.readouterr().out
    assert code == 0, out
    lines = [line.strip() for line in out.splitlines() if line.strip().startswith("->")]
    assert lines[:3] == ["-> Request", "-> RestoreOrRehearse", "-> Validate"]
    assert "-> Swap" in lines and lines[-1] == "-> Restored"
    assert "succeeded: restored: backup" in out
    assert table_checksums(sample_db) == good

    assert main(["restores", "list", "--json"]) == 0
    executions = json.loads(capsys.readouterr().out)
    assert executions[0]["status"] == "SUCCEEDED"


@pytest.fixture
def backed_up(
    sample_db: ConnectionSpec, bucket: str, configure: Callable[..., None], restore_machine: str
) -> ConnectionSpec:
    """The sample database configured for the CLI, with a backup to restore from."""
    configure(sample_db)
    run_backup(sample_db, BackupRequest(database="sprint_reports_v2", bucket=bucket))
    return sample_db


def test_cli_refuses_a_misspelled_table_before_starting_an_execution(
    backed_up: ConnectionSpec, capsys: pytest.CaptureFixture[str]
) -> None:
    executions = len(main_executions(capsys))

    code = main(["restore", "--table", "no_such_table", "--dry-run"])

    out, err = capsys.readouterr()
    assert code == 2
    [line] = [line for line in err.splitlines() if line.startswith("REFUSED")]  # the reason on stderr
    assert line.startswith("REFUSED (checked before starting; no execution started): 'no_such_table' is not a table")
    assert not [line for line in out.splitlines() if line.startswith("started ")]
    assert len(main_executions(capsys)) == executions


def test_cli_exits_2_with_the_reason_when_the_execution_refuses(
    backed_up: ConnectionSpec, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["restore", "--table", "users", "--target", "no_such_db"])  # the target is Validate's to check

    out, err = capsys.readouterr()
    assert code == 2, out
    assert "checked before starting: backup " in out and "started " in out
    assert "-> RestoreRefused" in out
    assert "REFUSED: target database no_such_db does not exist: a selective restore needs it" in err


def main_executions(capsys: pytest.CaptureFixture[str]) -> list[dict[str, str]]:
    capsys.readouterr()
    assert main(["restores", "list", "--json", "--limit", "1000"]) == 0
    return list(json.loads(capsys.readouterr().out))


@pytest.mark.parametrize("stage_in", ["Stage", "StageOnFargate"])
def test_cli_restore_shows_the_stage_progress_up_to_the_backup_total(
    sample_db: ConnectionSpec,
    bucket: str,
    configure: Callable[..., None],
    restore_machine: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stage_in: str,
) -> None:
    configure(sample_db)
    if stage_in == "StageOnFargate":
        monkeypatch.setenv("DBOPS_FARGATE_THRESHOLD_BYTES", "0")  # every backup is "too large": the task stages it
    manifest = run_backup(sample_db, BackupRequest(database="sprint_reports_v2", bucket=bucket))
    total = restore_size(manifest)

    code = main(["restore", "--state-machine-arn", restore_machine])

    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert f"-> {stage_in}\n" in out
    [started] = [line.split()[1] for line in out.splitlines() if line.startswith("started ")]
    shown = [line.strip() for line in err.splitlines() if line.strip().startswith("restore: ")]
    assert shown, err  # not a terminal: plain lines, the last figures always
    assert shown[-1].startswith(f"restore: {human_bytes(total)} of {human_bytes(total)}, "), shown
    published = read_progress(bucket, started)  # what Stage wrote in the bucket, and the CLI read
    assert published is not None
    assert (published["step"], published["bytes"], published["total"], published["finished"]) == (
        "stage",
        total,
        total,
        True,
    )
    assert s3stream.get_text(bucket, f"restore-progress/{started}.json")  # under the prefix the functions may write


def test_stage_progress_is_published_while_the_work_runs_and_a_failed_write_is_only_reported(bucket: str) -> None:
    written: list[int] = []
    with ProgressFile(bucket, "arn:aws:states:x:1:execution:m:restore-1", 300, every_s=0.05) as published:
        for done in (100, 200, 300):
            published("restore", done)
            written.append(_published_bytes(bucket, "restore-1", done))  # the publishing thread writes it meanwhile
    assert written == [100, 200, 300]
    assert published.writes >= 4  # at the start, each figure, and at the end

    warnings: list[str] = []
    with ProgressFile("no-such-bucket-dbops", "restore-2", 10, warn=warnings.append, every_s=0.05) as failing:
        failing("restore", 10)
        time.sleep(0.2)
    assert warnings and all(w.startswith("restore progress not published: cannot write") for w in warnings)
    assert failing.writes == 0


def _published_bytes(bucket: str, execution: str, expected: int) -> int | None:
    """The bytes published, once they are `expected` or after 10 s."""
    deadline = time.monotonic() + 10
    while True:
        found = read_progress(bucket, execution)
        if (found and found["bytes"] == expected) or time.monotonic() > deadline:
            return found["bytes"] if found else None
        time.sleep(0.02)
