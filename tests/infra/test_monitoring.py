"""Alarms on the shared metrics contract, one KMS-encrypted SNS topic, and the dashboard."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dbops import contract
from infra.alarm_rules import database_rules
from infra.alarm_settings import AlarmThresholds
from tests.infra.conftest import Synth

DATABASES = ("sprint_reports_v2", "billing")


def _alarm(synthesized: Synth, name: str) -> dict[str, Any]:
    alarm = synthesized.stack.monitoring.alarms[name]
    return synthesized.json["Resources"][synthesized.logical_id(alarm)]["Properties"]  # type: ignore[no-any-return]


# (alarm kind, metric, statistic, period s, comparison, threshold, evaluation periods, missing data)
DATABASE_ALARMS = [
    ("BackupFailed", "BackupFailed", "Sum", 300, "GreaterThanOrEqualToThreshold", 1, 1, "notBreaching"),
    ("BackupMissing", "BackupSucceeded", "Sum", 26 * 3600, "LessThanThreshold", 1, 1, "breaching"),
    ("RestoreFailed", "RestoreFailed", "Sum", 300, "GreaterThanOrEqualToThreshold", 1, 1, "notBreaching"),
    ("DrillFailed", "DrillFailed", "Sum", 300, "GreaterThanOrEqualToThreshold", 1, 1, "notBreaching"),
    ("HealthCritical", "HealthStatus", "Maximum", 300, "GreaterThanOrEqualToThreshold", 2, 2, "breaching"),
    ("HealthProbeErrors", "HealthProbeErrors", "Sum", 300, "GreaterThanOrEqualToThreshold", 1, 2, "notBreaching"),
    ("BackupStale", "BackupAgeHours", "Maximum", 300, "GreaterThanThreshold", 26, 3, "notBreaching"),
    (
        "ConnectionsHigh",
        "ConnectionsUsedPercent",
        "Maximum",
        300,
        "GreaterThanOrEqualToThreshold",
        95,
        2,
        "notBreaching",
    ),
    ("QueriesBlocked", "BlockedQueries", "Minimum", 300, "GreaterThanOrEqualToThreshold", 1, 3, "notBreaching"),
    ("XidWraparound", "XidWraparoundAge", "Maximum", 300, "GreaterThanThreshold", 1_400_000_000, 1, "notBreaching"),
]

# billing sets its own (tests/infra/conftest.py: databases[1].alarms.thresholds): backup_age_hours 30 is also
# BackupMissing's window
OWN_THRESHOLDS = {("billing", "BackupStale"): 30, ("billing", "ConnectionsHigh"): 80}
OWN_PERIODS = {("billing", "BackupMissing"): 30 * 3600}


def test_a_database_backed_up_on_request_only_has_no_backup_missing_alarm() -> None:
    thresholds = AlarmThresholds()
    scheduled = {rule.kind for rule in database_rules(thresholds, health_scheduled=True, backup_scheduled=True)}
    on_request = {rule.kind for rule in database_rules(thresholds, health_scheduled=True, backup_scheduled=False)}
    assert scheduled - on_request == {"BackupMissing"}
    assert "BackupFailed" in on_request


@pytest.mark.parametrize("database", DATABASES)
@pytest.mark.parametrize(
    ("kind", "metric", "statistic", "period", "comparison", "threshold", "periods", "missing"), DATABASE_ALARMS
)
def test_database_alarm(
    synthesized: Synth,
    database: str,
    kind: str,
    metric: str,
    statistic: str,
    period: int,
    comparison: str,
    threshold: float,
    periods: int,
    missing: str,
) -> None:
    alarm = _alarm(synthesized, f"{kind}-{database}")
    topic = {"Ref": synthesized.logical_id(synthesized.stack.monitoring.topic)}
    assert alarm["Namespace"] == "dbops"
    assert alarm["MetricName"] == metric
    assert alarm["Dimensions"] == [{"Name": "database", "Value": database}]
    assert alarm["Statistic"] == statistic
    assert alarm["Period"] == OWN_PERIODS.get((database, kind), period)
    assert alarm["ComparisonOperator"] == comparison
    assert alarm["Threshold"] == OWN_THRESHOLDS.get((database, kind), threshold)
    assert alarm["EvaluationPeriods"] == periods
    assert alarm["DatapointsToAlarm"] == periods
    assert alarm["TreatMissingData"] == missing
    assert alarm["AlarmActions"] == [topic]
    assert alarm["OKActions"] == [topic]
    assert alarm["AlarmName"] == f"dbops-test-{kind}-{database}"
    assert f"-> {kind}." in alarm["AlarmDescription"]  # points at the README runbook section


@pytest.mark.parametrize("task", ["analyze", "vacuum", "reindex", "cleanup", "archive"])
def test_maintenance_failure_alarm_per_task(synthesized: Synth, task: str) -> None:
    alarm = _alarm(synthesized, f"MaintenanceFailed-{task}-billing")
    assert alarm["MetricName"] == "MaintenanceFailed"
    assert alarm["Dimensions"] == [{"Name": "database", "Value": "billing"}, {"Name": "task", "Value": task}]
    assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "Sum",
        1,
        "GreaterThanOrEqualToThreshold",
    )
    assert alarm["TreatMissingData"] == "notBreaching"


@pytest.mark.parametrize("function", ["Backup", "Health", "Maintenance"])
def test_lambda_errors_alarm_per_function(synthesized: Synth, function: str) -> None:
    alarm = _alarm(synthesized, f"FunctionErrors-{function}")
    fn_id = synthesized.logical_id(synthesized.stack.functions.by_name[function])
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("AWS/Lambda", "Errors", "Sum")
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": fn_id}}]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")


def test_alarm_count_is_exactly_the_documented_set(synthesized: Synth) -> None:
    per_database = len(DATABASE_ALARMS) + 5
    # Errors per restore step function, the expired-copies and temporary-instance-sweep functions, the 5 rehearsal
    # step functions; executions failed, timed out, aborted
    restore = 13 + 2 + 5 + 3
    backup = 3  # the backup state machine's executions failed, timed out, aborted
    dead_letters = 1  # the scheduled invokes' dead-letter queue
    on_rds = 2  # PointInTimeLag: sprint_reports_v2 has an rds_instance_id, billing an rds_cluster_id
    replication = 2  # ReplicationFailed, ReplicationLag: the second copy in us-west-2
    assert (
        len(synthesized.resources("AWS::CloudWatch::Alarm"))
        == per_database * len(DATABASES) + 3 + restore + backup + dead_letters + on_rds + replication
    )


@pytest.mark.parametrize("database", DATABASES)  # one on an RDS instance, one on an Aurora cluster
def test_point_in_time_lag_alarms_for_databases_on_rds(synthesized: Synth, database: str) -> None:
    alarm = _alarm(synthesized, f"PointInTimeLag-{database}")
    assert (alarm["MetricName"], alarm["Statistic"], alarm["Period"]) == ("RestorableLagSeconds", "Maximum", 300)
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 30 * 60)
    assert (alarm["EvaluationPeriods"], alarm["TreatMissingData"]) == (2, "notBreaching")


def test_a_database_not_on_rds_has_no_point_in_time_alarm() -> None:
    kinds = {rule.kind for rule in database_rules(AlarmThresholds(), True, True, on_rds=False)}
    assert "PointInTimeLag" not in kinds


def test_topic_is_kms_encrypted_tls_only_and_subscribed_by_email(synthesized: Synth) -> None:
    monitoring = synthesized.stack.monitoring
    topic_id = synthesized.logical_id(monitoring.topic)
    key_id = synthesized.logical_id(monitoring.topic_key)
    topic = synthesized.json["Resources"][topic_id]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    key = synthesized.json["Resources"][key_id]["Properties"]
    assert key["EnableKeyRotation"] is True
    cloudwatch = [
        s for s in key["KeyPolicy"]["Statement"] if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert cloudwatch and cloudwatch[0]["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]
    (policy,) = synthesized.resources("AWS::SNS::TopicPolicy").values()
    (deny,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    (subscription,) = synthesized.resources("AWS::SNS::Subscription").values()
    assert subscription["Properties"] == {
        "Protocol": "email",
        "TopicArn": {"Ref": topic_id},
        "Endpoint": "dba@example.com",
    }


def test_dashboard_shows_backup_size_duration_rpo_rto_and_health(synthesized: Synth) -> None:
    (dashboard,) = synthesized.resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for metric in (
        "BackupBytes",
        "BackupDurationSeconds",
        "BackupAgeHours",
        "RestoreSeconds",
        "HealthStatus",
        "ConnectionsUsedPercent",
        "BlockedQueries",
        "XidWraparoundAge",
        "DrillFailed",
    ):
        assert metric in body, metric
    assert "RPO 24 h" in body and "RTO 4 h" in body
    assert dashboard["Properties"]["DashboardName"] == "dbops-test-dbops"


def test_an_existing_topic_replaces_the_created_one() -> None:
    from aws_cdk import App, Stack
    from aws_cdk.assertions import Template

    from infra.monitoring import Monitoring
    from infra.settings import StackSettings
    from tests.infra.conftest import settings_dict

    raw = settings_dict()
    raw["alarms"] = {"topic_arn": "arn:aws:sns:eu-west-1:123456789012:ops-pager"}
    stack = Stack(App(), "TopicTest")
    Monitoring(stack, "Monitoring", settings=StackSettings.model_validate(raw), functions={})
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::SNS::Topic", 0)
    template.resource_count_is("AWS::KMS::Key", 0)
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    assert alarms
    assert all(
        a["Properties"]["AlarmActions"] == ["arn:aws:sns:eu-west-1:123456789012:ops-pager"] for a in alarms.values()
    )


def test_every_alarm_kind_has_a_runbook_section_in_the_readme(synthesized: Synth) -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    runbook = readme[readme.index("## Runbook") :]
    kinds = {
        desc.split("-> ")[1].rstrip(".")
        for desc in (
            a["Properties"]["AlarmDescription"] for a in synthesized.resources("AWS::CloudWatch::Alarm").values()
        )
    }
    assert kinds >= {
        "BackupFailed",
        "BackupMissing",
        "BackupWorkflowFailed",
        "RestoreFailed",
        "HealthCritical",
        "MaintenanceFailed",
        "ScheduledInvokeFailed",
    }
    for kind in sorted(kinds):
        assert f"\n### {kind}\n" in runbook, f"README runbook has no section for {kind}"


def test_no_alarm_watches_a_refusal(synthesized: Synth) -> None:
    """RestoreRefused and RehearsalRefused count requests refused by validation (an operator's typo): no alarm."""
    watched = {a["Properties"].get("MetricName") for a in synthesized.resources("AWS::CloudWatch::Alarm").values()}
    assert set(contract.UNALARMED_METRICS) == {"RestoreRefused", "RehearsalRefused"}
    assert not watched & set(contract.UNALARMED_METRICS)
    assert {"RestoreFailed", "BackupFailed"} <= watched  # a real failure still is
