"""dbops roles on a real server (both versions): the backup role dumps everything and writes nothing,
the SQL runs twice without harm, and the optional pgaudit section is skipped where pgaudit is missing."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql
from pydantic import SecretStr

from dbops.backup.run import BackupRequest, run_backup
from dbops.cli import main
from dbops.errors import DatabaseError
from dbops.postgres.connection import ConnectionSpec, connect
from dbops.postgres.roles import RoleNames, RolesPlan, apply_roles, plan_roles, role_sections
from local_stack.postgres import LocalPostgres
from tests.support import table_checksums


@pytest.fixture
def names(pg: LocalPostgres) -> Iterator[RoleNames]:
    """Group roles of this test only (roles are cluster-wide; the server is shared by the session)."""
    role_names = RoleNames(f"t{uuid.uuid4().hex[:8]}")
    yield role_names
    if (pg.data_dir / "postmaster.pid").exists():
        _drop_roles(ConnectionSpec.from_url(pg.url()), list(role_names.all))


@pytest.fixture
def login(pg: LocalPostgres) -> Iterator[Callable[..., ConnectionSpec]]:
    """Make a login user (password auth) that is a member of the given group roles."""
    admin = ConnectionSpec.from_url(pg.url())
    made: list[str] = []

    def make(database: ConnectionSpec, *groups: str) -> ConnectionSpec:
        user, password = f"login_{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(12)
        with connect(admin) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(user), sql.Literal(password))
            )
            for group in groups:
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(user)))
        made.append(user)
        return database.model_copy(update={"user": user, "password": SecretStr(password)})

    yield make
    if (pg.data_dir / "postmaster.pid").exists():
        _drop_roles(admin, made)


def _drop_roles(admin: ConnectionSpec, roles: list[str]) -> None:
    with connect(admin) as conn:
        databases = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datallowconn").fetchall()]
    for database in databases:  # privileges and default privileges live per database
        with connect(admin.for_database(database)) as conn:
            for role in roles:
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    with connect(admin) as conn:
        for role in roles:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _plan_for_version(spec: ConnectionSpec, names: RoleNames, server_version_num: int | None) -> RolesPlan:
    plan = plan_roles(spec, names=names)
    if server_version_num is None:
        return plan
    # the same server, given the SQL written for an older version (its grants are valid on newer servers too)
    sections = role_sections(server_version_num, spec.dbname, names=names)
    return RolesPlan(spec.dbname, plan.server_version, plan.server_version_num, [*sections, plan.sections[-1]])


def _denied(spec: ConnectionSpec, statement: str) -> str:
    with connect(spec) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
        conn.execute(statement)
    return str(caught.value)


@pytest.mark.parametrize("plan_version", [None, 130000], ids=["server-version", "pre-14-grants"])
def test_backup_role_dumps_the_sample_and_cannot_write(
    sample_db: ConnectionSpec,
    names: RoleNames,
    login: Callable[..., ConnectionSpec],
    bucket: str,
    plan_version: int | None,
) -> None:
    apply_roles(sample_db, _plan_for_version(sample_db, names, plan_version))
    backup_user = login(sample_db, names.backup)
    before = table_checksums(sample_db)

    manifest = run_backup(backup_user, BackupRequest(database="sprint_reports_v2", bucket=bucket))

    assert {f"{t.schema_name}.{t.name}": t.rows for t in manifest.tables} == {k: v[0] for k, v in before.items()}
    assert sum(t.rows for t in manifest.tables) > 1000
    for statement in (
        "INSERT INTO users (id) VALUES (-1)",
        "UPDATE users SET id = id",
        "DELETE FROM report_snapshots",
        "TRUNCATE sprints",
        "CREATE TABLE public.intruder (id int)",
        "ALTER TABLE users ADD COLUMN intruder int",
        "SELECT setval(pg_get_serial_sequence('users', 'id'), 1)",
    ):
        message = _denied(backup_user, statement)
        assert "permission denied" in message or "must be owner" in message, (statement, message)
    assert table_checksums(sample_db) == before


def test_roles_sql_applies_twice_and_printing_changes_nothing(
    sample_db: ConnectionSpec, names: RoleNames, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code = main(["roles", "--database-url", _url(sample_db), "--role-prefix", names.prefix])
    assert exit_code == 0
    script = capsys.readouterr().out
    assert f'CREATE ROLE "{names.backup}" NOLOGIN' in script
    assert _existing(sample_db, names) == []  # printing ran nothing

    first = apply_roles(sample_db, plan_roles(sample_db, names=names))
    state = _memberships(sample_db, names)
    second = apply_roles(sample_db, plan_roles(sample_db, names=names))
    assert first == second
    assert [r.status for r in second][:4] == ["applied"] * 4
    assert _memberships(sample_db, names) == state
    assert _existing(sample_db, names) == sorted(names.all)
    with connect(sample_db) as conn:
        attrs = conn.execute(
            "SELECT rolname, rolcanlogin, rolcreatedb FROM pg_roles WHERE rolname = ANY(%s) ORDER BY 1",
            [list(names.all)],
        ).fetchall()
    assert attrs == sorted((n, False, n == names.restore) for n in names.all)


def test_pgaudit_section_is_skipped_with_a_clear_message_where_pgaudit_is_missing(
    sample_db: ConnectionSpec, names: RoleNames, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = plan_roles(sample_db, names=names)
    (audit,) = [s for s in plan.sections if s.name == "pgaudit"]
    assert audit.skipped is not None and "pgaudit is not available on this server" in audit.skipped
    script = plan.script()
    assert "-- skipped: pgaudit is not available on this server" in script
    assert "-- ALTER SYSTEM SET pgaudit.log = 'ddl,write';" in script  # shown, commented out
    assert "\nALTER SYSTEM" not in script

    assert main(["roles", "--database-url", _url(sample_db), "--role-prefix", names.prefix, "--apply"]) == 0
    out = capsys.readouterr().out
    assert "pgaudit: skipped: pgaudit is not available on this server" in out
    with connect(sample_db) as conn:
        assert conn.execute("SELECT count(*) FROM pg_file_settings WHERE name LIKE 'pgaudit%'").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pgaudit'").fetchone() == (0,)

    no_audit = plan_roles(sample_db, names=names, audit=False)
    assert "pgaudit" not in [s.name for s in no_audit.sections]


def test_monitor_maintenance_and_restore_roles_do_what_their_jobs_need(
    pg: LocalPostgres, sample_db: ConnectionSpec, names: RoleNames, login: Callable[..., ConnectionSpec]
) -> None:
    apply_roles(sample_db, plan_roles(sample_db, names=names, audit=False))
    monitor = login(sample_db, names.monitor)
    with connect(sample_db) as other, connect(monitor) as conn:
        other.execute("SELECT 1 AS dbops_visible_query")
        rows = conn.execute("SELECT query FROM pg_stat_activity WHERE usename = 'postgres'").fetchall()
    assert any("dbops_visible_query" in r[0] for r in rows)  # pg_read_all_stats, through pg_monitor

    maintenance = login(sample_db, names.maintenance)
    if pg.major >= 17:
        with connect(maintenance) as conn:
            conn.execute("REINDEX TABLE sprints")  # pg_maintain
    else:
        assert "must be owner" in _denied(maintenance, "REINDEX TABLE sprints")

    restore = login(sample_db, names.restore)
    scratch = f"scratch_{uuid.uuid4().hex[:8]}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch))
    with connect(restore) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(create)  # CREATEDB is an attribute: membership alone does not carry it
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(names.restore)))
        conn.execute(create)
        conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(scratch)))


def test_grant_to_an_unknown_user_changes_nothing(sample_db: ConnectionSpec, names: RoleNames) -> None:
    with pytest.raises(DatabaseError, match="do not exist: nobody_here; nothing was changed"):
        plan_roles(sample_db, names=names, grant_to=["nobody_here"])
    assert _existing(sample_db, names) == []


def test_grant_to_makes_the_login_user_a_member_of_every_group(
    sample_db: ConnectionSpec, names: RoleNames, login: Callable[..., ConnectionSpec]
) -> None:
    user = login(sample_db).user
    apply_roles(sample_db, plan_roles(sample_db, names=names, grant_to=[user], audit=False))
    with connect(sample_db) as conn:
        groups = conn.execute(
            "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
            " JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s ORDER BY 1",
            [user],
        ).fetchall()
    assert [g[0] for g in groups] == sorted(names.all)


def _url(spec: ConnectionSpec) -> str:
    assert spec.password is not None
    return f"postgresql://{spec.user}:{spec.password.get_secret_value()}@{spec.host}:{spec.port}/{spec.dbname}"


def _existing(spec: ConnectionSpec, names: RoleNames) -> list[str]:
    with connect(spec) as conn:
        rows = conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s) ORDER BY 1", [list(names.all)])
        return [r[0] for r in rows.fetchall()]


def _memberships(spec: ConnectionSpec, names: RoleNames) -> list[tuple[str, str]]:
    with connect(spec) as conn:
        rows = conn.execute(
            "SELECT m.rolname, g.rolname FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member"
            " JOIN pg_roles g ON g.oid = a.roleid WHERE m.rolname = ANY(%s) ORDER BY 1, 2",
            [list(names.all)],
        )
        return [(r[0], r[1]) for r in rows.fetchall()]
