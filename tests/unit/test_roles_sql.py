"""The roles SQL follows the server version: pg_read_all_data from 14, pg_maintain from 17, grants below."""

from __future__ import annotations

import pytest

from dbops.errors import ConfigError
from dbops.postgres.roles import AuditSupport, RoleNames, audit_section, role_sections


def _sql(server_version_num: int, **kwargs: object) -> str:
    sections = role_sections(server_version_num, "sprint_reports_v2", **kwargs)  # type: ignore[arg-type]
    return "\n".join(s.as_string() for section in sections for s in section.statements)


def _notes(server_version_num: int) -> str:
    return "\n".join(n for s in role_sections(server_version_num, "db") for n in s.notes)


def test_postgresql_18_uses_the_predefined_roles() -> None:
    text = _sql(180000)
    assert 'GRANT "pg_read_all_data" TO "dbops_backup"' in text
    assert 'GRANT "pg_monitor" TO "dbops_monitor"' in text
    assert 'GRANT "pg_maintain" TO "dbops_maintenance"' in text
    assert 'GRANT "pg_signal_backend" TO "dbops_restore"' in text
    assert 'CREATE ROLE "dbops_restore" NOLOGIN CREATEDB' in text
    assert 'GRANT CONNECT ON DATABASE "sprint_reports_v2" TO "dbops_backup"' in text
    assert "ALTER DEFAULT PRIVILEGES" not in text


def test_before_17_maintenance_gets_a_note_instead_of_pg_maintain() -> None:
    assert "pg_maintain" not in _sql(160004)
    assert "PostgreSQL < 17 has no pg_maintain" in _notes(160004)


def test_before_14_backup_gets_schema_grants_and_default_privileges() -> None:
    text = _sql(130012)
    assert "pg_read_all_data" not in text
    for grant in (
        "GRANT USAGE ON SCHEMA %I TO %I",
        "GRANT SELECT ON ALL TABLES IN SCHEMA %I TO %I",
        "GRANT SELECT ON ALL SEQUENCES IN SCHEMA %I TO %I",
        "ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT SELECT ON TABLES TO %I",
    ):
        assert grant in text
    assert "REVOKE CREATE ON SCHEMA public FROM PUBLIC" in _notes(130012)


def test_grant_to_and_prefix_are_quoted_identifiers() -> None:
    text = _sql(180000, grant_to=['app "login"'], names=RoleNames("staging"))
    assert 'GRANT "staging_backup" TO "app ""login"""' in text
    assert "dbops_" not in text


@pytest.mark.parametrize("prefix", ["", "Dbops", "dbops; drop", "x" * 42])
def test_a_bad_role_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ConfigError, match="role prefix"):
        RoleNames(prefix)


def test_pgaudit_section_applies_only_when_available_and_preloaded() -> None:
    assert audit_section(AuditSupport(available=True, preloaded=True, installed=False)).skipped is None
    not_loaded = audit_section(AuditSupport(available=True, preloaded=False, installed=False)).skipped
    assert not_loaded is not None and "shared_preload_libraries" in not_loaded
    missing = audit_section(AuditSupport(available=False, preloaded=False, installed=False)).skipped
    assert missing is not None and "not available" in missing
    statements = [s.as_string() for s in audit_section(AuditSupport(True, True, False)).statements]
    assert statements == [
        "CREATE EXTENSION IF NOT EXISTS pgaudit",
        "ALTER SYSTEM SET pgaudit.log = 'ddl,write'",
        "ALTER SYSTEM SET pgaudit.log_catalog = off",
        "SELECT pg_catalog.pg_reload_conf()",
    ]
