"""Maintenance configuration: thresholds, timeouts, retention/archive rules and the default schedules.

Everything here is plain pydantic, importable without a database (the CDK app reads DEFAULT_SCHEDULES).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dbops.contract import MAINTENANCE_TASKS, MaintenanceTask

Task = MaintenanceTask
TASKS: tuple[Task, ...] = MAINTENANCE_TASKS

# EventBridge schedule expressions (UTC), one per task; the infra helper makes them overridable in cdk.json.
DEFAULT_SCHEDULES: dict[Task, str] = {
    "vacuum": "cron(30 2 * * ? *)",  # nightly: it only acts on tables past the dead-tuple thresholds
    "analyze": "cron(0 3 ? * SUN *)",  # weekly
    "cleanup": "cron(30 3 ? * SUN *)",  # weekly
    "archive": "cron(0 4 ? * SUN *)",  # weekly, after cleanup
    "reindex": "cron(0 5 1 * ? *)",  # monthly, the 1st
}

IDENTIFIER = r"^[^\x00]{1,63}$"  # any PostgreSQL identifier; it is quoted with psycopg.sql.Identifier


class RetentionRule(BaseModel):
    """Rows of `table` whose `timestamp_column` is older than `age` are deleted or moved to `<table>_archive`.

    `keep` is an SQL boolean expression over the table's columns; rows where it is true (or null) stay.
    In archive mode every row that references a moved row through a foreign key (recursively) moves with it,
    in the same transaction, into its own `<child>_archive` table; `batch_size` then counts rows of `table`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=200, description="shown in plans, summaries and logs")
    schema_name: str = Field(default="public", alias="schema", pattern=IDENTIFIER)
    table: str = Field(pattern=IDENTIFIER)
    timestamp_column: str = Field(pattern=IDENTIFIER)
    age: str = Field(min_length=1, max_length=100, description="a PostgreSQL interval, e.g. '6 months'")
    keep: str | None = Field(default=None, max_length=2000, description="SQL boolean expression: rows to keep")
    mode: Literal["delete", "archive"]
    batch_size: int = Field(default=5000, ge=1, le=100_000)

    @field_validator("keep")
    @classmethod
    def _blank_keep_is_none(cls, value: str | None) -> str | None:
        return value if value is None or value.strip() else None


DEFAULT_RULES: tuple[RetentionRule, ...] = (
    RetentionRule(
        name="report snapshots older than 6 months, baselines kept",
        table="report_snapshots",
        timestamp_column="created_at",
        age="6 months",
        keep="is_baseline",
        mode="delete",
        batch_size=5000,
    ),
    RetentionRule(
        name="sprints ended more than 2 years ago, with their issues and snapshots",
        table="sprints",
        timestamp_column="ends_on",
        age="2 years",
        mode="archive",
        batch_size=50,
    ),
)


class MaintenanceConfig(BaseModel):
    """How maintenance runs: timeouts and retries per object, the thresholds that pick objects, the rules."""

    model_config = ConfigDict(extra="forbid")

    # per statement; lock waits are short so the application never queues long behind us
    lock_timeout_s: float = Field(default=5.0, gt=0, le=600)
    # REINDEX CONCURRENTLY waits for every transaction on the table to end; those waits block no reader or
    # writer, so they may last longer
    reindex_lock_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    statement_timeout_s: float = Field(default=1800.0, gt=0, le=86_400, description="one ANALYZE/VACUUM/REINDEX")
    batch_statement_timeout_s: float = Field(default=60.0, gt=0, le=3600, description="one cleanup/archive step")
    lock_retries: int = Field(default=2, ge=0, le=10, description="retries after a lock timeout, then skip")
    retry_delay_s: float = Field(default=2.0, ge=0, le=300)
    batch_pause_s: float = Field(default=0.0, ge=0, le=60, description="sleep between batches to spare the I/O")

    schemas: list[str] | None = Field(default=None, description="limit analyze/vacuum/reindex to these schemas")

    # vacuum a table when it has at least min dead tuples and either the ratio or the count passes
    vacuum_min_dead_tuples: int = Field(default=1000, ge=0)
    vacuum_dead_ratio: float = Field(default=0.10, gt=0, le=1)
    vacuum_dead_tuples: int = Field(default=100_000, ge=1)

    # reindex: "bloat" rebuilds B-tree indexes estimated bloated past the ratio; "full" rebuilds every index
    reindex_mode: Literal["bloat", "full"] = "bloat"
    reindex_bloat_ratio: float = Field(default=0.30, gt=0, lt=1)
    reindex_min_bytes: int = Field(default=8 * 1024 * 1024, ge=0, description="bloat mode ignores smaller indexes")

    rules: list[RetentionRule] = Field(default_factory=lambda: list(DEFAULT_RULES))

    @model_validator(mode="after")
    def _rule_names_unique(self) -> MaintenanceConfig:
        names = [r.name for r in self.rules]
        if len(names) != len(set(names)):
            raise ValueError("rule names must be unique")
        return self

    def rules_for(self, task: Task) -> list[RetentionRule]:
        mode = {"cleanup": "delete", "archive": "archive"}.get(task)
        return [r for r in self.rules if r.mode == mode]
