"""The issue's size: the test Alembic project rehearsed on a sample of at least 0.5 GB, restored from a real backup.

PostgreSQL 18 only (the size, not the version, is what this shows; the revisions are rehearsed on both versions at
a smaller scale in test_rehearsal.py). Revision 0003 rewrites report_snapshots, the largest table, under ACCESS
EXCLUSIVE: the rehearsal must flag it with its measured lock time, which must cover the ALTER's own duration.
bench/rehearsal.py prints the same run's figures (and the state machine's) for the record.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbops import aws
from dbops.backup.run import BackupRequest, run_backup
from dbops.cli.sample_data import create_sample_data
from dbops.postgres.connection import ConnectionSpec, connect
from dbops.rehearsal import RehearsalRequest, RehearsalResult, run_rehearsal
from dbops.rehearsal.command import database_url
from local_stack.aws import LocalAws
from local_stack.postgres import LocalPostgres

ALEMBIC_INI = Path(__file__).parents[1] / "fixtures" / "alembic_sprint_reports" / "alembic.ini"
ALEMBIC = [sys.executable, "-m", "alembic", "-c", str(ALEMBIC_INI)]
SCALE = 5.0  # about 0.58 GB
HALF_GB = 512 * 1024**2


@pytest.fixture(scope="module")
def large(pg18: LocalPostgres, local_aws: LocalAws) -> Iterator[tuple[ConnectionSpec, str, int]]:
    """A 0.5 GB+ sample at revision 0002 with a predeploy backup: (spec, bucket, database size)."""
    admin = ConnectionSpec.from_url(pg18.url())
    name = f"large_{uuid.uuid4().hex[:8]}"
    with connect(admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    spec = admin.for_database(name)
    try:
        create_sample_data(spec, SCALE)
        env = {**os.environ, "DATABASE_URL": database_url(spec)}
        subprocess.run([*ALEMBIC, "upgrade", "0002"], env=env, check=True, timeout=300)
        with connect(spec) as conn:
            row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        bucket = f"dbops-large-{uuid.uuid4().hex[:8]}"
        aws.client("s3").create_bucket(Bucket=bucket)
        run_backup(spec, BackupRequest(database="sprint_reports_v2", bucket=bucket, kind="predeploy"))
        assert row is not None
        yield spec, bucket, int(row[0])
    finally:
        with connect(admin) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_rewrite_of_the_largest_table_is_flagged_with_its_lock_time_on_half_a_gigabyte(
    large: tuple[ConnectionSpec, str, int],
) -> None:
    spec, bucket, size = large
    request = RehearsalRequest(
        database="sprint_reports_v2", command=[*ALEMBIC, "upgrade", "0003"], max_lock_s=0.5, interval_s=0.02
    )

    result: RehearsalResult = run_rehearsal(spec, request, bucket=bucket)

    assert size >= HALF_GB
    assert result.verdict == "fail" and result.scratch_dropped
    [rewrite] = result.rewrites
    assert rewrite.table == "public.report_snapshots" and rewrite.bytes_before >= 200 * 1024**2
    [finding] = [f for f in result.findings if f.table == "public.report_snapshots" and f.phase == "upgrade"]
    assert (finding.severity, finding.mode, finding.rewritten) == ("fail", "AccessExclusiveLock", True)
    [alter] = [s for s in result.statements if s.query.startswith("ALTER TABLE report_snapshots")]
    [hold] = [  # the table's own lock, not the one on the new storage the rewrite built
        h
        for h in alter.locks
        if (h.relation.name, h.mode, h.relation.storage) == ("public.report_snapshots", finding.mode, None)
    ]
    # the lock is held from the ALTER to the end of Alembic's transaction: at least as long as the ALTER ran
    assert finding.lock_s == hold.held_s > 0.5
    assert hold.held_s + hold.uncertainty_s >= alter.duration_s
    assert any(r.startswith("ACCESS EXCLUSIVE on public.report_snapshots held") for r in result.reasons)
    assert result.schema_check.identical is True  # and 0003's downgrade puts the precision back
