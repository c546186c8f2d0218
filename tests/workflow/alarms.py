"""Which alarms of the synthesized stack an execution tripped, read back as CloudWatch would evaluate them.

moto's CloudWatch stores metrics but evaluates no alarm: each alarm of the whole app's template (one synth, the
infra tests' settings: database sprint_reports_v2, as the local stack configures it) is judged here from what it
watches. The dbops namespace: its metric read back from (moto's) CloudWatch (the handlers' EMF lines reach it within
local_stack.metrics.emf_to_cloudwatch), each datapoint compared with the threshold. AWS/States (ExecutionsFailed,
TimedOut, Aborted): the execution's status. AWS/Lambda (Errors): that alarm's function failed in the execution's
history (the last function scheduled before a LambdaFunctionFailed or TaskFailed event, matched by its handler).
AWS/SQS (a schedule's dead letters): no scheduled invoke runs in these tests. AWS/S3 (replication to the DR
region): no replication runs in an execution."""

from __future__ import annotations

import functools
import json
import operator
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from dbops import aws, contract
from dbops.aws import stepfunctions
from local_stack.workflow import function_name

TEMPLATE_DATABASE = "sprint_reports_v2"
COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": operator.ge,
    "GreaterThanThreshold": operator.gt,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}
# what the state machines' execution alarms count, by the execution status that counts in them
EXECUTION_METRICS = {"ExecutionsFailed": "FAILED", "ExecutionsTimedOut": "TIMED_OUT", "ExecutionsAborted": "ABORTED"}


def _synth() -> Any:
    """The app synthesized once per process, the same synth as the infra tests' (tests.infra.conftest.Synth)."""
    from tests.infra.conftest import default_synth

    return default_synth()


@functools.cache
def _template() -> dict[str, Any]:
    """The synthesized main stack's template, read once (each read of the synth's template is a round trip to
    CDK's node process: 0.13 s, once per alarm judged before), as dr_template is."""
    return dict(_synth().json)


@functools.cache
def dr_template() -> dict[str, Any]:
    """The synthesized DR stack's template (replication.restore: its restore state machine, drill and alarms)."""
    synthesized = _synth()
    path = synthesized.outdir / f"{synthesized.stack.replica_stack.stack_name}.template.json"
    return dict(json.loads(path.read_text()))


def dr_tripped(database: str, since: datetime) -> list[str]:
    """The DR stack's alarms on dbops metrics (the disaster drill's) that `database`'s datapoints since `since`
    trip, read from the CloudWatch of the region the clients are in."""
    alarms = [r["Properties"] for r in dr_template()["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    return [
        a["AlarmName"]
        for a in alarms
        if a.get("Namespace") == contract.METRICS_NAMESPACE and _dbops_tripped(a, database, since)
    ]


def stack_alarms() -> tuple[dict[str, Any], ...]:
    """Every AWS::CloudWatch::Alarm's properties in the synthesized app."""
    resources = _template()["Resources"].values()
    return tuple(r["Properties"] for r in resources if r["Type"] == "AWS::CloudWatch::Alarm")


def _watched_function(alarm: dict[str, Any]) -> str:
    """The local function (local_stack.workflow.function_name) of the handler an AWS/Lambda alarm watches."""
    [ref] = [d["Value"]["Ref"] for d in alarm["Dimensions"] if d["Name"] == "FunctionName"]
    return function_name(_template()["Resources"][ref]["Properties"]["Handler"])


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
        Period=1,  # per second: a datapoint of an earlier test in the same minute is not counted
        Statistics=[alarm["Statistic"]],
    )["Datapoints"]
    compare = COMPARE[alarm["ComparisonOperator"]]
    return any(compare(float(p[alarm["Statistic"]]), float(alarm["Threshold"])) for p in points)


def _scheduled_function(event: dict[str, Any]) -> str | None:
    """The function a scheduling event invokes (its name); None for another service's task (ECS)."""
    if event["type"] == "LambdaFunctionScheduled":
        return str(event["lambdaFunctionScheduledEventDetails"]["resource"]).split(":")[-1]
    details = event["taskScheduledEventDetails"]
    if details["resourceType"] != "lambda":
        return None
    return str(json.loads(details["parameters"])["FunctionName"]).split(":")[-1]


def failed_functions(execution: str) -> set[str]:
    """The functions (their names) whose handler raised in an execution: each failure event's function is the one
    its chain of previous events (started, scheduled) leads back to; an ECS task's failure names none."""
    events = stepfunctions.history(execution)
    by_id = {e["id"]: e for e in events}
    failed = set()
    for event in events:
        if event["type"] not in ("LambdaFunctionFailed", "TaskFailed"):
            continue
        before = event
        while before["type"] not in ("LambdaFunctionScheduled", "TaskScheduled"):
            before = by_id[before["previousEventId"]]
        function = _scheduled_function(before)
        if function is not None:
            failed.add(function)
    return failed


def tripped(execution: dict[str, Any], machine: str, databases: Sequence[str], since: datetime) -> list[str]:
    """The names of the alarms an execution (describe_execution) of `machine` (Restore, Backup: the stack's name
    for it) tripped, for the local `databases`, counting from `since`."""
    found = []
    failed = failed_functions(execution["executionArn"])
    for alarm in stack_alarms():
        namespace, name = alarm["Namespace"], alarm["MetricName"]
        if namespace == contract.METRICS_NAMESPACE:
            hit = any(_dbops_tripped(alarm, db, since) for db in databases)
        elif namespace == "AWS/States":
            mine = alarm["AlarmName"].endswith(f"-{machine}")
            hit = mine and execution["status"] == EXECUTION_METRICS[name]
        elif namespace == "AWS/Lambda":
            hit = _watched_function(alarm) in failed
        elif namespace == "AWS/S3":
            hit = False  # ReplicationFailed, ReplicationLag: no replication runs in an execution
        else:
            assert namespace == "AWS/SQS", f"an alarm this check does not judge: {namespace} {name}"
            hit = False
        if hit:
            found.append(alarm["AlarmName"])
    return found


def fresh_second() -> datetime:
    """The start of the next whole second, once it has come: what is emitted from now on counts from it, and a
    datapoint an earlier test emitted moments ago (same database) does not, even taken by its second."""
    now = datetime.now(UTC)
    start = now.replace(microsecond=0) + timedelta(seconds=1)
    time.sleep((start - now).total_seconds())
    return start


def metric_sum(name: str, database: str, since: datetime) -> float:
    """A dbops metric of one database summed from `since` (moto's CloudWatch)."""
    points = aws.client("cloudwatch").get_metric_statistics(
        Namespace=contract.METRICS_NAMESPACE,
        MetricName=name,
        Dimensions=[{"Name": contract.DIMENSION_DATABASE, "Value": database}],
        StartTime=since,
        EndTime=datetime.now(UTC) + timedelta(minutes=5),
        Period=1,  # per second: a datapoint of an earlier test in the same minute is not counted
        Statistics=["Sum"],
    )["Datapoints"]
    return float(sum(p["Sum"] for p in points))


def metric_totals(database: str, *names: str) -> dict[str, float]:
    """Each named dbops metric of one database, summed over the last day: compare two readings to count what one
    step emitted (the server sums by the minute, so a window starting now may still hold a neighbour's points)."""
    day_ago = datetime.now(UTC) - timedelta(days=1)
    return {name: metric_sum(name, database, day_ago) for name in names}
