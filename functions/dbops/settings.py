"""Every dbops setting read from the environment: one class per kind of function, each read once at its door.

Names are dbops.contract's (DBOPS_*); the models they hold are dbops.config's. Nothing else reads os.environ
(the CLI's argument defaults aside).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dbops import contract
from dbops.config.backup import (
    DEFAULT_KEEP,
    DEFAULT_MAX_RAW_BYTES,
    DEFAULT_MAX_SHARE,
    DEFAULT_MAX_STREAMS,
    BackupLock,
    RetentionClasses,
)
from dbops.config.databases import DatabaseConfig, find_database
from dbops.config.health import HealthSettings, ProbeOptions
from dbops.config.maintenance import MaintenanceConfig
from dbops.config.thresholds import Thresholds
from dbops.contract import ENV_PREFIX, HEALTH_ENV_PREFIX


class _Settings(BaseSettings):
    """What every function with databases reads: DBOPS_DATABASES (JSON list of dbops.config.DatabaseConfig)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    databases: list[DatabaseConfig] = Field(min_length=1)

    def database(self, name: str | None) -> DatabaseConfig:
        return find_database(self.databases, name)


class FunctionSettings(_Settings):
    """The backup and restore functions and their Fargate task (env vars prefixed DBOPS_)."""

    bucket: str = Field(min_length=3)
    pg_bin_dir: str | None = Field(default=None, validation_alias="DBOPS_PG_BIN")
    compression_level: int = 1
    # seconds kept back from the Lambda timeout to abort cleanly instead of being killed
    deadline_margin_s: float = 30.0
    topic_arn: str | None = Field(default=None, description="SNS topic for restore and drill notifications")
    work_dir: str | None = Field(default=None, description="scratch folder for archives (Lambda: /tmp)")
    restore_jobs: int = Field(default=2, ge=1, le=16, description="pg_restore -j")
    pre_restore_keep_days: int = Field(default=7, ge=0)
    # archives larger than this restore in the Fargate task instead of Lambda (15 min, 10 GB /tmp)
    fargate_threshold_bytes: int = 4 * 1024**3
    # a database's backup runs on Fargate when its last one took more than this share of the Lambda timeout, or
    # pg_dump wrote more than these bytes (dbops.backup.placement; its `backup_runner` setting overrides both)
    backup_lambda_share: float = Field(default=DEFAULT_MAX_SHARE, gt=0, le=1)
    backup_fargate_raw_bytes: int = Field(default=DEFAULT_MAX_RAW_BYTES, ge=0)
    # a parallel backup's COPY streams at most (DBOPS_MAX_STREAMS), and no more than the function's vCPUs: Lambda
    # gives one per 1,769 MB of memory, which Lambda itself tells the function
    max_streams: int = Field(default=DEFAULT_MAX_STREAMS, ge=1, le=32)
    lambda_memory_mb: int | None = Field(default=None, validation_alias=contract.ENV_LAMBDA_MEMORY_SIZE)
    # in the Fargate task: its task definition's CPU units (infra sets them; the host's CPU count is not the task's)
    task_cpu_units: int | None = Field(default=None, ge=256, le=65536, validation_alias=contract.ENV_TASK_CPU_UNITS)
    # DBOPS_RETENTION_KEEP: a nightly or predeploy backup may expire only once this many newer ones verified
    retention_keep: int = Field(default=DEFAULT_KEEP, ge=1)
    # DBOPS_RETENTION_WEEKLY_DAYS / _MONTHLY_DAYS: grandfather-father-son classes of nightly backups (unset: none)
    retention_weekly_days: int | None = Field(default=None, ge=1)
    retention_monthly_days: int | None = Field(default=None, ge=1)
    # DBOPS_BACKUP_LOCK (JSON): S3 Object Lock on the backup objects written (unset: written unlocked)
    backup_lock: BackupLock | None = None
    # a point-in-time restore fails when its temporary instance is not available after this long
    point_in_time_wait_minutes: float = Field(default=120, gt=0)
    # a selective restore's swap (dbops.restore.selective_swap.locks): all its locks within this (under the server's 1 s
    # deadlock_timeout, so the swap is the side that gives way), tried again until the budget is spent; refused
    # before any lock when it would hold the application's writes longer than max_pause
    restore_lock_timeout_s: float = Field(default=0.2, gt=0, lt=1)
    restore_lock_wait_budget_s: float = Field(default=60.0, ge=0, le=600)
    restore_max_pause_s: float = Field(default=5.0, gt=0, le=3600)

    def retention_classes(self) -> RetentionClasses:
        return RetentionClasses(weekly=self.retention_weekly_days, monthly=self.retention_monthly_days)


class BackupLockEnvironment(BaseSettings):
    """`dbops backup` run outside the stack: DBOPS_BACKUP_LOCK (JSON, as the functions read it) locks the objects it
    writes; unset, they are written unlocked."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    backup_lock: BackupLock | None = None


class MaintenanceSettings(_Settings):
    """The maintenance function's environment: DBOPS_DATABASES, DBOPS_MAINTENANCE_BY_DATABASE (JSON: each
    database's own MaintenanceConfig, rules included) and DBOPS_MAINTENANCE (JSON: for a database not named in
    the former; the stack names every database, so a deployed database runs its own rules and no other's)."""

    maintenance: MaintenanceConfig = Field(default_factory=MaintenanceConfig)
    maintenance_by_database: dict[str, MaintenanceConfig] = Field(
        default_factory=dict, description="database name -> its configuration (rules, timeouts, thresholds)"
    )
    # seconds kept back from the Lambda timeout: no new object or batch starts after that
    deadline_margin_s: float = 60.0

    @model_validator(mode="after")
    def _known_databases(self) -> MaintenanceSettings:
        unknown = sorted(set(self.maintenance_by_database) - {db.name for db in self.databases})
        if unknown:
            raise ValueError(f"maintenance_by_database names databases that are not configured: {', '.join(unknown)}")
        return self

    def config_for(self, name: str) -> MaintenanceConfig:
        """That database's own configuration, else the shared one."""
        return self.maintenance_by_database.get(name, self.maintenance)


class HealthEnvironment(BaseSettings, ProbeOptions):
    """The health function's own settings (env vars prefixed DBOPS_HEALTH_)."""

    model_config = SettingsConfigDict(env_prefix=HEALTH_ENV_PREFIX, extra="ignore")

    thresholds_by_database: dict[str, Thresholds] = Field(
        default_factory=dict, description="database name -> the thresholds it sets (over `thresholds`)"
    )

    def thresholds_for(self, name: str) -> Thresholds:
        """`thresholds`, with the ones set for this database in their place."""
        own = self.thresholds_by_database.get(name)
        if own is None:
            return self.thresholds
        return Thresholds.model_validate(
            {**self.thresholds.model_dump(exclude_unset=True), **own.model_dump(exclude_unset=True)}
        )

    def for_database(
        self, name: str, bucket: str | None, rds: tuple[Literal["instance", "cluster"], str] | None = None
    ) -> HealthSettings:
        options = {field: getattr(self, field) for field in ProbeOptions.model_fields}
        options["thresholds"] = self.thresholds_for(name)
        kind, identifier = rds or ("instance", None)
        return HealthSettings(**options, bucket=bucket, database_name=name, **{f"rds_{kind}_id": identifier})


class _TaskEnvironment(BaseSettings):
    """What a state machine hands an ECS task in its environment, read raw: the task's own parser says what is
    missing or wrong, naming the variable."""

    model_config = SettingsConfigDict(extra="ignore")


class BackupTaskEnvironment(_TaskEnvironment):
    """The Fargate backup task (handlers.backup_task): which database, and which kind of backup."""

    database: str | None = Field(default=None, validation_alias=contract.ENV_BACKUP_DATABASE)
    kind: str | None = Field(default=None, validation_alias=contract.ENV_BACKUP_KIND)


class RestoreTaskEnvironment(_TaskEnvironment):
    """The Fargate restore task (handlers.restore_task): the step to run and the execution state it works on."""

    step: str | None = Field(default=None, validation_alias=contract.ENV_RESTORE_STEP)
    state: str | None = Field(default=None, validation_alias=contract.ENV_RESTORE_STATE)


class WatcherEnvironment(_TaskEnvironment):
    """The rehearsal watcher (handlers.rehearsal_watch): its orders (JSON), and the scratch database's URL that ECS
    puts there from the rehearsal secret."""

    orders: str | None = Field(default=None, validation_alias=contract.ENV_REHEARSAL_WATCH)
    url: SecretStr | None = Field(default=None, validation_alias=contract.ENV_REHEARSAL_URL)
