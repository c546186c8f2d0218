"""Event shapes shared by the handlers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ScheduledEvent(BaseModel):
    """An EventBridge scheduled event; `detail` may name a kind and a database."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    detail_type: Literal["Scheduled Event"] = Field(alias="detail-type")
    source: str
    id: str
    detail: dict[str, Any] = Field(default_factory=dict)
