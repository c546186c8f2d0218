"""A login that cannot read one table: the backup names that first cause wherever it is reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from psycopg import sql

from dbops.backup.parallel.run import run_parallel_backup
from dbops.backup.run import BackupRequest
from dbops.errors import BackupError, BackupsFailed
from dbops.postgres.connection import ConnectionSpec, connect
from handlers.backup import handler
from local_stack.aws import LocalAws
from tests.support import LocalLambdaContext, emf_metrics, limited_login

DENIED = "permission denied for table report_snapshots"


@pytest.fixture
def limited_url(sample_db: ConnectionSpec) -> Iterator[str]:
    """A login with SELECT on every table of the sample database but report_snapshots; yields its URL."""
    with limited_login(sample_db, "report_snapshots") as url:
        yield url


def test_cli_backup_names_the_table_it_cannot_read(limited_url: str, bucket: str, local_aws: LocalAws) -> None:
    env = {**os.environ, "DBOPS_DATABASE_URL": limited_url, "DBOPS_BUCKET": bucket}
    done = subprocess.run(
        [sys.executable, "-m", "dbops.cli", "backup", "--database-name", "sr"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    [line] = [line for line in done.stderr.splitlines() if "sr" in line and "failed" in line]
    assert DENIED in line
    assert line.index(DENIED) < line.find("snapshot") or "snapshot" not in line  # the cause first, then the rest
    assert limited_url.split(":")[2].split("@")[0] not in done.stdout + done.stderr  # never the password


def test_handler_result_and_log_name_the_table_it_cannot_read(
    limited_url: str,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("DBOPS_BUCKET", bucket)
    monkeypatch.setenv("DBOPS_DATABASES", json.dumps([{"name": "sprint_reports_v2", "url": limited_url}]))
    with pytest.raises(BackupsFailed) as info:
        handler({"kind": "nightly", "database": "sprint_reports_v2"}, LocalLambdaContext())
    assert DENIED in str(info.value)
    out = capfd.readouterr().out
    [failed] = [r.__dict__ for r in caplog.records if r.getMessage() == "backup failed"]  # the BackupFailed line
    assert DENIED in failed["error"]
    assert failed["database"] == "sprint_reports_v2"
    assert [m["name"] for m in emf_metrics(out)] == ["BackupFailed"]


def test_parallel_backup_names_the_materialized_view_it_cannot_count(
    sample_db: ConnectionSpec, limited_url: str, bucket: str, local_aws: LocalAws
) -> None:
    """The parallel format counts a materialized view's rows in the holding transaction (no worker copies it): a
    count refused there ends the snapshot the workers and pg_dump import, and is the cause reported."""
    role = limited_url.split("//")[1].split(":")[0]
    with connect(sample_db) as conn:
        conn.execute("CREATE MATERIALIZED VIEW zz_counted AS SELECT 1 AS one")
        conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("REVOKE SELECT ON zz_counted FROM {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("REVOKE SELECT ON report_snapshots FROM {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT SELECT ON report_snapshots TO {}").format(sql.Identifier(role)))
    request = BackupRequest(database="sr", bucket=bucket)
    with pytest.raises(BackupError) as info:
        run_parallel_backup(ConnectionSpec.from_url(limited_url), request, workers=2)
    assert "permission denied for materialized view zz_counted" in str(info.value)
