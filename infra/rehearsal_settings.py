"""cdk.json `databases[].rehearsal`: a database's migration rehearsals, and the RehearsalConfig its functions read."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, field_validator

from dbops.config.databases import RehearsalConfig, RehearsalMigration
from dbops.config.durations import parse_duration


def _duration(value: str | float) -> float:
    seconds = parse_duration(value) if isinstance(value, str) else float(value)
    if seconds <= 0:
        raise ValueError(f"{value!r}: give a duration longer than zero")
    return seconds


class DatabaseRehearsal(RehearsalMigration):
    """The restore state machine's `mode: rehearse` for this database: the application's migration image, run as
    an ECS Fargate task (with dbops' watcher beside it, from restore_task_image) against a scratch copy of a backup.
    The image must be built for the stack's architecture. Its URL comes from a secret dbops fills per rehearsal.
    The migration's command, downgrade and version table are RehearsalMigration's, as the functions read them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str = Field(min_length=1, description="the application's migration image (ECR or any registry)")
    environment: dict[str, str] = Field(default_factory=dict, description="more variables (never a secret)")
    working_directory: str | None = None
    max_lock: str | float = Field(default=5.0, description="longest lock the application may wait behind (5s)")
    max_duration: str | float = Field(default=600.0, description="each run is stopped after this long (10m)")
    interval: str | float = Field(default=0.02, description="how often the watcher samples the sessions (20ms)")
    cpu: int = Field(default=1024, description="the task's CPU units (Fargate: 256 to 16384)")
    memory_mib: int = Field(default=2048, ge=512, le=122880)

    @field_validator("max_lock", "max_duration", "interval")
    @classmethod
    def _durations(cls, value: str | float) -> float:
        return _duration(value)

    def function_config(self, secret_name: str) -> dict[str, Any]:
        """dbops.config.databases.RehearsalConfig (in DBOPS_DATABASES): what the rehearsal steps read."""
        # not validated again here: the settings were, and the functions validate DBOPS_DATABASES as they read it
        config = RehearsalConfig.model_construct(
            secret_id=secret_name,
            **self.model_dump(include=set(RehearsalMigration.model_fields)),
            max_lock_s=float(self.max_lock),
            max_duration_s=float(self.max_duration),
            interval_s=float(self.interval),
        )
        # the secret first: the variable's JSON as it always was
        return {"secret_id": secret_name, **config.model_dump()}


def rehearsal_secret_name(stack_name: str, database: str) -> str:
    """The secret a database's rehearsals put the migration's URL in (one per database: one rehearsal at a time)."""
    return f"{stack_name}/{database}/rehearsal"
