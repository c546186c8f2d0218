"""A lost region: a backup made in the main region, copied by the local replication stand-in into the DR region's
replica bucket, restored by the DR stack's own synthesized restore state machine (its template's definition and
step functions, with the DR functions' settings: the replica bucket and a database on a second PostgreSQL server)
through `dbops restore --region --bucket`; the weekly disaster drill's metrics read back from the DR region's
(moto) CloudWatch; its alarms trip when replication is made to fail (nothing replicated) or falls behind (the
replicated backup too old)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from dbops import aws
from dbops.aws.stepfunctions import follow
from dbops.backup import catalog
from dbops.backup.run import BackupRequest, run_backup
from dbops.backup.verify import verify_backup
from dbops.cli import main
from dbops.postgres.connection import ConnectionSpec, connect
from dbops.restore.models import RestoreRequest
from dbops.restore.runner import start_restore
from local_stack.aws import LocalAws
from local_stack.fingerprint import table_fingerprints
from local_stack.metrics import emf_to_cloudwatch
from local_stack.postgres import LocalPostgres
from local_stack.replication import LocalReplication, configure_replication
from tests.support import restore_environment
from tests.workflow.alarms import dr_template, dr_tripped, fresh_second, metric_sum

DATABASE = "sprint_reports_v2"  # the synthesized DR stack's database (tests/infra/conftest.py)
DR_REGION = "us-west-2"
DRILL_FAILED = f"dbops-test-DisasterDrillFailed-{DATABASE}"
RECOVERY_POINT_OLD = f"dbops-test-DisasterRecoveryPointOld-{DATABASE}"

# one version is enough: the source on the session's PostgreSQL 18, the DR server a second 18 (pg18)
pytestmark = pytest.mark.parametrize("pg", ["embedded"], indirect=True)


@dataclass
class Disaster:
    source: ConnectionSpec  # the database in the main region
    bucket: str  # the backup bucket (main region)
    replica: str  # its replica (DR region)
    replication: LocalReplication
    dr: ConnectionSpec  # the DR server's database the DR functions are configured with (not created yet)
    machine: str  # the DR stack's restore state machine, in the DR region

    def back_up(self) -> catalog.BackupManifest:
        manifest = run_backup(self.source, BackupRequest(database=DATABASE, bucket=self.bucket, kind="nightly"))
        assert verify_backup(self.bucket, manifest.id).ok
        return manifest


@pytest.fixture
def disaster(sample_db: ConnectionSpec, pg18: LocalPostgres, local_aws: LocalAws) -> Iterator[Disaster]:
    s3 = aws.client("s3")
    bucket, replica = f"dbops-main-{uuid.uuid4().hex[:10]}", f"dbops-replica-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    replication = configure_replication(bucket, replica, DR_REGION)
    dr = ConnectionSpec.from_url(pg18.url()).for_database(f"dr_{uuid.uuid4().hex[:8]}")
    aws.use_region(DR_REGION)  # from here on the DR region: its state machine, functions and metrics
    try:
        from local_stack import workflow  # synthesizes with CDK: only when a test needs it

        machine = workflow.deploy_template_restore_workflow(
            dr_template(),
            name=f"dbops-restore-dr-{uuid.uuid4().hex[:6]}",
            function_prefix="dbops-dr",
            environment=restore_environment(dr, replica),  # the DR functions' settings
            region=DR_REGION,
        )
        yield Disaster(sample_db, bucket, replica, replication, dr, machine)
    finally:
        aws.use_region(None)
        with connect(dr.for_database("postgres")) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dr.dbname}" WITH (FORCE)')


def _databases(spec: ConnectionSpec) -> set[str]:
    with connect(spec.for_database("postgres")) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}


def _drill(disaster: Disaster) -> dict[str, Any]:
    """The disaster drill as the DR stack's schedule starts it (its rule's input, from the template)."""
    [rule] = [r for r in dr_template()["Resources"].values() if r["Type"] == "AWS::Events::Rule"]
    request = RestoreRequest.model_validate(json.loads(rule["Properties"]["Targets"][0]["Input"]))
    assert request.disaster and request.mode == "drill"
    with emf_to_cloudwatch():
        return follow(start_restore(disaster.machine, request), poll_s=0.2)


def test_a_backup_from_the_main_region_restores_from_the_replica_onto_the_dr_server(
    disaster: Disaster, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = disaster.back_up()
    expected = table_fingerprints(disaster.source)
    assert disaster.replication.run()  # S3 replication's stand-in: the backup reaches the DR region
    assert main(["backups", "list", "--region", DR_REGION, "--bucket", disaster.replica, "--json"]) == 0
    assert [row["id"] for row in json.loads(capsys.readouterr().out)] == [manifest.id]

    code = main(
        ["restore", "--region", DR_REGION, "--bucket", disaster.replica, "--state-machine-arn", disaster.machine]
    )

    out = capsys.readouterr().out
    assert code == 0, out
    assert f"checked before starting: backup {manifest.id} of {DATABASE}" in out
    assert "succeeded: restored: backup" in out
    assert table_fingerprints(disaster.dr) == expected  # every table's rows, on the second server
    # the restore read the replica, not the main bucket: it wrote its records beside the replicated backup
    records = aws.client("s3").list_objects_v2(Bucket=disaster.replica, Prefix="restores/").get("Contents", [])
    assert records and not aws.client("s3").list_objects_v2(Bucket=disaster.bucket, Prefix="restores/").get("Contents")


def test_restoring_from_a_missing_or_empty_replica_is_refused_with_the_reason(
    disaster: Disaster, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = f"dbops-nowhere-{uuid.uuid4().hex[:8]}"
    code = main(["restore", "--region", DR_REGION, "--bucket", missing, "--state-machine-arn", disaster.machine])
    assert code == 2
    assert f"bucket {missing} does not exist in region {DR_REGION}" in capsys.readouterr().err

    code = main(["restore", "--region", DR_REGION, "--bucket", disaster.replica, "--database", DATABASE])
    assert code == 2  # nothing replicated yet
    assert f"bucket {disaster.replica} in region {DR_REGION} holds no backup of {DATABASE}" in capsys.readouterr().err

    assert main(["restore", "--region", DR_REGION]) == 2
    assert "give its --bucket" in capsys.readouterr().err


def test_the_disaster_drill_restores_the_newest_replicated_backup_and_emits_its_metrics(disaster: Disaster) -> None:
    disaster.back_up()
    disaster.replication.run()
    since = fresh_second()  # an earlier test's drill metrics are not counted
    before = _databases(disaster.dr)

    result = _drill(disaster)

    assert result["status"] == "SUCCEEDED", result.get("output")
    assert _databases(disaster.dr) == before  # restored aside, checked, dropped
    assert metric_sum("DisasterRestoreSeconds", DATABASE, since) > 0
    age = metric_sum("DisasterRecoveryPointAgeSeconds", DATABASE, since)
    assert 0 <= age < 600  # the backup was made moments ago
    assert dr_tripped(DATABASE, since) == []


def test_the_disaster_drill_alarms_when_no_verified_backup_was_replicated(disaster: Disaster) -> None:
    """An unverified backup reaches the replica (it does not count); then replication is made to fail: the stand-in
    no longer runs, and the verified backup made after it never arrives."""
    run_backup(disaster.source, BackupRequest(database=DATABASE, bucket=disaster.bucket, kind="nightly"))
    assert disaster.replication.run()
    assert [e.verified for e in catalog.list_backups(disaster.replica, database=DATABASE)] == [None]
    disaster.back_up()
    since = fresh_second()  # an earlier test's drill metrics are not counted

    result = _drill(disaster)

    assert result["status"] == "FAILED"
    assert "NoReplicatedBackup" in json.dumps(result, default=str)
    assert dr_tripped(DATABASE, since) == [DRILL_FAILED]


def test_the_disaster_drill_alarms_when_the_replicated_backup_is_too_old(disaster: Disaster) -> None:
    """Replication fell behind: the newest backup in the replica finished three days ago (its replicated manifest
    says so), past the DR stack's 36-hour recovery point."""
    manifest = disaster.back_up()
    disaster.replication.run()
    key = manifest.prefix + catalog.MANIFEST
    s3 = aws.client("s3")
    replicated = json.loads(s3.get_object(Bucket=disaster.replica, Key=key)["Body"].read())
    for field in ("started_at", "finished_at"):
        replicated[field] = (datetime.fromisoformat(replicated[field]) - timedelta(days=3)).isoformat()
    s3.put_object(Bucket=disaster.replica, Key=key, Body=json.dumps(replicated).encode())
    since = fresh_second()  # an earlier test's drill metrics are not counted

    result = _drill(disaster)

    assert result["status"] == "SUCCEEDED", result.get("output")  # it restores: it is only old
    assert metric_sum("DisasterRecoveryPointAgeSeconds", DATABASE, since) > 3 * 86400 - 600
    assert dr_tripped(DATABASE, since) == [RECOVERY_POINT_OLD]
