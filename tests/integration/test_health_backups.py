"""Backup freshness from the real catalog in the (moto) bucket, against the RPO; and the CLI's exit codes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from dbops.backup.catalog import BackupManifest
from dbops.backup.run import BackupRequest, run_backup
from dbops.cli import main
from dbops.health import ProbeResult, Status
from dbops.postgres.connection import ConnectionSpec, connect
from local_stack.postgres import LocalPostgres
from tests.integration.health_helpers import check
from tests.integration.lifecycle_helpers import write_catalog_backup

DATABASE = "sprint_reports_v2"


def write_backup(bucket: str, *, hours_ago: float, verified: bool | None) -> BackupManifest:
    """A committed backup as the catalog knows it, finished `hours_ago`."""
    return write_catalog_backup(bucket, DATABASE, datetime.now(UTC) - timedelta(hours=hours_ago), verified)


def freshness(spec: ConnectionSpec, bucket: str | None) -> ProbeResult:
    return check(spec, bucket=bucket, database_name=DATABASE).probe("backup_freshness")


def test_stale_backup_is_critical_past_the_rpo(sample_db: ConnectionSpec, bucket: str) -> None:
    stale = write_backup(bucket, hours_ago=30, verified=True)

    probe = freshness(sample_db, bucket)

    assert probe.status is Status.CRITICAL
    assert probe.values["backup_age_hours"] == pytest.approx(30, abs=0.1)
    assert probe.values["backup_verified"] == 1
    assert probe.message.startswith(f"newest backup {stale.id} (nightly) finished 30.0h ago, verified (RPO 24 h")


def test_backup_just_past_the_rpo_is_a_warning(sample_db: ConnectionSpec, bucket: str) -> None:
    write_backup(bucket, hours_ago=25, verified=True)
    assert freshness(sample_db, bucket).status is Status.WARN


def test_backup_that_failed_verification_does_not_count(sample_db: ConnectionSpec, bucket: str) -> None:
    write_backup(bucket, hours_ago=30, verified=True)
    broken = write_backup(bucket, hours_ago=1, verified=False)

    probe = freshness(sample_db, bucket)

    assert probe.status is Status.CRITICAL
    assert probe.values["backup_age_hours"] == pytest.approx(30, abs=0.1)
    assert f"newer backup {broken.id} failed verification and does not count" in probe.message


def test_no_backup_at_all_is_critical(sample_db: ConnectionSpec, bucket: str) -> None:
    probe = freshness(sample_db, bucket)
    assert probe.status is Status.CRITICAL
    assert probe.message == f"no committed backup of {DATABASE} in s3://{bucket}: run a backup now"
    assert probe.values["backup_age_hours"] is None


def test_no_bucket_means_backup_freshness_is_unknown(sample_db: ConnectionSpec) -> None:
    probe = freshness(sample_db, None)
    assert probe.status is Status.UNKNOWN


def test_a_fresh_real_backup_is_ok_and_growth_is_measured_against_it(sample_db: ConnectionSpec, bucket: str) -> None:
    manifest = run_backup(sample_db, BackupRequest(database=DATABASE, bucket=bucket))
    with connect(sample_db) as conn:
        conn.execute("CREATE TABLE added AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 5000) g")

    report = check(sample_db, bucket=bucket, database_name=DATABASE)

    probe = report.probe("backup_freshness")
    assert probe.status is Status.OK
    assert probe.values["backup_verified"] == 0
    assert f"newest backup {manifest.id} (nightly)" in probe.message and "not verified yet" in probe.message
    growth = report.probe("sizes").values["growth_since_backup_bytes"]
    assert isinstance(growth, int) and growth > 1_000_000  # the new table: 5000 rows of 200 bytes


def test_cli_exits_2_on_a_stale_backup_and_prints_json(
    sample_db: ConnectionSpec, bucket: str, pg: LocalPostgres, capsys: pytest.CaptureFixture[str]
) -> None:
    write_backup(bucket, hours_ago=30, verified=True)
    url = pg.url(sample_db.dbname)
    base = ["health", "--database-url", url, "--bucket", bucket, "--database-name", DATABASE]

    assert main(base) == 2
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith(f"Health of {DATABASE} (PostgreSQL ")
    assert text.splitlines()[1].startswith("CRITICAL  backup_freshness")
    assert pg.password not in text

    assert main([*base, "--json"]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "critical" and doc["exit_code"] == 2
    assert doc["probes"][0]["name"] == "backup_freshness"


def test_cli_exits_0_when_healthy_and_3_on_bad_thresholds(
    sample_db: ConnectionSpec, pg: LocalPostgres, capsys: pytest.CaptureFixture[str]
) -> None:
    url = pg.url(sample_db.dbname)

    assert main(["health", "--database-url", url]) == 0
    assert main(["health", "--database-url", url, "--thresholds", '{"connections_warn_percent": 99}']) == 3
    assert "connections_warn_percent (99.0) is above connections_critical_percent (95.0)" in capsys.readouterr().err
