"""CloudWatch reading the EMF lines of the local stack's in-process handlers, as it reads a Lambda function's log.

On AWS the handlers' EMF lines become metrics because Lambda's log goes to CloudWatch Logs; here the handlers run in
this process and print them, so nothing reaches (moto's) CloudWatch. Within `emf_to_cloudwatch()` each EMF document
a handler writes is also sent with PutMetricData, under the same namespace, name, unit and dimensions: a test reads
the metrics back as an alarm would see them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aws_lambda_powertools.metrics.base import SingleMetric

from dbops.aws import cloudwatch


def _send(document: dict[str, Any]) -> None:
    for directive in document["_aws"]["CloudWatchMetrics"]:
        dimensions = {d: str(document[d]) for group in directive["Dimensions"] for d in group}
        for metric in directive["Metrics"]:
            value = document[metric["Name"]]
            for each in value if isinstance(value, list) else [value]:
                unit = metric.get("Unit", "None")
                cloudwatch.put_metric(directive["Namespace"], metric["Name"], float(each), unit, dimensions)


@contextmanager
def emf_to_cloudwatch() -> Iterator[None]:
    original = SingleMetric.serialize_metric_set

    def serialize_and_send(self: SingleMetric, *args: Any, **kwargs: Any) -> Any:
        document = original(self, *args, **kwargs)
        _send(document)
        return document

    SingleMetric.serialize_metric_set = serialize_and_send  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        SingleMetric.serialize_metric_set = original  # type: ignore[method-assign]
