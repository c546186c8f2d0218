"""What `dbops status` reports: one graded aspect per column, a row per database, the rows worst first."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, computed_field

from dbops.health.model import Status

# the columns, in the table's order
ASPECTS = ("backup", "next_backup", "retained", "point_in_time", "drill", "health", "rehearsal", "alarms")


class StatusTarget(BaseModel):
    """A database to report on: its catalog name, its RDS instance or cluster, the schedule of its backups."""

    name: str
    rds: tuple[Literal["instance", "cluster"], str] | None = None
    schedule: str | None = Field(default=None, description="an EventBridge expression: when its next backup runs")


class Aspect(BaseModel):
    """One column of a database's row: `unknown` when there is nothing to grade (no record, not configured),
    `error` when it could not be read."""

    name: str
    status: Status
    text: str
    values: dict[str, str | float | int | bool | None] = Field(default_factory=dict)


class DatabaseStatus(BaseModel):
    database: str
    aspects: list[Aspect]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def status(self) -> Status:
        """The worst graded aspect (critical, error, warn, ok); `unknown` only when nothing could be graded."""
        graded = [a.status for a in self.aspects if a.status is not Status.UNKNOWN]
        return max(graded, key=lambda s: s.rank, default=Status.UNKNOWN)

    def aspect(self, name: str) -> Aspect:
        return next(a for a in self.aspects if a.name == name)


class StatusReport(BaseModel):
    checked_at: datetime
    bucket: str
    databases: list[DatabaseStatus] = Field(description="worst first")

    @property
    def exit_code(self) -> int:
        """As `dbops health`: 2 critical, else 3 when something could not be read, else 1 warn, else 0; `unknown`
        (nothing to grade) changes nothing."""
        found = {a.status for db in self.databases for a in db.aspects}
        if Status.CRITICAL in found:
            return 2
        if Status.ERROR in found:
            return 3
        return 1 if Status.WARN in found else 0
