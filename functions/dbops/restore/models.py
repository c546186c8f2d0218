"""The restore request (state machine input and CLI) and the state passed from step to step."""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dbops.backup.catalog import BackupKind, RelKind
from dbops.restore.names import display, parse_table_name


class RestoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backup: str = Field(default="latest", description="a backup id, or latest")
    kind: BackupKind | None = Field(default=None, description="with latest: the newest of this kind")
    database: str | None = Field(default=None, description="the configured database (default: the only one)")
    tables: list[str] = Field(
        default_factory=list,
        description='empty: the whole database; else table, schema.table or psql-style "Schema"."Table"',
    )
    target: str | None = Field(default=None, description="target database name (default: the backup's)")
    mode: Literal["restore", "drill"] = "restore"
    dry_run: bool = False
    disaster: bool = Field(
        default=False,
        description="the DR stack's disaster drill: the newest verified backup (the replica's), and its metrics",
    )
    as_of: datetime | None = Field(
        default=None,
        description="restore as the database was at this moment (with its UTC offset), from its RDS instance's "
        "point-in-time recovery instead of a backup",
    )

    @field_validator("as_of", mode="before")
    @classmethod
    def _short_offset(cls, value: Any) -> Any:
        """PostgreSQL writes an offset as +00 (and `SELECT now()` prints it so): read it as +00:00."""
        if isinstance(value, str) and re.search(r"[+-]\d{2}$", value.strip()):
            return value.strip() + ":00"
        return value

    @field_validator("as_of")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("give the moment with its UTC offset, e.g. 2026-11-29 14:04:00+00")
        return value

    @model_validator(mode="after")
    def _disaster_drill(self) -> RestoreRequest:
        if self.disaster and (
            self.mode != "drill" or self.backup != "latest" or self.kind or self.as_of or self.tables
        ):
            raise ValueError("disaster is a drill of the newest verified backup: mode drill, no backup, kind or tables")
        return self

    @model_validator(mode="after")
    def _one_source(self) -> RestoreRequest:
        if self.as_of is not None and (self.backup != "latest" or self.kind is not None):
            raise ValueError("as_of restores from the RDS instance's point-in-time recovery: give no backup or kind")
        return self

    @field_validator("tables")
    @classmethod
    def _table_names(cls, tables: list[str]) -> list[str]:
        for name in tables:
            parse_table_name(name)  # raises ValueError saying what is wrong with it
        if len(set(tables)) != len(tables):
            raise ValueError("a table is named twice")
        return tables


class TablePlan(BaseModel):
    schema_name: str
    name: str
    rows: int
    oid: int | None = Field(default=None, description="pg_class OID in the backup's database")
    relkind: RelKind = "r"

    @property
    def qualified(self) -> str:
        """The name as psql would need it written (quoted where it must be)."""
        return display(self.schema_name, self.name)

    @property
    def holds_rows(self) -> bool:
        """A partitioned table's rows live in its partitions; a materialized view is refreshed, not swapped."""
        return self.relkind == "r"


class StepError(BaseModel):
    """What Step Functions' Catch puts at $.error."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, serialize_by_alias=True)
    error: str = Field(default="", alias="Error")
    cause: str = Field(default="", alias="Cause")

    def message(self) -> str:
        import json

        try:
            doc: Any = json.loads(self.cause)
            return f"{doc.get('errorType', self.error)}: {doc.get('errorMessage') or self.cause}"
        except (ValueError, AttributeError):
            return self.cause or self.error


class InstanceEndpoint(BaseModel):
    host: str
    port: int


class RestoreState(BaseModel):
    """The execution's state: the request plus what each step found or did. Steps return it updated."""

    model_config = ConfigDict(extra="forbid")

    request: RestoreRequest
    restore_id: str = Field(default_factory=lambda: secrets.token_hex(4))
    started_at: datetime | None = None
    database: str | None = None
    backup_id: str | None = None
    backup_kind: BackupKind | None = None
    backup_finished_at: datetime | None = None
    archive_size: int = 0
    target_db: str | None = None
    work_db: str | None = None
    pre_restore_db: str | None = None
    target_existed: bool = False
    tables: list[TablePlan] = Field(default_factory=list)
    use_fargate: bool = False
    safety_backup_id: str | None = None
    app_hook: bool = Field(default=False, description="the database has an application hook: Stop/StartApplication")
    app_stopped: bool = False
    checked: list[str] = Field(default_factory=list)
    swapped: bool = False
    refreshed_views: list[str] = Field(default_factory=list)
    swap_pause_s: float | None = Field(default=None, description="selective: how long the swap held its locks")
    swap_lock_attempts: int = 0
    execution: str | None = Field(default=None, description="the execution's ARN (tags the temporary instance)")
    temporary_instance: str | None = Field(default=None, description="as_of: the instance restored to that moment")
    instance_endpoint: InstanceEndpoint | None = None
    temporary_started_at: datetime | None = None
    temporary_deleted: bool = False
    dump_on_fargate: bool = False
    outcome: str | None = None
    error: StepError | None = None
    rollback_error: StepError | None = None

    @property
    def selective(self) -> bool:
        return bool(self.request.tables)

    @property
    def drill(self) -> bool:
        return self.request.mode == "drill"

    @property
    def record_kind(self) -> Literal["restore", "drill"]:
        """Its record's kind, and its work database's purpose (databases.work_name)."""
        return "drill" if self.drill else "restore"
