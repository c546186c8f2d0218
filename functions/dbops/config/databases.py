"""The databases dbops looks after, as configured (cdk.json, DBOPS_DATABASES, CLI flags): where each is, how to
reach it, and its restore, rehearsal and point-in-time settings. Pure pydantic: infra reads it too."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from dbops.errors import ConfigError

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class AppHook(BaseModel):
    """How to stop and start the application around a restore (the guide's docker-compose down / up).

    `ssm`: write `stop_value` / `start_value` to an SSM parameter the application reads as maintenance mode.
    `eventbridge`: put an event (detail-type "ApplicationStop" / "ApplicationStart") on a bus.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["ssm", "eventbridge"]
    parameter: str | None = None
    stop_value: str = "on"
    start_value: str = "off"
    event_bus: str = "default"
    source: str = "dbops"

    @model_validator(mode="after")
    def _complete(self) -> AppHook:
        if self.type == "ssm" and not self.parameter:
            raise ValueError("an ssm application hook needs 'parameter'")
        return self


class RehearsalMigration(BaseModel):
    """The migration a rehearsal runs and checks, as cdk.json's databases[].rehearsal (infra) and RehearsalConfig
    both give it."""

    model_config = ConfigDict(extra="forbid")

    command: list[str] = Field(default=["alembic", "upgrade", "head"], min_length=1)
    downgrade: list[str] | None = Field(default=None, description="default: alembic downgrade <revision before>")
    skip_downgrade: bool = False
    url_env: str = Field(default="DATABASE_URL", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    version_table: str | None = "alembic_version"


class RehearsalConfig(RehearsalMigration):
    """How the restore state machine's `mode: rehearse` rehearses this database's migrations (cdk.json
    databases[].rehearsal; dbops.rehearsal.deployed): the migration image itself is in its task definition."""

    secret_id: str = Field(min_length=1, description="the secret the migration task reads its URL from")
    max_lock_s: float = Field(default=5.0, gt=0)
    max_duration_s: float = Field(default=600.0, gt=0)
    interval_s: float = Field(default=0.02, ge=0.001, le=5)


# a database's name in the catalog: one S3 key segment
CATALOG_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$"
RDS_INSTANCE_ID = r"^[A-Za-z][A-Za-z0-9-]{0,62}$"


class DatabaseConfig(BaseModel):
    """One managed database as configured by the operator (CDK context, env var or CLI flag)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=CATALOG_NAME)
    url: SecretStr | None = None
    secret_id: str | None = None
    sslmode: SslMode | None = None
    sslrootcert: str | None = None
    app_hook: AppHook | None = None
    restore_checks: list[str] = Field(
        default_factory=list,
        description="operator SQL queries run on a staged restore; each must return one row whose first value is true",
    )
    backup_runner: Literal["auto", "lambda", "fargate"] = Field(
        default="auto",
        description="where its backups run (dbops.backup.placement): auto decides from its last committed backup",
    )
    backup_format: Literal["single", "parallel", "auto"] = Field(
        default="single",
        description="single: one pg_dump archive; parallel: tables in ranges, COPYed N at a time into objects of "
        "their own (dbops.backup.parallel); auto: parallel once the database is large (dbops.backup.formats)",
    )
    backup_max_streams: int | None = Field(
        default=None,
        ge=1,
        le=32,
        description="a parallel backup's COPY streams at most (never more than the machine's CPUs); None: the "
        "functions' DBOPS_MAX_STREAMS (default 4)",
    )
    rds_instance_id: str | None = Field(
        default=None,
        pattern=RDS_INSTANCE_ID,
        description="the RDS instance it runs on: point-in-time restores (dbops.aws.rds) and its "
        "point-in-time readiness",
    )
    rds_cluster_id: str | None = Field(
        default=None, pattern=RDS_INSTANCE_ID, description="the Aurora cluster it runs on (instead of an instance)"
    )
    rehearsal: RehearsalConfig | None = Field(default=None, description="migration rehearsals in the state machine")

    @model_validator(mode="after")
    def _one_source(self) -> DatabaseConfig:
        if (self.url is None) == (self.secret_id is None):
            raise ValueError("give exactly one of 'url' or 'secret_id' for each database")
        if self.rds_instance_id and self.rds_cluster_id:
            raise ValueError("give rds_instance_id or rds_cluster_id (Aurora), not both")
        return self

    def rds_source(self) -> tuple[Literal["instance", "cluster"], str] | None:
        """The RDS instance or Aurora cluster it runs on, if configured."""
        if self.rds_cluster_id:
            return "cluster", self.rds_cluster_id
        if self.rds_instance_id:
            return "instance", self.rds_instance_id
        return None


def find_database(databases: list[DatabaseConfig], name: str | None) -> DatabaseConfig:
    """The configured database of that name; with no name, the only one."""
    if name is None:
        if len(databases) == 1:
            return databases[0]
        raise ConfigError("several databases are configured: name one with 'database'")
    for db in databases:
        if db.name == name:
            return db
    known = ", ".join(db.name for db in databases)
    raise ConfigError(f"unknown database {name!r}; configured: {known}")
