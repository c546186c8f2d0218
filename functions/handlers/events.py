"""Event shapes shared by the handlers."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from handlers.observability import parse


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
