"""What a maintenance run plans, reports while it works, and returns."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, computed_field

from dbops.config.maintenance import RetentionRule, Task

ObjectKind = Literal["table", "index", "leftover", "rule"]
Status = Literal["done", "skipped", "failed", "planned"]


class PlannedObject(BaseModel):
    """One object the task will work on: what runs on it and why it was chosen."""

    kind: ObjectKind
    schema_name: str
    name: str
    table: str | None = Field(default=None, description="an index's table")
    action: str
    reason: str
    skip_reason: str | None = Field(default=None, description="planned but not run, and why")
    estimated_rows: int | None = Field(default=None, description="rules: rows the rule names now")
    rule: RetentionRule | None = None
    cutoff: datetime | None = Field(default=None, description="rules: rows older than this go")

    @property
    def display(self) -> str:
        return f"{self.schema_name}.{self.name}"


class Plan(BaseModel):
    task: Task
    database: str
    server_version: int
    planned_at: datetime
    objects: list[PlannedObject] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class ObjectResult(BaseModel):
    kind: ObjectKind
    name: str
    action: str
    status: Status
    attempts: int = 0
    seconds: float = 0.0
    rows_deleted: int = 0
    rows_archived: int = 0
    batches: int = 0
    rows_by_table: dict[str, int] = Field(default_factory=dict, description="rules: rows moved per table")
    detail: str | None = Field(default=None, description="why skipped or failed, or a note")


class MaintenanceSummary(BaseModel):
    task: Task
    database: str
    dry_run: bool = False
    started_at: datetime
    duration_seconds: float
    objects: list[ObjectResult] = Field(default_factory=list)
    error: str | None = Field(default=None, description="the task could not run at all (bad rule, no connection)")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def done(self) -> int:
        return sum(1 for o in self.objects if o.status == "done")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def skipped(self) -> int:
        return sum(1 for o in self.objects if o.status == "skipped")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failed(self) -> int:
        return sum(1 for o in self.objects if o.status == "failed") + (1 if self.error else 0)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rows_deleted(self) -> int:
        return sum(o.rows_deleted for o in self.objects)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rows_archived(self) -> int:
        return sum(o.rows_archived for o in self.objects)

    @property
    def ok(self) -> bool:
        return self.failed == 0


class ProgressEvent(BaseModel):
    """start / retry / batch / done of one object; `rows` is the object's running total."""

    event: Literal["start", "retry", "batch", "done"]
    object: str
    message: str
    rows: int = 0


Progress = Callable[[ProgressEvent], None]
