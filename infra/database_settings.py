"""cdk.json `databases[]`: one database dbops looks after, its VPC placement, backup schedule and own settings."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from dbops.config.databases import RDS_INSTANCE_ID, AppHook, DatabaseConfig, SslMode
from dbops.config.maintenance import MaintenanceConfig
from dbops.config.thresholds import Thresholds
from infra.alarm_settings import DatabaseAlarms
from infra.constants import CERTS_DIR_IN_LAMBDA
from infra.rehearsal_settings import DatabaseRehearsal
from infra.schedule_settings import check_schedule
from infra.settings_model import SettingsModel


def _resource_ids(values: list[str], prefix: str, what: str) -> list[str]:
    """EC2 ids such as subnet-0123abcd or sg-0123abcd0123abcd0 (8 or 17 hex digits)."""
    for item in values:
        if not re.fullmatch(rf"{prefix}-[0-9a-f]{{8}}([0-9a-f]{{9}})?", item):
            raise ValueError(f"{item!r} is not {what} ({prefix}-0123abcd...)")
    return values


class VpcPlacement(SettingsModel):
    """Where the database is reachable: the functions run in these subnets with these security groups."""

    vpc_id: str = Field(pattern=r"^vpc-[0-9a-f]{8}([0-9a-f]{9})?$")
    subnet_ids: list[str] = Field(min_length=1)
    security_group_ids: list[str] = Field(min_length=1)

    @field_validator("subnet_ids")
    @classmethod
    def _subnets(cls, value: list[str]) -> list[str]:
        return _resource_ids(value, "subnet", "a subnet id")

    @field_validator("security_group_ids")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        return _resource_ids(value, "sg", "a security group id")


SECRET_ARN = r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$"
BackupRunner = Literal["auto", "lambda", "fargate"]
BackupFormat = Literal["single", "parallel", "auto"]


class DatabaseBackup(SettingsModel):
    """When a database's scheduled backup runs, and where (dbops.config.databases.DatabaseConfig.backup_runner)."""

    schedule: str | None = Field(
        default=None,
        description="an EventBridge expression for this database's own nightly backup, or 'off'; absent: the "
        "stack's schedules.backup",
    )
    runner: BackupRunner = Field(
        default="auto", description="lambda, fargate, or auto (decided from its last committed backup)"
    )
    format: BackupFormat = Field(
        default="single",
        description="single (one pg_dump archive), parallel (tables in page ranges, COPYed N at a time), or auto "
        "(parallel once its last backup wrote 1 GiB)",
    )
    max_streams: int | None = Field(
        default=None, ge=1, le=32, description="a parallel backup's COPY streams at most; absent: 4"
    )

    @field_validator("schedule")
    @classmethod
    def _expression(cls, value: str | None) -> str | None:
        return value if value is None or value == "off" else check_schedule(value)


class DatabaseSettings(SettingsModel):
    """One database dbops looks after. Host, port, user and password come from the secret (RDS format)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")
    secret_arn: str = Field(
        pattern=SECRET_ARN,
        description="the complete ARN, with the 6-character suffix Secrets Manager adds",
    )
    secret_kms_key_arn: str | None = Field(
        default=None,
        pattern=r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[0-9a-f-]{36}$",
        description="only when the secret is encrypted with a customer-managed key",
    )
    sslmode: SslMode = "verify-full"
    ca_bundle: str | None = Field(
        default=None,
        description="a PEM file in certs_dir (shipped to /opt/certs), or 'system' for the runtime's CA store",
    )
    vpc: VpcPlacement | None = None
    app_hook: AppHook | None = Field(
        default=None, description="stop/start the application around a restore: an SSM parameter or an event"
    )
    restore_checks: list[str] = Field(default_factory=list, description="SQL checks a staged restore must pass")
    maintenance: MaintenanceConfig | None = Field(
        default=None,
        description="its retention rules, timeouts and thresholds (dbops.maintenance.MaintenanceConfig); without "
        "rules, cleanup and archive have nothing to do on it",
    )
    health_thresholds: Thresholds | None = Field(
        default=None, description="its health thresholds (dbops.health.thresholds.Thresholds), over the defaults"
    )
    alarms: DatabaseAlarms | None = Field(default=None, description="its alarm thresholds, over alarms.thresholds")
    backup: DatabaseBackup = DatabaseBackup()
    rds_instance_id: str | None = Field(
        default=None,
        pattern=RDS_INSTANCE_ID,
        description="the RDS instance it runs on: restores as of a moment (point-in-time) and their readiness",
    )
    rds_cluster_id: str | None = Field(
        default=None, pattern=RDS_INSTANCE_ID, description="the Aurora cluster it runs on, instead of an instance"
    )
    rehearsal: DatabaseRehearsal | None = Field(
        default=None, description="migration rehearsals in the restore state machine (mode rehearse)"
    )

    @field_validator("maintenance", mode="before")
    @classmethod
    def _own_rules_only(cls, value: Any) -> Any:
        """A database runs the rules it names, never the guide's defaults (those name Sprint Reports' tables)."""
        if isinstance(value, Mapping) and "rules" not in value:
            return {**value, "rules": []}
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _bundle_name(cls, value: str | None) -> str | None:
        if value is not None and value != "system" and not re.fullmatch(r"[A-Za-z0-9_.-]+\.(pem|crt)", value):
            raise ValueError(f"{value!r}: give a .pem or .crt file name inside certs_dir, or 'system'")
        return value

    @model_validator(mode="after")
    def _one_rds_source(self) -> DatabaseSettings:
        if self.rds_instance_id and self.rds_cluster_id:
            raise ValueError("give rds_instance_id or rds_cluster_id (Aurora), not both")
        return self

    @property
    def on_rds(self) -> bool:
        return bool(self.rds_instance_id or self.rds_cluster_id)

    @model_validator(mode="after")
    def _verify_needs_ca(self) -> DatabaseSettings:
        if self.sslmode in ("verify-ca", "verify-full") and self.ca_bundle is None:
            raise ValueError(f"sslmode {self.sslmode} needs ca_bundle (for RDS: the region's CA bundle from AWS)")
        return self

    @property
    def sslrootcert(self) -> str | None:
        if self.ca_bundle is None or self.ca_bundle == "system":
            return self.ca_bundle
        return f"{CERTS_DIR_IN_LAMBDA}/{self.ca_bundle}"

    def function_config(self) -> dict[str, Any]:
        """This database as the functions read it (dbops.config.databases.DatabaseConfig in DBOPS_DATABASES): what
        differs from DatabaseConfig's defaults; the stack adds its rehearsal."""
        same = {"name", "sslmode", "app_hook", "restore_checks", "rds_instance_id", "rds_cluster_id"}
        config = DatabaseConfig(
            **self.model_dump(include=same),
            secret_id=self.secret_arn,
            sslrootcert=self.sslrootcert,
            backup_runner=self.backup.runner,
            backup_format=self.backup.format,
            backup_max_streams=self.backup.max_streams,
        )
        return config.model_dump(exclude_defaults=True)

    def maintenance_config(self) -> dict[str, Any]:
        """Its dbops.maintenance.MaintenanceConfig as the maintenance function reads it: what cdk.json sets, and
        no rules when it sets none."""
        if self.maintenance is None:
            return {"rules": []}
        return self.maintenance.model_dump(mode="json", by_alias=True, exclude_unset=True)
