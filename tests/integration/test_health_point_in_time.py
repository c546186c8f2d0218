"""Point-in-time readiness on RDS (the `point_in_time` probe) against moto's RDS over HTTP: automated backups
kept, LatestRestorableTime recent; the metric the PointInTimeLag alarm watches."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from dbops import aws
from dbops.cli import main
from dbops.health import HealthSettings, Thresholds, run_health
from dbops.health.model import Status
from dbops.health.probes.point_in_time import probe_point_in_time
from dbops.health.probes.rds_metrics import probe_rds_metrics
from dbops.postgres.connection import ConnectionSpec
from local_stack.aws import LocalAws
from local_stack.postgres import LocalPostgres


def test_an_instance_keeping_backups_and_restorable_to_now_is_ok(rds_instance: str) -> None:
    finding = probe_point_in_time("instance", rds_instance, Thresholds(), datetime.now(UTC))
    assert finding.status is Status.OK, finding.message
    assert finding.values["backup_retention_days"] == 7
    assert 0 <= float(finding.values["restorable_lag_seconds"] or 0) < 60


@pytest.mark.parametrize(
    ("later", "status"), [(timedelta(minutes=15), Status.WARN), (timedelta(hours=1), Status.CRITICAL)]
)
def test_a_latest_restorable_time_falling_behind_warns_then_is_critical(
    rds_instance: str, later: timedelta, status: Status
) -> None:
    """The same instance seen `later`: its LatestRestorableTime has not moved (WAL no longer uploaded)."""
    finding = probe_point_in_time("instance", rds_instance, Thresholds(), datetime.now(UTC) + later)
    assert finding.status is status
    assert float(finding.values["restorable_lag_seconds"] or 0) >= later.total_seconds() - 60


@pytest.mark.parametrize("rds_instance", [0], indirect=True)
def test_an_instance_without_automated_backups_is_critical(rds_instance: str) -> None:
    finding = probe_point_in_time("instance", rds_instance, Thresholds(), datetime.now(UTC))
    assert finding.status is Status.CRITICAL
    assert "keeps no automated backups (backup retention 0)" in finding.message


def test_an_instance_that_does_not_exist_is_critical(local_aws: LocalAws) -> None:
    finding = probe_point_in_time("instance", "no-such-instance", Thresholds(), datetime.now(UTC))
    assert finding.status is Status.CRITICAL
    assert "does not exist" in finding.message


def test_the_report_carries_the_probe_and_its_metric_and_dbops_health_takes_the_instance(
    rds_instance: str, pg18: LocalPostgres, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = ConnectionSpec.from_url(pg18.url())
    report = run_health(spec, HealthSettings(rds_instance_id=rds_instance))
    [probe] = [p for p in report.probes if p.name == "point_in_time"]
    assert probe.status is Status.OK
    assert "RestorableLagSeconds" in {m.name for m in report.metrics()}  # what PointInTimeLag watches
    assert "point_in_time" not in [p.name for p in run_health(spec, HealthSettings()).probes]  # not on RDS

    main(["health", "--database-url", pg18.url(), "--rds-instance-id", rds_instance, "--json"])
    doc = json.loads(capsys.readouterr().out)
    [shown] = [p for p in doc["probes"] if p["name"] == "point_in_time"]
    assert shown["status"] == "ok" and shown["values"]["backup_retention_days"] == 7


# The RDS instance's own CloudWatch signals (probe rds_metrics), as RDS publishes them (namespace AWS/RDS).


def _publish(dimension: str, identifier: str, **values: float) -> None:
    aws.client("cloudwatch").put_metric_data(
        Namespace="AWS/RDS",
        MetricData=[
            {"MetricName": name, "Value": value, "Dimensions": [{"Name": dimension, "Value": identifier}]}
            for name, value in values.items()
        ],
    )


def test_free_storage_running_out_is_critical_and_reported_with_cpu_and_connections(rds_instance: str) -> None:
    """The instance has 20 GiB allocated; 1 GiB left is 5 %."""
    _publish("DBInstanceIdentifier", rds_instance, FreeStorageSpace=2**30, CPUUtilization=42.0, DatabaseConnections=12)

    finding = probe_rds_metrics("instance", rds_instance, Thresholds(), datetime.now(UTC))

    assert finding.status is Status.CRITICAL, finding.message
    assert finding.values["rds_free_storage_percent"] == 5.0
    assert finding.values["rds_free_storage_bytes"] == 2**30
    assert (finding.values["rds_cpu_utilization_percent"], finding.values["rds_database_connections"]) == (42.0, 12)
    assert "1.0 GB free storage (5 % of" in finding.message or "free storage (5 %" in finding.message


def test_an_instance_with_room_and_idle_cpu_is_ok_and_one_with_no_data_is_unknown(rds_instance: str) -> None:
    assert probe_rds_metrics("instance", rds_instance, Thresholds(), datetime.now(UTC)).status is Status.UNKNOWN
    _publish("DBInstanceIdentifier", rds_instance, FreeStorageSpace=15 * 2**30, CPUUtilization=12.0)
    finding = probe_rds_metrics("instance", rds_instance, Thresholds(), datetime.now(UTC))
    assert finding.status is Status.OK, finding.message
    assert finding.values["rds_free_storage_percent"] == 75.0


def test_an_aurora_cluster_is_judged_on_cpu(local_aws: LocalAws) -> None:
    cluster = f"aurora-{uuid.uuid4().hex[:8]}"
    _publish("DBClusterIdentifier", cluster, CPUUtilization=97.0, DatabaseConnections=40)

    finding = probe_rds_metrics("cluster", cluster, Thresholds(), datetime.now(UTC))

    assert finding.status is Status.CRITICAL
    assert "rds_free_storage_percent" not in finding.values  # Aurora's storage grows by itself
    assert finding.values["rds_cpu_utilization_percent"] == 97.0
