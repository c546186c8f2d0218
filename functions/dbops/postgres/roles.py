"""Least privilege inside PostgreSQL: the dbops group roles and the guide's audit logging, as idempotent SQL.

    dbops_backup       reads everything pg_dump reads: pg_read_all_data (14+); below, USAGE on every schema,
                       SELECT on every table and sequence, and default privileges for new ones
    dbops_monitor      pg_monitor: statistics, settings and activity of every session
    dbops_maintenance  pg_maintain (17+): VACUUM, ANALYZE, REINDEX, CLUSTER, REFRESH, LOCK on every relation
    dbops_restore      CREATEDB and pg_signal_backend: creates the staged copy, ends sessions before a swap

The roles are NOLOGIN groups: grant them to the login user whose credentials the functions' secret holds
(`--grant-to`), or to an IAM-authenticated user (GRANT rds_iam). Role attributes (CREATEDB, BYPASSRLS) are not
inherited through membership; the notes printed with the SQL say what that means for each role.

Every statement is safe to run again: roles are created only when missing, GRANTs are idempotent.
The pgaudit section (the guide's audit logging) is optional and applies only where pgaudit can work.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from psycopg import sql
from pydantic import BaseModel

from dbops.errors import ConfigError, DatabaseError
from dbops.postgres.connection import ConnectionSpec, connect, describe_error, server_version_num
from dbops.postgres.tools import server_major

DEFAULT_PREFIX = "dbops"


@dataclass(frozen=True)
class RoleNames:
    """<prefix>_backup, _monitor, _maintenance, _restore: a prefix per environment sharing one cluster."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", self.prefix):
            raise ConfigError(f"role prefix {self.prefix!r}: use lower-case letters, digits and _ (at most 41)")

    @property
    def backup(self) -> str:
        return f"{self.prefix}_backup"

    @property
    def monitor(self) -> str:
        return f"{self.prefix}_monitor"

    @property
    def maintenance(self) -> str:
        return f"{self.prefix}_maintenance"

    @property
    def restore(self) -> str:
        return f"{self.prefix}_restore"

    @property
    def all(self) -> tuple[str, str, str, str]:
        return (self.backup, self.monitor, self.maintenance, self.restore)


AUDIT_SECTION = "pgaudit"


Statement = sql.SQL | sql.Composed


@dataclass(frozen=True)
class Section:
    """One part of the plan: statements, notes for the operator, and whether it applies on this server."""

    name: str
    title: str
    statements: list[Statement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    transactional: bool = True


@dataclass(frozen=True)
class AuditSupport:
    """Whether pgaudit can work here: the extension is installed and loaded at server start."""

    available: bool
    preloaded: bool
    installed: bool


class SectionResult(BaseModel):
    name: str
    status: Literal["applied", "skipped", "failed"]
    detail: str = ""


def _create_group(role: str, attributes: str = "") -> sql.Composed:
    """CREATE ROLE ... NOLOGIN when missing; an existing role keeps its own settings but gets the attributes."""
    ensure: Statement = sql.SQL("")
    if attributes:
        ensure = sql.SQL("  ELSE\n    ALTER ROLE {role} {attributes};\n").format(
            role=sql.Identifier(role), attributes=sql.SQL(attributes)
        )
    return sql.SQL(
        "DO $dbops$ BEGIN\n"
        "  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {name}) THEN\n"
        "    CREATE ROLE {role} NOLOGIN{attributes};\n"
        "{ensure}"
        "  END IF;\n"
        "END $dbops$"
    ).format(
        name=sql.Literal(role),
        role=sql.Identifier(role),
        attributes=sql.SQL(f" {attributes}" if attributes else ""),
        ensure=ensure,
    )


def _grant_role(granted: str, to: str) -> sql.Composed:
    return sql.SQL("GRANT {} TO {}").format(sql.Identifier(granted), sql.Identifier(to))


def _connect_on(database: str, role: str) -> sql.Composed:
    return sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), sql.Identifier(role))


def _read_grants_before_14(role: str) -> sql.Composed:
    """USAGE + SELECT on every user schema's tables and sequences, and the same for objects made later."""
    return sql.SQL(
        "DO $dbops$\n"
        "DECLARE s record;\n"
        "BEGIN\n"
        "  FOR s IN SELECT n.nspname, pg_catalog.pg_get_userbyid(n.nspowner) AS owner FROM pg_catalog.pg_namespace n\n"
        "           WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' LOOP\n"
        "    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', s.nspname, {role});\n"
        "    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO %I', s.nspname, {role});\n"
        "    EXECUTE format('GRANT SELECT ON ALL SEQUENCES IN SCHEMA %I TO %I', s.nspname, {role});\n"
        "    BEGIN\n"
        "      EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT SELECT ON TABLES TO %I',\n"
        "                     s.owner, s.nspname, {role});\n"
        "      EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT SELECT ON SEQUENCES TO %I',\n"
        "                     s.owner, s.nspname, {role});\n"
        "    EXCEPTION WHEN insufficient_privilege THEN\n"
        "      RAISE NOTICE 'dbops: no default privileges for tables % creates in schema %: run as % or a member',\n"
        "                   s.owner, s.nspname, s.owner;\n"
        "    END;\n"
        "  END LOOP;\n"
        "END $dbops$"
    ).format(role=sql.Literal(role))


def role_sections(
    server_version_num: int, database: str, grant_to: Sequence[str] = (), names: RoleNames = RoleNames()
) -> list[Section]:
    """The four group roles for this server version, each its own section."""
    major = server_major(server_version_num)
    backup = Section(
        name=names.backup,
        title=f"{names.backup}: reads everything pg_dump reads, writes nothing",
        statements=[_create_group(names.backup), _connect_on(database, names.backup)],
    )
    if major >= 14:
        backup.statements.append(_grant_role("pg_read_all_data", names.backup))
    else:
        backup.statements.append(_read_grants_before_14(names.backup))
        backup.notes.append(
            "PostgreSQL < 14 has no pg_read_all_data: SELECT is granted per schema, and default privileges cover "
            "tables the schema owners create later; run this again after adding a schema."
        )
    backup.notes.extend(
        [
            "pg_dump reads rows subject to row-level security only with BYPASSRLS, an attribute that is not "
            "inherited: on tables with RLS policies, ALTER ROLE <login user> BYPASSRLS (or dump as the table owner).",
            "Large objects need SELECT on each one (or lo_compat_privileges); the Sprint Reports schema has none.",
        ]
    )
    if major < 15:
        backup.notes.append(
            "Before PostgreSQL 15 every role may CREATE in schema public: REVOKE CREATE ON SCHEMA public FROM "
            "PUBLIC (the 15+ default) if the application does not rely on it."
        )

    monitor = Section(
        name=names.monitor,
        title=f"{names.monitor}: statistics, settings and activity (health probes)",
        statements=[
            _create_group(names.monitor),
            _connect_on(database, names.monitor),
            _grant_role("pg_monitor", names.monitor),
        ],
    )

    maintenance = Section(
        name=names.maintenance,
        title=f"{names.maintenance}: VACUUM, ANALYZE, REINDEX without owning the tables",
        statements=[_create_group(names.maintenance), _connect_on(database, names.maintenance)],
    )
    if major >= 17:
        maintenance.statements.append(_grant_role("pg_maintain", names.maintenance))
    else:
        maintenance.notes.append(
            "PostgreSQL < 17 has no pg_maintain: VACUUM, ANALYZE and REINDEX need the table's owner (the database "
            "owner may VACUUM and ANALYZE every table, not REINDEX). Either GRANT <the tables' owner role> TO "
            f"{names.maintenance}, or run maintenance with the owner's credentials."
        )
    maintenance.notes.append(
        "Retention cleanup and archive change rows: GRANT SELECT, DELETE on the rule tables (and INSERT on the "
        f"archive tables, CREATE on their schema) to {names.maintenance} for the rules you configure."
    )

    restore = Section(
        name=names.restore,
        title=f"{names.restore}: creates the staged copy, ends sessions, swaps",
        statements=[
            _create_group(names.restore, "CREATEDB"),
            _connect_on(database, names.restore),
            _grant_role("pg_signal_backend", names.restore),
        ],
        notes=[
            f"CREATEDB is an attribute, not inherited: the login user runs SET ROLE {names.restore}, or gets CREATEDB "
            "itself (ALTER ROLE <login user> CREATEDB).",
            "Renaming or dropping the target database and replacing tables' rows need its owner's rights: GRANT "
            f"<the database owner role> TO {names.restore}. pg_signal_backend cannot end superusers' sessions.",
        ],
    )
    sections = [backup, monitor, maintenance, restore]
    if grant_to:
        sections.append(
            Section(
                name="grants",
                title="membership for the login user(s) the functions' secrets hold",
                statements=[_grant_role(role, user) for user in grant_to for role in names.all],
            )
        )
    return sections


def audit_section(support: AuditSupport) -> Section:
    """The guide's pgaudit set-up, or the reason it cannot apply here."""
    statements: list[Statement] = [
        sql.SQL("CREATE EXTENSION IF NOT EXISTS pgaudit"),
        sql.SQL("ALTER SYSTEM SET pgaudit.log = {}").format(sql.Literal("ddl,write")),
        sql.SQL("ALTER SYSTEM SET pgaudit.log_catalog = off"),
        sql.SQL("SELECT pg_catalog.pg_reload_conf()"),
    ]
    skipped = None
    if not support.available:
        skipped = (
            "pgaudit is not available on this server (not in pg_available_extensions): audit logging skipped. "
            "Install the pgaudit package for this PostgreSQL version, add pgaudit to shared_preload_libraries "
            "(RDS: the DB parameter group), restart, and run this again."
        )
    elif not support.preloaded:
        skipped = (
            "pgaudit is installed but not in shared_preload_libraries, where it must be to audit anything: "
            "audit logging skipped. Add it (RDS: the DB parameter group), restart, and run this again."
        )
    return Section(
        name=AUDIT_SECTION,
        title="pgaudit (optional): log DDL and writes, not catalog reads (the guide's audit logging)",
        statements=statements,
        notes=[
            "ALTER SYSTEM needs a superuser; on RDS set pgaudit.log and pgaudit.log_catalog in the parameter group.",
        ],
        skipped=skipped,
        transactional=False,
    )


def audit_support(conn: psycopg.Connection[Any]) -> AuditSupport:
    row = conn.execute(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_available_extensions WHERE name = 'pgaudit'),"
        " 'pgaudit' = ANY (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ',')),"
        " EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pgaudit')"
    ).fetchone()
    assert row is not None
    return AuditSupport(available=bool(row[0]), preloaded=bool(row[1]), installed=bool(row[2]))


@dataclass(frozen=True)
class RolesPlan:
    database: str
    server_version: str
    server_version_num: int
    sections: list[Section]

    def script(self, conn: psycopg.Connection[Any] | None = None) -> str:
        """The plan as a psql script: applies sections end with ';', skipped ones are comments only."""
        lines = [
            f"-- dbops roles for database {self.database} on PostgreSQL {self.server_version}",
            "-- Group roles (NOLOGIN): GRANT them to the login user the functions' secret holds, or to an",
            "-- IAM-authenticated user. Safe to run again.",
        ]
        for section in self.sections:
            lines += ["", f"-- == {section.title} =="]
            lines += [f"-- note: {note}" for note in section.notes]
            statements = [f"{statement.as_string(conn)};" for statement in section.statements]
            if section.skipped:
                lines.append(f"-- skipped: {section.skipped}")
                statements = [f"-- {line}" for text in statements for line in text.splitlines()]
            lines += statements
        return "\n".join(lines) + "\n"


def plan_roles(
    spec: ConnectionSpec, *, grant_to: Sequence[str] = (), audit: bool = True, names: RoleNames = RoleNames()
) -> RolesPlan:
    """Read the server version (and pgaudit's state) and make the plan; changes nothing."""
    with connect(spec, statement_timeout_ms=30_000) as conn:
        version_num = server_version_num(conn)
        version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        _check_users(conn, grant_to)
        sections = role_sections(version_num, spec.dbname, grant_to, names)
        if audit:
            sections.append(audit_section(audit_support(conn)))
    return RolesPlan(database=spec.dbname, server_version=version, server_version_num=version_num, sections=sections)


def _check_users(conn: psycopg.Connection[Any], users: Sequence[str]) -> None:
    missing = [
        u for u in users if conn.execute("SELECT FROM pg_catalog.pg_roles WHERE rolname = %s", [u]).fetchone() is None
    ]
    if missing:
        raise DatabaseError(f"--grant-to names roles that do not exist: {', '.join(missing)}; nothing was changed")


def apply_roles(spec: ConnectionSpec, plan: RolesPlan) -> list[SectionResult]:
    """Role sections in one transaction (all or nothing); then the optional audit section on its own."""
    results: list[SectionResult] = []
    with connect(spec, autocommit=False, statement_timeout_ms=60_000) as conn:
        conn.execute("SET lock_timeout = '10s'")
        current = ""
        try:
            for section in plan.sections:
                if not section.transactional:
                    continue
                current = section.name
                for statement in section.statements:
                    conn.execute(statement)
                results.append(SectionResult(name=section.name, status="applied"))
            conn.commit()
        except psycopg.Error as exc:
            conn.rollback()
            raise DatabaseError(
                f"applying {current} on {spec.describe()} failed: {describe_error(exc)}; nothing was changed"
            ) from None
    for section in plan.sections:
        if section.transactional:
            continue
        if section.skipped:
            results.append(SectionResult(name=section.name, status="skipped", detail=section.skipped))
            continue
        results.append(_apply_alone(spec, section))
    return results


def _apply_alone(spec: ConnectionSpec, section: Section) -> SectionResult:
    """ALTER SYSTEM cannot run in a transaction block: autocommit, stop at the first failure, report it."""
    with connect(spec, autocommit=True, statement_timeout_ms=60_000) as conn:
        for statement in section.statements:
            try:
                conn.execute(statement)
            except psycopg.Error as exc:
                return SectionResult(name=section.name, status="failed", detail=describe_error(exc))
    return SectionResult(name=section.name, status="applied")
