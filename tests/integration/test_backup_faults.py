"""Faults injected for real during a backup run through the Lambda handler.

Each one must leave no manifest, no completed object and no open multipart upload, raise a clear error
naming the database and what failed (never the password), and emit BackupFailed.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator

import pytest

from dbops import aws
from dbops.cli.sample_data import create_sample_data
from dbops.errors import BackupsFailed
from dbops.postgres.connection import ConnectionSpec, connect
from handlers.backup import handler
from local_stack.aws import LocalAws
from local_stack.postgres import LocalPostgres, debian_bin_dir
from tests.support import LocalLambdaContext, WhenProcessWrites, emf_metrics, kill, s3_outage, scheduled_event

DATABASE = "sprint_reports_v2"
MIDSTREAM = 1024 * 1024  # faults strike after pg_dump has written 1 MB of a ~20 MB dump


def _load(url: str) -> None:
    admin = ConnectionSpec.from_url(url)
    with connect(admin) as conn:
        conn.execute(f"CREATE DATABASE {DATABASE}")
    create_sample_data(admin.for_database(DATABASE), scale=0.3)


@pytest.fixture(scope="module")
def big_db(pg: LocalPostgres) -> Iterator[str]:
    """A database large enough that a fault lands mid-stream; yields its URL."""
    _load(pg.url())
    yield pg.url(DATABASE)
    with connect(ConnectionSpec.from_url(pg.url())) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


def _configure(monkeypatch: pytest.MonkeyPatch, bucket: str, url: str, **extra: str) -> None:
    monkeypatch.setenv("DBOPS_BUCKET", bucket)
    monkeypatch.setenv("DBOPS_DATABASES", json.dumps([{"name": DATABASE, "url": url}]))
    for key, value in extra.items():
        monkeypatch.setenv(key, value)


def _run_failing(capsys: pytest.CaptureFixture[str], context: LocalLambdaContext | None = None) -> str:
    with pytest.raises(BackupsFailed) as info:
        handler(scheduled_event("dbops-nightly-backup"), context or LocalLambdaContext())
    out = capsys.readouterr().out
    failed = [m for m in emf_metrics(out) if m["name"] == "BackupFailed"]
    assert failed == [{"name": "BackupFailed", "value": [1.0], "dimensions": {"database": DATABASE}}]
    assert not [m for m in emf_metrics(out) if m["name"] == "BackupSucceeded"]
    return str(info.value)


def _assert_nothing_committed(bucket: str) -> None:
    s3 = aws.client("s3")
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0, "no object may remain"
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == [], "multipart uploads aborted"


def test_pg_dump_killed_mid_stream(
    big_db: str, bucket: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _configure(monkeypatch, bucket, big_db)
    with WhenProcessWrites("pg_dump", MIDSTREAM, kill) as fault:
        message = _run_failing(capsys)
    assert fault.fired_at_bytes is not None
    assert f"pg_dump of database {DATABASE} failed (killed by signal 9)" in message
    _assert_nothing_committed(bucket)


def test_server_stopped_mid_dump(
    pg: LocalPostgres, bucket: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server = LocalPostgres(pg.bin_dir).start()  # its own server: this test stops it
    try:
        _load(server.url())
        _configure(monkeypatch, bucket, server.url(DATABASE))
        with WhenProcessWrites("pg_dump", MIDSTREAM, lambda pid: server.kill()) as fault:
            message = _run_failing(capsys)
        assert fault.fired_at_bytes is not None
        # pg_dump's own account of the lost server, not just any failure
        assert f"pg_dump of database {DATABASE} failed" in message
        assert "server closed the connection unexpectedly" in message
        assert server.password not in message
        _assert_nothing_committed(bucket)
    finally:
        server.destroy()


def test_s3_endpoint_gone_mid_upload(
    big_db: str, local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = f"dbops-fault-{uuid.uuid4().hex[:10]}"
    aws.client("s3").create_bucket(Bucket=bucket)
    with s3_outage(local_aws.port, monkeypatch) as (proxy, aborts):
        _configure(monkeypatch, bucket, big_db)
        with WhenProcessWrites("pg_dump", MIDSTREAM, lambda pid: proxy.cut()) as fault:
            message = _run_failing(capsys)
        assert fault.fired_at_bytes is not None
        assert f"upload of s3://{bucket}/backups/nightly/{DATABASE}/" in message
        assert aborts, "the multipart upload was aborted"
    _assert_nothing_committed(bucket)


def test_wrong_password(
    big_db: str, bucket: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "not-the-password-" + uuid.uuid4().hex
    spec = ConnectionSpec.from_url(big_db)
    _configure(monkeypatch, bucket, f"postgresql://{spec.user}:{wrong}@{spec.host}:{spec.port}/{DATABASE}")
    message = _run_failing(capsys)
    assert "password authentication failed" in message
    assert DATABASE in message
    assert wrong not in message
    assert wrong not in capsys.readouterr().out
    _assert_nothing_committed(bucket)


@pytest.mark.skipif(debian_bin_dir(15) is None, reason="Debian's PostgreSQL 15 client tools are not installed")
def test_pg_dump_older_than_the_server_is_refused(
    pg18: LocalPostgres, bucket: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _configure(monkeypatch, bucket, pg18.url(), DBOPS_PG_BIN=str(debian_bin_dir(15)))
    message = _run_failing(capsys)
    assert "pg_dump 15." in message
    assert "older than the server of database" in message
    assert "PostgreSQL 18" in message
    _assert_nothing_committed(bucket)


MARGIN_S = 30  # the deadline margin the Lambda keeps to stop cleanly


def _run_with_seconds_to_deadline(
    seconds: int, big_db: str, bucket: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The backup in a Lambda whose deadline (its remaining time less the margin) is `seconds` away: it must
    stop there, say so, and leave nothing committed."""
    _configure(monkeypatch, bucket, big_db, DBOPS_DEADLINE_MARGIN_S=str(MARGIN_S))
    message = _run_failing(capsys, LocalLambdaContext(remaining_ms=(MARGIN_S + seconds) * 1000))
    assert "time limit is near" in message
    _assert_nothing_committed(bucket)


def test_time_running_out_in_lambda_aborts_cleanly(
    big_db: str, bucket: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # no time at all past the margin: the deadline is reached as the first bytes arrive
    _run_with_seconds_to_deadline(0, big_db, bucket, monkeypatch, capsys)


def test_time_running_out_while_pg_dump_waits_for_a_lock(
    big_db: str, bucket: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a migration holds report_snapshots exclusively: pg_dump (and the row count) wait and write nothing; the
    # backup must still stop at its deadline, 3 s away, not after pg_dump's 120 s lock wait
    with connect(ConnectionSpec.from_url(big_db), autocommit=False) as migration:
        migration.execute("LOCK TABLE report_snapshots IN ACCESS EXCLUSIVE MODE")
        _run_with_seconds_to_deadline(3, big_db, bucket, monkeypatch, capsys)
        waiting = migration.execute(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'report_snapshots'::regclass"
        ).fetchone()
    assert waiting == (0,)  # neither pg_dump nor the row count is left waiting behind the lock


def test_time_running_out_while_pg_dump_is_stalled_mid_stream(
    big_db: str, bucket: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # pg_dump frozen (SIGSTOP) after 1 MB: no more bytes arrive, so only a timer can stop the backup in time
    with WhenProcessWrites("pg_dump", MIDSTREAM, lambda pid: os.kill(pid, signal.SIGSTOP)) as fault:
        _run_with_seconds_to_deadline(5, big_db, bucket, monkeypatch, capsys)
    assert fault.fired_at_bytes is not None
