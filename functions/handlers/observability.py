"""Powertools set up once: one Logger, one Tracer, one metrics namespace for every handler.

Metrics are EMF lines written by `emit`, each with the database as its dimension (one invocation may
cover several databases, so a per-invocation dimension set would not do)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.base import SingleMetric
from pydantic import BaseModel, ValidationError

from dbops import contract
from dbops.errors import validation_problems

NAMESPACE = contract.METRICS_NAMESPACE

M = TypeVar("M", bound=BaseModel)

logger = Logger(service=contract.SERVICE_NAME)
tracer = Tracer(service=contract.SERVICE_NAME)


def emit(name: str, value: float, unit: MetricUnit, database: str, dimensions: Mapping[str, str] | None = None) -> None:
    """One EMF metric with the database and any extra dimensions (e.g. the task), and nothing else:
    alarms match dimension sets exactly, so no service dimension is added behind their back."""
    metric = SingleMetric(namespace=NAMESPACE, service="")
    metric.add_metric(name=name, unit=unit, value=value)
    metric.add_dimension(name=contract.DIMENSION_DATABASE, value=database)
    for key, dim_value in (dimensions or {}).items():
        metric.add_dimension(name=key, value=dim_value)
    # one write per document: handlers running in threads (the local stack) never interleave two on a line
    sys.stdout.write(json.dumps(metric.serialize_metric_set(), separators=(",", ":")) + "\n")
    sys.stdout.flush()


def parse(model: type[M], data: Any, what: str) -> M:
    """Validate input at the door; a clear ValueError names every wrong field and never echoes values."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"invalid {what}: {validation_problems(exc)}") from None
