"""CloudWatch: the newest datapoint of a metric, one metric sent by PutMetricData, and the alarms firing now."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from dbops import aws


def newest_datapoint(
    namespace: str,
    name: str,
    dimensions: Mapping[str, str],
    statistic: str,
    window: tuple[datetime, datetime],
    period_s: int,
) -> float | None:
    """The statistic's newest datapoint within the window (start, end), None when there is none."""
    points = aws.client("cloudwatch").get_metric_statistics(
        Namespace=namespace,
        MetricName=name,
        Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
        StartTime=window[0],
        EndTime=window[1],
        Period=period_s,
        Statistics=[statistic],
    )["Datapoints"]
    if not points:
        return None
    newest: dict[str, Any] = max(points, key=lambda p: p["Timestamp"])
    return float(newest[statistic])


def put_metric(namespace: str, name: str, value: float, unit: str, dimensions: Mapping[str, str]) -> None:
    """One metric by PutMetricData (where CloudWatch reads no EMF: an ECS task's log stream). Raises boto's errors."""
    aws.client("cloudwatch").put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": name,
                "Value": value,
                "Unit": unit,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
            }
        ],
    )


def alarms_in_alarm() -> list[dict[str, Any]]:
    """Every metric alarm of the account and region now in state ALARM (name, reason, dimensions...), page by page."""
    pages = aws.client("cloudwatch").get_paginator("describe_alarms").paginate(StateValue="ALARM")
    return [alarm for page in pages for alarm in page.get("MetricAlarms", [])]
