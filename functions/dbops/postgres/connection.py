"""Database targets: where a database is and how to log in, without ever exposing the password.

A target comes from an operator's URL (local use) or an RDS-style Secrets Manager secret (Lambda).
psycopg gets keyword arguments; libpq tools (pg_dump, pg_restore) get environment variables, so the
password never appears on a command line or in a process listing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from dbops.aws import secrets
from dbops.config.databases import DatabaseConfig, SslMode
from dbops.errors import ConfigError, DatabaseError, validation_problems


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
        doc = secrets.read_json(secret_id)
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
            raise ConfigError(
                f"invalid connection settings from {source}: {validation_problems(exc, plain=True)}"
            ) from None

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


def database_spec(db: DatabaseConfig) -> ConnectionSpec:
    """How to open a session on a configured database: from its URL, or from its Secrets Manager secret."""
    overrides = {"sslmode": db.sslmode, "sslrootcert": db.sslrootcert}
    if db.url is not None:
        return ConnectionSpec.from_url(db.url.get_secret_value(), **overrides)
    assert db.secret_id is not None
    return ConnectionSpec.from_secret(db.secret_id, **overrides)


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
        raise DatabaseError(f"cannot connect to {spec.describe()}: {describe_error(exc)}", could_not_run=True) from None
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
