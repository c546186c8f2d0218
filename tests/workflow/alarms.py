"""Which alarms of the synthesized stack an execution tripped, read back as CloudWatch would evaluate them.

moto's CloudWatch stores metrics but evaluates no alarm: each alarm of the whole app's template (one synth, the
infra tests' settings: database sprint_reports_v2, as the local stack configures it) is judged here from what it
watches. The dbops namespace: its metric read back from (moto's) CloudWatch (the handlers' EMF lines reach it within
local_stack.metrics.emf_to_cloudwatch), each datapoint compared with the threshold. AWS/States (ExecutionsFailed,
TimedOut, Aborted): the execution's status. AWS/Lambda (Errors): a function error in the execution's history.
AWS/SQS (a schedule's dead letters): no scheduled invoke runs in these tests. AWS/S3 (replication to the DR
region): no replication runs in an execution."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from dbops import aws, contract
from dbops.aws import stepfunctions

TEMPLATE_DATABASE = "sprint_reports_v2"
COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": operator.ge,
    "GreaterThanThreshold": operator.gt,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}
# what the state machines' execution alarms count, by the execution status that counts in them
EXECUTION_METRICS = {"ExecutionsFailed": "FAILED", "ExecutionsTimedOut": "TIMED_OUT", "ExecutionsAborted": "ABORTED"}


@functools.cache
def stack_alarms() -> tuple[dict[str, Any], ...]:
    """Every AWS::CloudWatch::Alarm's properties in the synthesized app."""
    import tempfile
    from pathlib import Path

    from tests.infra.conftest import settings_dict, synth

    template = synth(Path(tempfile.mkdtemp(prefix="dbops-alarms-")), settings_dict()).json
    return tuple(r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm")


def _dbops_tripped(alarm: dict[str, Any], database: str, since: datetime) -> bool:
    dimensions = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
    if dimensions.get(contract.DIMENSION_DATABASE) != TEMPLATE_DATABASE:
        return False  # another database's alarm
    dimensions[contract.DIMENSION_DATABASE] = database
    points = aws.client("cloudwatch").get_metric_statistics(
        Namespace=alarm["Namespace"],
        MetricName=alarm["MetricName"],
        Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
        StartTime=since,
        EndTime=datetime.now(UTC) + timedelta(minutes=5),
        Period=60,
        Statistics=[alarm["Statistic"]],
    )["Datapoints"]
    compare = COMPARE[alarm["ComparisonOperator"]]
    return any(compare(float(p[alarm["Statistic"]]), float(alarm["Threshold"])) for p in points)


def _function_failed(execution: str) -> bool:
    return any(e["type"] in ("LambdaFunctionFailed", "TaskFailed") for e in stepfunctions.history(execution))


def tripped(execution: dict[str, Any], machine: str, databases: Sequence[str], since: datetime) -> list[str]:
    """The names of the alarms an execution (describe_execution) of `machine` (Restore, Backup: the stack's name
    for it) tripped, for the local `databases`, counting from `since`."""
    found = []
    for alarm in stack_alarms():
        namespace, name = alarm["Namespace"], alarm["MetricName"]
        if namespace == contract.METRICS_NAMESPACE:
            hit = any(_dbops_tripped(alarm, db, since) for db in databases)
        elif namespace == "AWS/States":
            mine = alarm["AlarmName"].endswith(f"-{machine}")
            hit = mine and execution["status"] == EXECUTION_METRICS[name]
        elif namespace == "AWS/Lambda":
            hit = _function_failed(execution["executionArn"])
        elif namespace == "AWS/S3":
            hit = False  # ReplicationFailed, ReplicationLag: no replication runs in an execution
        else:
            assert namespace == "AWS/SQS", f"an alarm this check does not judge: {namespace} {name}"
            hit = False
        if hit:
            found.append(alarm["AlarmName"])
    return found


def metric_sum(name: str, database: str, since: datetime) -> float:
    """A dbops metric of one database summed from `since` (moto's CloudWatch)."""
    points = aws.client("cloudwatch").get_metric_statistics(
        Namespace=contract.METRICS_NAMESPACE,
        MetricName=name,
        Dimensions=[{"Name": contract.DIMENSION_DATABASE, "Value": database}],
        StartTime=since,
        EndTime=datetime.now(UTC) + timedelta(minutes=5),
        Period=60,
        Statistics=["Sum"],
    )["Datapoints"]
    return float(sum(p["Sum"] for p in points))


def metric_totals(database: str, *names: str) -> dict[str, float]:
    """Each named dbops metric of one database, summed over the last day: compare two readings to count what one
    step emitted (the server sums by the minute, so a window starting now may still hold a neighbour's points)."""
    day_ago = datetime.now(UTC) - timedelta(days=1)
    return {name: metric_sum(name, database, day_ago) for name in names}
