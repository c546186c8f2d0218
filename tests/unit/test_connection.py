"""Connection targets never expose the password outside libpq's environment."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dbops.config.databases import DatabaseConfig
from dbops.errors import ConfigError
from dbops.postgres.connection import ConnectionSpec

URL = "postgresql://backup:s3cr3t-pw@db.example.internal:6432/sprint_reports_v2?sslmode=verify-full"


def test_url_is_parsed_into_fields() -> None:
    spec = ConnectionSpec.from_url(URL)
    assert (spec.host, spec.port, spec.user, spec.dbname, spec.sslmode) == (
        "db.example.internal",
        6432,
        "backup",
        "sprint_reports_v2",
        "verify-full",
    )


def test_password_travels_only_in_the_libpq_environment() -> None:
    spec = ConnectionSpec.from_url(URL)
    assert spec.libpq_env()["PGPASSWORD"] == "s3cr3t-pw"
    assert "s3cr3t-pw" not in spec.describe()
    assert "s3cr3t-pw" not in repr(spec)
    assert "s3cr3t-pw" not in spec.model_dump_json()


def test_overrides_apply_tls_settings() -> None:
    spec = ConnectionSpec.from_url(URL, sslmode="require", sslrootcert="/opt/ca.pem")
    assert spec.libpq_env()["PGSSLMODE"] == "require"
    assert spec.libpq_env()["PGSSLROOTCERT"] == "/opt/ca.pem"


def test_invalid_url_is_a_clear_error_without_the_url() -> None:
    with pytest.raises(ConfigError, match="not a valid PostgreSQL connection string") as info:
        ConnectionSpec.from_url("postgresql://u:pw@host:notaport:/x y=")
    assert "pw" not in str(info.value)


def test_database_config_needs_exactly_one_credential_source() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        DatabaseConfig(name="db")
    with pytest.raises(ValidationError, match="exactly one"):
        DatabaseConfig.model_validate({"name": "db", "url": URL, "secret_id": "arn:x"})
    assert "s3cr3t" not in repr(DatabaseConfig.model_validate({"name": "db", "url": URL}))
