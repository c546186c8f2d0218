"""Database targets: where a database is and how to log in, without ever exposing the password.

A target comes from an operator's URL (local use) or an RDS-style Secrets Manager secret (Lambda).
psycopg gets keyword arguments; libpq tools (pg_dump, pg_restore) get environment variables, so the
password never appears on a command line or in a process listing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from dbops import aws
from dbops.errors import ConfigError, DatabaseError, validation_problems

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class ConnectionSpec(BaseModel):
    """Everything needed to open a session on one database."""

    model_config = ConfigDict(frozen=True)

    host: str = "localhost"
    port: int = 5432
    user: str = "postgres"
    password: SecretStr | None = None
    dbname: str = "postgres"
    sslmode: SslMode = "prefer"
    sslrootcert: str | None = None
    connect_timeout: int = 10

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> ConnectionSpec:
        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError:
            raise ConfigError("the database URL is not a valid PostgreSQL connection string") from None
        known = {k: v for k, v in params.items() if k in cls.model_fields and v is not None}
        return cls._validated(
            {**known, **{k: v for k, v in overrides.items() if v is not None}}, "the database URL and TLS flags"
        )

    @classmethod
    def from_secret(cls, secret_id: str, **overrides: Any) -> ConnectionSpec:
        """Read an RDS-style secret: {"username", "password", "host", "port", "dbname"}."""
        try:
            raw = aws.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
            doc = json.loads(raw)
        except Exception as exc:
            raise ConfigError(f"could not read database secret {secret_id}: {type(exc).__name__}") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"database secret {secret_id} is not a JSON object with username, password, host")
        fields = {
            "host": doc.get("host"),
            "port": doc.get("port"),
            "user": doc.get("username"),
            "password": doc.get("password"),
            "dbname": doc.get("dbname"),
        }
        fields = {k: v for k, v in fields.items() if v is not None}
        overrides = {k: v for k, v in overrides.items() if v is not None}
        return cls._validated({**fields, **overrides}, f"database secret {secret_id}")

    @classmethod
    def _validated(cls, fields: dict[str, Any], source: str) -> ConnectionSpec:
        """A ConfigError naming each wrong setting (a port that is not a number, an unknown sslmode), never its
        value: a URL or secret holds the password."""
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise ConfigError(f"invalid connection settings from {source}: {validation_problems(exc)}") from None

    def for_database(self, dbname: str) -> ConnectionSpec:
        return self.model_copy(update={"dbname": dbname})

    def describe(self) -> str:
        """Safe to log: no password."""
        return f"{self.dbname} on {self.host}:{self.port} as {self.user}"

    def connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.dbname,
            "sslmode": self.sslmode,
            "connect_timeout": self.connect_timeout,
            "application_name": "dbops",
        }
        if self.password is not None:
            kwargs["password"] = self.password.get_secret_value()
        if self.sslrootcert:
            kwargs["sslrootcert"] = self.sslrootcert
        return kwargs

    def libpq_env(self) -> dict[str, str]:
        """Environment for libpq client tools; the password travels here, not in argv."""
        env = {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGDATABASE": self.dbname,
            "PGSSLMODE": self.sslmode,
            "PGCONNECT_TIMEOUT": str(self.connect_timeout),
            "PGAPPNAME": "dbops",
        }
        if self.password is not None:
            env["PGPASSWORD"] = self.password.get_secret_value()
        if self.sslrootcert:
            env["PGSSLROOTCERT"] = self.sslrootcert
        return env


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


class RehearsalConfig(BaseModel):
    """How the restore state machine's `mode: rehearse` rehearses this database's migrations (cdk.json
    databases[].rehearsal; dbops.rehearsal.deployed): the migration image itself is in its task definition."""

    model_config = ConfigDict(extra="forbid")

    secret_id: str = Field(min_length=1, description="the secret the migration task reads its URL from")
    command: list[str] = Field(default=["alembic", "upgrade", "head"], min_length=1)
    downgrade: list[str] | None = Field(default=None, description="default: alembic downgrade <revision before>")
    skip_downgrade: bool = False
    url_env: str = Field(default="DATABASE_URL", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    version_table: str | None = "alembic_version"
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

    def spec(self) -> ConnectionSpec:
        overrides = {"sslmode": self.sslmode, "sslrootcert": self.sslrootcert}
        if self.url is not None:
            return ConnectionSpec.from_url(self.url.get_secret_value(), **overrides)
        assert self.secret_id is not None
        return ConnectionSpec.from_secret(self.secret_id, **overrides)


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


def describe_error(exc: BaseException) -> str:
    """psycopg's message, first line only: it never carries the password."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@contextmanager
def connect(
    spec: ConnectionSpec, *, autocommit: bool = True, statement_timeout_ms: int = 60_000
) -> Iterator[psycopg.Connection[Any]]:
    """A session with a statement timeout, so no query of ours can hang forever."""
    try:
        conn = psycopg.connect(
            **spec.connect_kwargs(),
            autocommit=autocommit,
            options=f"-c statement_timeout={int(statement_timeout_ms)}",
        )
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot connect to {spec.describe()}: {describe_error(exc)}") from None
    try:
        yield conn
    except psycopg.OperationalError as exc:
        if conn.broken:  # the server went away: a DatabaseError, which callers may retry
            raise DatabaseError(f"lost the connection to {spec.describe()}: {describe_error(exc)}") from None
        raise
    finally:
        conn.close()


def server_version_num(conn: psycopg.Connection[Any]) -> int:
    return int(conn.info.server_version)
