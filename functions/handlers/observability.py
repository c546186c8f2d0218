"""Powertools set up once: one Logger, one Tracer, one metrics namespace for every handler.

Metrics are EMF lines written by `emit`, each with the database as its dimension (one invocation may
cover several databases, so a per-invocation dimension set would not do). Lambda turns EMF lines into metrics;
an ECS task's awslogs driver does not, so a task calls `send_metrics_with_api` first and `emit` then sends each
metric with cloudwatch:PutMetricData (the task role may, in dbops' namespace only)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.base import SingleMetric
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ValidationError

from dbops import contract
from dbops.aws import cloudwatch
from dbops.errors import validation_problems

NAMESPACE = contract.METRICS_NAMESPACE

M = TypeVar("M", bound=BaseModel)

logger = Logger(service=contract.SERVICE_NAME)
tracer = Tracer(service=contract.SERVICE_NAME)
_send_with_api = False


PROGRESS_LOG_EVERY_S = 10.0


def logged_progress(message: str) -> Callable[[str, int], None]:
    """A `progress(what, bytes)` callback for a function or a task: a log line (`step`, `bytes`) at most every 10 s
    (called from one thread at a time: the domain's byte counters hold a lock)."""
    shown = [float("-inf")]

    def report(what: str, done: int) -> None:
        now = time.monotonic()
        if now - shown[0] >= PROGRESS_LOG_EVERY_S:
            shown[0] = now
            logger.info(message, extra={"step": what, "bytes": done})

    return report


def logged_warning(message: str) -> None:
    """A `warn(message)` callback for the domain: something went wrong that the work goes on without."""
    logger.warning(message)


def send_metrics_with_api() -> None:
    """From now on `emit` sends metrics with PutMetricData: for ECS tasks, whose logs CloudWatch does not read
    as EMF."""
    global _send_with_api
    _send_with_api = True


def emit(name: str, value: float, unit: MetricUnit, database: str, dimensions: Mapping[str, str] | None = None) -> None:
    """One EMF metric with the database and any extra dimensions (e.g. the task), and nothing else:
    alarms match dimension sets exactly, so no service dimension is added behind their back."""
    if _send_with_api:
        _put_metric(name, value, unit, {contract.DIMENSION_DATABASE: database, **(dimensions or {})})
        return
    metric = SingleMetric(namespace=NAMESPACE, service="")
    metric.add_metric(name=name, unit=unit, value=value)
    metric.add_dimension(name=contract.DIMENSION_DATABASE, value=database)
    for key, dim_value in (dimensions or {}).items():
        metric.add_dimension(name=key, value=dim_value)
    # one write per document: handlers running in threads (the local stack) never interleave two on a line
    sys.stdout.write(json.dumps(metric.serialize_metric_set(), separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _put_metric(name: str, value: float, unit: MetricUnit, dimensions: Mapping[str, str]) -> None:
    """One metric by PutMetricData; a failure is logged, never raised: the work it measures is done."""
    try:
        cloudwatch.put_metric(NAMESPACE, name, value, unit.value, dimensions)
    except (BotoCoreError, ClientError) as exc:
        logger.error("metric not sent", extra={"metric": name, "error": str(exc)})


def parse(model: type[M], data: Any, what: str) -> M:
    """Validate input at the door; a clear ValueError names every wrong field and never echoes values."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"invalid {what}: {validation_problems(exc)}") from None


S = TypeVar("S", bound=BaseModel)


def parse_execution_state(event: Any, state: type[S], request: type[BaseModel], id_key: str, what: str) -> S:
    """A state machine step's input: the state an earlier step returned (it has `id_key`), or the execution's
    first input, {"request": ...} (with what the Request state adds) or the bare request."""
    if isinstance(event, dict) and id_key in event:
        return parse(state, event, f"{what} state")
    if isinstance(event, dict) and "request" in event:
        parsed = parse(request, event["request"], f"{what} request")
        return parse(state, {**event, "request": parsed}, f"{what} state")
    return parse(state, {"request": parse(request, event, f"{what} request")}, f"{what} state")
