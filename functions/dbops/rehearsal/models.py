"""The rehearsal's request and its result: pydantic models, so a step handler can take the one and return the
other as JSON, and `dbops rehearse --json` prints the result as is."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dbops.backup.catalog import BackupKind
from dbops.config.databases import CATALOG_NAME

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
DEFAULT_STALE_AFTER_S = 60.0


class RehearsalRequest(BaseModel):
    """What to rehearse, on what, and the limits that decide the verdict."""

    model_config = ConfigDict(extra="forbid")

    database: str = Field(pattern=CATALOG_NAME, description="the database's name in the backup catalog")
    command: list[str] = Field(min_length=1, description="the migration, e.g. alembic upgrade head")
    source: Literal["backup", "database"] = Field(
        default="backup",
        description="backup: restore a backup from the bucket; database: a fresh pg_dump of the database (no bucket)",
    )
    backup: str = Field(default="latest", description="a backup id, or latest")
    kind: BackupKind | None = Field(default=None, description="with latest: the newest of this kind")
    url_env: str = Field(default="DATABASE_URL", pattern=ENV_NAME, description="the variable the command reads")
    downgrade: list[str] | None = Field(
        default=None,
        description="the rollback; default: the command with `upgrade ...` replaced by `downgrade <revision before>`",
    )
    skip_downgrade: bool = Field(default=False, description="rehearse the upgrade only")
    version_table: str | None = Field(
        default="alembic_version",
        description="the migration tool's bookkeeping table: the revision before the upgrade is read from it, and "
        "it is left out of the schema comparison (its rows are the revision, not the schema)",
    )
    max_lock_s: float = Field(default=5.0, gt=0, description="longest lock the application may wait behind")
    max_duration_s: float = Field(default=600.0, gt=0, description="the command is stopped after this long")
    interval_s: float = Field(default=0.02, ge=0.001, le=5, description="how often the sessions are sampled")
    pass_env: list[str] = Field(
        default_factory=list, description="more variables of ours the command gets (it gets a clean environment)"
    )
    stale_after_s: float = Field(
        default=DEFAULT_STALE_AFTER_S,
        ge=0,
        description="scratch databases of rehearsals that are gone are dropped once this old",
    )

    @model_validator(mode="after")
    def _measurable(self) -> RehearsalRequest:
        if self.max_lock_s < 2 * self.interval_s:
            raise ValueError(
                "the lock limit must be at least twice the sampling interval: a shorter lock can fall between two "
                "samples unseen (give a smaller --interval)"
            )
        return self

    @field_validator("pass_env")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not re.match(ENV_NAME, name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return names

    @field_validator("command", "downgrade")
    @classmethod
    def _no_empty_program(cls, argv: list[str] | None) -> list[str] | None:
        if argv is not None and (not argv or not argv[0].strip()):
            raise ValueError("the command is empty")
        return argv


class CommandRun(BaseModel):
    """One run of the migration command (or of its rollback) against the scratch database."""

    argv: list[str]
    exit_code: int | None = Field(description="the process's exit status; negative: killed by that signal")
    seconds: float = Field(
        description="how long it ran; in the stack, the task's running time (the watcher's start included)"
    )
    timed_out: bool = False
    error: str | None = Field(default=None, description="it could not be started")
    output_tail: str = Field(default="", description="the end of its output, passwords replaced by ***")

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.error is None


class RelationRef(BaseModel):
    """A relation a lock was on, as it was before the command ran."""

    oid: int
    name: str = Field(
        description="schema.name; a table's storage by the table's name (see storage); `relation <oid>` for one "
        "created and dropped unseen"
    )
    kind: str = Field(description="table, index, sequence, materialized view, ...")
    table: str = Field(description="the table it belongs to (itself for a table)")
    bytes: int | None = Field(default=None, description="the table's total size before the command")
    existed_before: bool = Field(description="false: created by the command, so no application was using it")
    storage: str | None = Field(
        default=None,
        description="the lock was on storage of the table rather than the table itself: its TOAST storage, or the "
        "new storage a rewrite built (a transient table or index pg_class names only inside the rewrite's "
        "transaction); name, kind and existed_before are then the table's",
    )


class LockHold(BaseModel):
    """A lock a session of the command held, seen from first to last sample."""

    relation: RelationRef
    mode: str = Field(description="as pg_locks names it, e.g. AccessExclusiveLock")
    held_s: float = Field(description="the middle of what the samples allow: between the seen and the possible span")
    uncertainty_s: float = Field(description="held_s is right within this, from the sampling gaps at both ends")
    first_seen_s: float = Field(description="seconds after the command started")
    taken_by_statement: bool = Field(
        description="false: an earlier statement of the same transaction, shorter than the interval, may have taken it"
    )
    blocks: str = Field(description="what it keeps the application from doing")
    blocking: bool = Field(
        description="it blocks the application's reads or writes on a table that existed (a lock on the table's "
        "storage never counts: the one on the table itself does)"
    )


class LockWait(BaseModel):
    """A lock a session of the command waited for."""

    relation: RelationRef
    mode: str
    waited_s: float
    uncertainty_s: float
    blocked_by: list[int] = Field(default_factory=list, description="pids holding what it waited for")


class StatementResult(BaseModel):
    """One statement of the command as the samples saw it: (pid, query_start, query)."""

    pid: int
    query: str = Field(description="its text on one line, string literals hidden")
    started_s: float = Field(description="seconds after the command started")
    duration_s: float
    duration_exact: bool = Field(description="true: its end was seen (state_change), not estimated by sampling")
    locks: list[LockHold] = Field(default_factory=list, description="the locks first seen while it ran")
    waits: list[LockWait] = Field(default_factory=list)
    lock_s: float = Field(default=0.0, description="its longest lock that blocks the application")
    strongest_mode: str | None = None


class RewrittenTable(BaseModel):
    """A table (or index alone) whose storage the command replaced: a new relfilenode."""

    table: str
    bytes_before: int
    bytes_after: int | None
    table_rewritten: bool = Field(default=True, description="false: only its indexes were rebuilt (REINDEX)")
    indexes: list[str] = Field(default_factory=list, description="its indexes rebuilt")
    statement: str | None = Field(default=None, description="the statement holding ACCESS EXCLUSIVE on it, if seen")


class Finding(BaseModel):
    severity: Literal["fail", "warn", "info"]
    phase: Literal["upgrade", "downgrade"] = Field(default="upgrade", description="which run it was seen in")
    statement: str | None
    taken_by_statement: bool = Field(
        default=True, description="false: the lock may come from an earlier, unseen statement of its transaction"
    )
    table: str | None
    table_bytes: int | None = None
    mode: str | None = None
    lock_s: float | None = None
    rewritten: bool = False
    what: str
    advice: str


class SchemaObjectChange(BaseModel):
    """One object of pg_dump's (a `-- Name: ...; Type: ...` section) the downgrade left different."""

    change: Literal["added", "removed", "changed"] = Field(
        description="added: there after the downgrade, not before the upgrade; removed: the other way round"
    )
    object: str = Field(description="pg_dump's type and the qualified name, quoted as PostgreSQL quotes it")
    lines: list[str] = Field(description="its definition's lines that differ: `- before`, `+ after`")


class SchemaCheck(BaseModel):
    compared: bool = Field(description="false: the downgrade did not run, or failed")
    identical: bool | None = None
    changes: list[str] = Field(
        default_factory=list, description="each object added, removed or changed, once: `added TABLE public.t`"
    )
    objects: list[SchemaObjectChange] = Field(default_factory=list, description="the same, with their lines")
    diff: list[str] = Field(default_factory=list, description="unified diff, before the upgrade vs after the downgrade")


class Sampling(BaseModel):
    interval_s: float
    samples: int
    mean_gap_s: float
    max_gap_s: float
    errors: int = 0
    last_error: str | None = None


class Timings(BaseModel):
    sweep_s: float = 0.0
    restore_s: float = 0.0
    vacuum_analyze_s: float = 0.0
    schema_s: float = 0.0
    upgrade_s: float = 0.0
    downgrade_s: float = 0.0
    drop_s: float = 0.0
    total_s: float = 0.0


class RehearsalResult(BaseModel):
    """Everything a rehearsal found, and its verdict with every reason."""

    rehearsal_id: str
    database: str
    server: str = Field(description="host:port where the scratch database was made")
    scratch_database: str
    scratch_dropped: bool
    source: Literal["backup", "database"]
    backup_id: str | None = None
    backup_kind: str | None = None
    backup_finished_at: datetime | None = None
    command: list[str]
    downgrade_command: list[str] | None
    revision_before: str | None = None
    revision_after_upgrade: str | None = None
    revision_after_downgrade: str | None = None
    upgrade: CommandRun
    downgrade: CommandRun | None = None
    statements: list[StatementResult] = Field(default_factory=list, description="longest blocking lock first")
    statements_omitted: int = Field(default=0, description="statements seen beyond the first 500 kept")
    rewrites: list[RewrittenTable] = Field(default_factory=list)
    downgrade_statements: list[StatementResult] = Field(
        default_factory=list, description="the downgrade's statements, watched like the upgrade's"
    )
    downgrade_rewrites: list[RewrittenTable] = Field(default_factory=list, description="tables the downgrade rewrote")
    created: list[str] = Field(default_factory=list, description="relations the upgrade created")
    dropped: list[str] = Field(default_factory=list, description="relations the upgrade dropped")
    schema_check: SchemaCheck
    findings: list[Finding] = Field(default_factory=list)
    max_lock_s: float
    max_duration_s: float
    sampling: Sampling
    timings: Timings
    stale_dropped: list[str] = Field(default_factory=list, description="scratch databases of dead rehearsals dropped")
    verdict: Literal["pass", "fail"]
    reasons: list[str] = Field(default_factory=list, description="why it failed, one line each")

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"
