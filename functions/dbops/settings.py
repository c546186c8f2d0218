"""Settings read once at the edge (environment variables) into pydantic models."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from dbops.backup.placement import DEFAULT_MAX_RAW_BYTES, DEFAULT_MAX_SHARE
from dbops.backup.retention import DEFAULT_KEEP
from dbops.postgres.connection import DatabaseConfig, find_database


class FunctionSettings(BaseSettings):
    """What every dbops Lambda function is configured with (env vars prefixed DBOPS_)."""

    model_config = SettingsConfigDict(env_prefix="DBOPS_", extra="ignore")

    bucket: str = Field(min_length=3)
    databases: list[DatabaseConfig] = Field(min_length=1)
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
    # DBOPS_RETENTION_KEEP: a nightly or predeploy backup may expire only once this many newer ones verified
    retention_keep: int = Field(default=DEFAULT_KEEP, ge=1)
    # a point-in-time restore fails when its temporary instance is not available after this long
    point_in_time_wait_minutes: float = Field(default=120, gt=0)
    # a selective restore's swap (dbops.restore.swap_locks): all its locks within this (under the server's 1 s
    # deadlock_timeout, so the swap is the side that gives way), tried again until the budget is spent; refused
    # before any lock when it would hold the application's writes longer than max_pause
    restore_lock_timeout_s: float = Field(default=0.2, gt=0, lt=1)
    restore_lock_wait_budget_s: float = Field(default=60.0, ge=0, le=600)
    restore_max_pause_s: float = Field(default=5.0, gt=0, le=3600)

    def database(self, name: str | None) -> DatabaseConfig:
        return find_database(self.databases, name)
