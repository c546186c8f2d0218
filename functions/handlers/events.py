"""Event shapes shared by the handlers."""

from __future__ import annotations

import time
from typing import Any, Literal, TypeVar

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from dbops import contract
from dbops.config.databases import DatabaseConfig, find_database
from handlers.observability import emit, logger, parse


class ScheduledEvent(BaseModel):
    """An EventBridge scheduled event; `detail` may name a kind and a database."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    detail_type: Literal["Scheduled Event"] = Field(alias="detail-type")
    source: str
    id: str
    detail: dict[str, Any] = Field(default_factory=dict)


M = TypeVar("M", bound=BaseModel)


def parse_invocation(model: type[M], event: Any, what: str) -> M:
    """A scheduled event (its `detail` names what to do) or a direct invoke, validated into `model`."""
    if isinstance(event, dict) and "detail-type" in event:
        scheduled = parse(ScheduledEvent, event, "scheduled event")
        return parse(model, scheduled.detail, "scheduled event detail")
    return parse(model, event, what)


def databases_to_run(databases: list[DatabaseConfig], requested: str | None) -> list[DatabaseConfig]:
    """The one database an invocation names, or every configured one; an unknown name fails before any work."""
    return [find_database(databases, requested)] if requested else list(databases)


def deadline_for(context: LambdaContext, margin_s: float) -> float:
    """time.monotonic() after which no new work starts, keeping `margin_s` of the Lambda timeout to finish cleanly."""
    return time.monotonic() + context.get_remaining_time_in_millis() / 1000 - margin_s


def refusal(exc: Exception, database: str | None, **ids: str | None) -> dict[str, Any]:
    """What a step returns instead of its state when validation refused the request (nothing was touched):
    {"refusal": {"status": "refused", "reason", "error", "database", <ids>, "outcome"}}. The state machine's
    Choice sends it to a Succeed state (RestoreRefused, RehearsalRefused) with it as the output. Returned, not
    raised: a handler that raises counts in Lambda's Errors (alarm FunctionErrors), a Fail state in ExecutionsFailed."""
    text = " ".join(str(exc).split())
    return {
        "refusal": {
            "status": contract.REFUSED_STATUS,
            "reason": text,
            "error": type(exc).__name__,
            "database": database,
            **ids,
            "outcome": f"refused, nothing changed: {text}",
        }
    }


def refused_database(databases: list[DatabaseConfig], asked: Any) -> str | None:
    """The database a refusal's metric is counted for: the one asked for when it is configured, else the only one
    configured; None (no metric) for a name nobody configured among several."""
    names = [db.name for db in databases]
    if isinstance(asked, str) and asked in names:
        return asked
    return names[0] if len(names) == 1 or asked is None else None


def is_request(event: Any, state_id: str) -> bool:
    """Whether an event that does not parse is the operator's request (refused), not the state an earlier step wrote
    (it holds `state_id`: a fault, raised)."""
    return not (isinstance(event, dict) and state_id in event)


def refuse(
    exc: Exception, metric: str, databases: list[DatabaseConfig], asked: Any, step: str, **ids: str | None
) -> dict[str, Any]:
    """A request refused by `step`: `metric` (RestoreRefused, RehearsalRefused) counted for its database
    (refused_database), never alarmed, no notice; a warning logged; the refusal returned (see `refusal`)."""
    database = refused_database(databases, asked)
    if database is not None:
        emit(metric, 1, MetricUnit.Count, database)
    logger.warning("request refused", extra={"metric": metric, "step": step, "reason": str(exc)})
    return refusal(exc, asked if isinstance(asked, str) and asked else database, **ids)
