"""`dbops status` on the local stack: three databases in three states, each shown, and the exit code by the worst."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from dbops import aws
from dbops.aws import s3stream
from dbops.backup import catalog
from dbops.backup.run import BackupRequest, run_backup
from dbops.backup.verify import verify_entry
from dbops.cli import main
from dbops.errors import VerificationFailed
from dbops.health import HealthSettings, run_health
from dbops.health.last_report import save_report
from dbops.health.model import Status
from dbops.postgres.connection import ConnectionSpec
from dbops.rehearsal import RehearsalRequest, RehearsalResult, artifacts, run_rehearsal
from dbops.restore.records import RestoreRecord, save
from local_stack.aws import LocalAws

pytestmark = pytest.mark.any_server_version  # the flow, not the server: PostgreSQL 18 alone

SCHEDULE = "cron(0 2 * * ? *)"


def _backup(spec: ConnectionSpec, bucket: str, name: str) -> catalog.CatalogEntry:
    manifest = run_backup(spec, BackupRequest(database=name, bucket=bucket, kind="nightly"))
    return catalog.load_backup(bucket, "nightly", name, manifest.id)


@pytest.fixture
def three_states(sample_db: ConnectionSpec, bucket: str, local_aws: LocalAws) -> Iterator[dict[str, str]]:
    """healthy: a fresh verified backup, a drill that passed, its health report kept; broken: its only backup's
    archive damaged, so verification fails and records it; stale: a verified backup whose manifest says it finished
    30 hours ago (written again through the catalog), with its BackupMissing alarm firing."""
    verify_entry(bucket, _backup(sample_db, bucket, "healthy"))
    now = datetime.now(UTC)
    save(
        bucket,
        RestoreRecord(
            restore_id="d1",
            kind="drill",
            database="healthy",
            backup_id=None,
            target_db=None,
            tables=[],
            ok=True,
            started_at=now - timedelta(seconds=95),
            finished_at=now,
            seconds=95.0,
            detail="drill ok",
        ),
    )
    save_report(bucket, run_health(sample_db, HealthSettings(bucket=bucket, database_name="healthy")))

    broken = _backup(sample_db, bucket, "broken")
    aws.client("s3").put_object(Bucket=bucket, Key=broken.manifest.dump.key, Body=b"not an archive")
    with pytest.raises(VerificationFailed):
        verify_entry(bucket, broken)

    stale = _backup(sample_db, bucket, "stale")
    verify_entry(bucket, stale)
    aged = stale.manifest.model_copy(
        update={
            "started_at": stale.manifest.started_at - timedelta(hours=30),
            "finished_at": stale.manifest.finished_at - timedelta(hours=30),
        }
    )
    catalog.write_manifest(bucket, aged)
    cloudwatch = aws.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName="dbops-BackupMissing-stale",
        MetricName="BackupSucceeded",
        Namespace="dbops",
        Dimensions=[{"Name": "database", "Value": "stale"}],
        Statistic="Sum",
        Period=3600,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="LessThanThreshold",
    )
    cloudwatch.set_alarm_state(AlarmName="dbops-BackupMissing-stale", StateValue="ALARM", StateReason="no backup")
    yield {"broken": broken.manifest.id}
    cloudwatch.delete_alarms(AlarmNames=["dbops-BackupMissing-stale"])


def test_status_shows_each_state_worst_first(
    three_states: dict[str, str], bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["status", "--bucket", bucket, "--schedule", SCHEDULE, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == report["exit_code"] == 2
    rows = {db["database"]: {a["name"]: a for a in db["aspects"]} for db in report["databases"]}
    assert [db["database"] for db in report["databases"]][-1] == "healthy"  # the worst first
    healthy = rows["healthy"]
    assert healthy["backup"]["status"] == "ok" and healthy["backup"]["values"]["verified"] is True
    assert healthy["retained"]["status"] == "ok"
    assert healthy["drill"]["status"] == "ok" and healthy["drill"]["values"]["rto_seconds"] == 95.0
    assert healthy["health"]["status"] in ("ok", "warn", "critical")  # the report kept, as it found the database
    assert healthy["next_backup"]["text"].endswith("02:00 UTC)")
    assert healthy["alarms"]["text"] == "none" and healthy["point_in_time"]["text"] == "-"
    broken = rows["broken"]
    assert broken["backup"]["status"] == "critical" and "verification FAILED" in broken["backup"]["text"]
    assert broken["retained"]["status"] == "critical"
    assert broken["health"]["text"] == "unknown" and broken["drill"]["status"] == "unknown"
    stale = rows["stale"]
    assert stale["backup"]["status"] == "critical" and stale["backup"]["text"].startswith("30.0h ago")
    assert stale["alarms"]["status"] == "critical" and stale["alarms"]["text"] == "dbops-BackupMissing-stale"

    # the table: a row each, worst first, the states in words
    assert main(["status", "--bucket", bucket, "--schedule", SCHEDULE]) == 2
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:2] == ["DATABASE", "STATUS"]
    assert [line.split()[0] for line in lines[2:]][-1] == "healthy"
    assert "CRITICAL: 30.0h ago" in next(line for line in lines if line.startswith("stale"))


def test_status_exit_code_follows_the_worst_state(
    three_states: dict[str, str], bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    only_healthy = main(["status", "--bucket", bucket, "--database", "healthy", "--json"])
    healthy = json.loads(capsys.readouterr().out)["databases"][0]
    worst_of_health = {"ok": 0, "warn": 1, "critical": 2}[healthy["status"]]
    assert only_healthy == worst_of_health  # its health report is the only thing that may not be ok
    assert main(["status", "--bucket", bucket, "--database", "broken"]) == 2
    # 25 hours later the healthy database's backup is past the RPO (24 h), not yet critical (26 h)
    later = (datetime.now(UTC) + timedelta(hours=25)).isoformat()
    capsys.readouterr()
    assert main(["status", "--bucket", bucket, "--database", "healthy", "--now", later, "--json"]) >= 1
    aged = {a["name"]: a for a in json.loads(capsys.readouterr().out)["databases"][0]["aspects"]}
    assert aged["backup"]["status"] == "warn" and aged["health"]["status"] == "warn"  # the report is old by then
    # a bucket that cannot be read: 3, each aspect says why
    assert main(["status", "--bucket", "dbops-no-such-bucket", "--database", "healthy"]) == 3
    # a schedule dbops cannot read: 3, before anything is read
    assert main(["status", "--bucket", bucket, "--schedule", "cron(0 2 L * ? *)"]) == 3


def _rehearsed(spec: ConnectionSpec, bucket: str, name: str, command: list[str]) -> RehearsalResult:
    """A real rehearsal on a fresh dump of `spec`, its result kept where a deployed rehearsal keeps it."""
    request = RehearsalRequest(
        database=name, command=command, source="database", skip_downgrade=True, version_table=None
    )
    result = run_rehearsal(spec, request)
    s3stream.put_json(bucket, artifacts.key(name, result.rehearsal_id, "result.json"), result.model_dump_json())
    return result


def test_status_shows_the_point_in_time_window_the_last_rehearsal_and_the_newest_health_report(
    sample_db: ConnectionSpec, bucket: str, rds_instance: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """pitr: an RDS instance keeping 7 days of automated backups (moto's), its window shown; rehearsed_ok and
    rehearsed_bad: the verdict of their last rehearsal (one passed, one failed: a warning); pitr's health report
    read back from health/reports/: its worst probe, and a newer report saved over it shown instead."""
    passed = _rehearsed(sample_db, bucket, "rehearsed_ok", ["true"])
    failed = _rehearsed(sample_db, bucket, "rehearsed_bad", ["false"])
    assert (passed.verdict, failed.verdict) == ("pass", "fail")
    report = run_health(sample_db, HealthSettings(bucket=bucket, database_name="pitr"))
    save_report(bucket, report)
    configured = json.dumps([{"name": "pitr", "secret_id": "dbops/pitr", "rds_instance_id": rds_instance}])
    args = ["status", "--bucket", bucket, "--databases", configured, "--json"]
    capsys.readouterr()
    main([*args, "--database", "pitr", "--database", "rehearsed_ok", "--database", "rehearsed_bad"])
    printed = capsys.readouterr()
    assert printed.out.startswith("{"), printed.err
    rows = {db["database"]: {a["name"]: a for a in db["aspects"]} for db in json.loads(printed.out)["databases"]}
    window = rows["pitr"]["point_in_time"]
    assert window["status"] == "ok", window
    # moto's instance: restorable from its creation (within its 7 days) to now
    created = aws.client("rds").describe_db_instances(DBInstanceIdentifier=rds_instance)["DBInstances"][0][
        "InstanceCreateTime"
    ]
    earliest, latest = (datetime.fromisoformat(str(window["values"][k])) for k in ("earliest", "latest"))
    assert abs((earliest - created).total_seconds()) < 1 and 0 <= (datetime.now(UTC) - latest).total_seconds() < 60
    assert window["text"].startswith(f"{earliest:%m-%d %H:%M} to {latest:%m-%d %H:%M} UTC (lag "), window
    assert rows["rehearsed_ok"]["point_in_time"]["text"] == "-"  # no RDS configured for it
    assert rows["rehearsed_ok"]["rehearsal"] == {
        "name": "rehearsal", "status": "ok", "text": "pass", "values": {"id": passed.rehearsal_id},
    }  # fmt: skip
    bad = rows["rehearsed_bad"]["rehearsal"]
    assert bad["status"] == "warn" and bad["text"].startswith("fail: ") and failed.reasons[0][:40] in bad["text"]
    assert bad["values"] == {"id": failed.rehearsal_id}
    assert rows["pitr"]["rehearsal"]["text"] == "-" and rows["pitr"]["rehearsal"]["status"] == "unknown"
    health = rows["pitr"]["health"]
    assert health["status"] == report.status.value and health["values"]["status"] == report.status.value
    if report.status is not Status.OK:  # its worst probe by name
        worst = next(p for p in report.probes if p.status is report.status)
        assert health["text"].startswith(f"{report.status.value} {worst.name}")

    # a newer report, one probe critical: saved over the last, it is the one shown
    probe = report.probes[-1]
    critical = probe.model_copy(update={"status": Status.CRITICAL, "message": "made critical by the test"})
    newer = report.model_copy(update={"checked_at": datetime.now(UTC), "probes": [critical, *report.probes[:-1]]})
    save_report(bucket, newer)
    code = main([*args, "--database", "pitr"])
    [pitr] = json.loads(capsys.readouterr().out)["databases"]
    shown = {a["name"]: a for a in pitr["aspects"]}["health"]
    assert shown["status"] == "critical" and shown["text"] == f"critical {probe.name}", shown
    assert code == 2
