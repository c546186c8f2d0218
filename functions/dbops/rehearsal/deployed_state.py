"""The execution state of a rehearsal in the restore state machine (`mode: rehearse`): the request it starts with,
and what each step adds (dbops.rehearsal.deployed)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dbops.backup.catalog import BackupKind
from dbops.config.databases import CATALOG_NAME, DatabaseConfig, RehearsalConfig
from dbops.config.durations import parse_duration
from dbops.rehearsal import artifacts
from dbops.rehearsal.models import CommandRun, RehearsalRequest, Timings
from dbops.restore.models import StepError

Phase = Literal["upgrade", "downgrade"]


class RehearsalCall(BaseModel):
    """The execution's input with mode rehearse; what it leaves out comes from the database's `rehearsal` settings."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["rehearse"]
    database: str | None = Field(default=None, pattern=CATALOG_NAME, description="omit when only one is configured")
    backup: str = Field(default="latest", description="a backup id, or latest")
    kind: BackupKind | None = Field(default=None, description="with latest: the newest of this kind")
    command: list[str] | None = Field(default=None, min_length=1, description="the migration container's command")
    downgrade: list[str] | None = Field(default=None, min_length=1, description="its rollback command")
    skip_downgrade: bool | None = None
    max_lock: float | None = Field(default=None, gt=0, description="seconds, or a duration such as 5s")
    max_duration: float | None = Field(default=None, gt=0, description="seconds, or a duration such as 10m")

    @field_validator("max_lock", "max_duration", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    def rehearsal_request(self, config: DatabaseConfig, rehearsal: RehearsalConfig) -> RehearsalRequest:
        return RehearsalRequest(
            database=config.name,
            command=self.command or rehearsal.command,
            backup=self.backup,
            kind=self.kind,
            url_env=rehearsal.url_env,
            downgrade=self.downgrade or rehearsal.downgrade,
            skip_downgrade=rehearsal.skip_downgrade if self.skip_downgrade is None else self.skip_downgrade,
            version_table=rehearsal.version_table,
            max_lock_s=self.max_lock or rehearsal.max_lock_s,
            max_duration_s=self.max_duration or rehearsal.max_duration_s,
            interval_s=rehearsal.interval_s,
        )


class RehearsalState(BaseModel):
    """The execution state every rehearsal step takes and returns."""

    model_config = ConfigDict(extra="forbid")

    request: RehearsalCall
    execution: str | None = None
    rehearsal: RehearsalRequest | None = None
    rehearsal_id: str | None = None
    scratch_database: str | None = None
    backup_id: str | None = None
    fill_on_fargate: bool = False
    server_major: int | None = None
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    revisions: dict[str, str | None] = Field(default_factory=dict)
    downgrade_command: list[str] | None = None
    phase: Phase = "upgrade"
    run_command: list[str] | None = Field(default=None, description="the migration container's command this run")
    run_timeout_s: int = 600
    watch: str | None = Field(default=None, description="the watcher container's orders (JSON): where to write")
    next: Literal["run", "judge"] = "run"
    runs: dict[str, CommandRun] = Field(default_factory=dict)
    task: dict[str, Any] | None = Field(default=None, description="RunTask's output for the last run")
    task_error: StepError | None = Field(default=None, description="the Catch of the last run")
    timings: Timings = Field(default_factory=Timings)
    verdict: Literal["pass", "fail"] | None = None
    summary: str | None = None
    result_key: str | None = None
    report_key: str | None = None
    error: StepError | None = None
    outcome: str | None = None

    def artifact(self, name: str) -> str:
        assert self.rehearsal is not None and self.rehearsal_id is not None
        return artifacts.key(self.rehearsal.database, self.rehearsal_id, name)
