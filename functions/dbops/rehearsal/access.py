"""The deployed rehearsal's temporary login: what the application's migration container connects as.

The migration image is the application's, run by ECS: it must get a URL to the scratch database without dbops' own
credentials and without a password in the RunTask request (RunTask overrides are readable in the ECS API). So each
rehearsal makes a role `dbops_rehearse_<rehearsal id>`:

- LOGIN, its password random, sent to the server only as a SCRAM verifier (libpq's PQencryptPasswordConn), so no
  statement log holds it; VALID UNTIL the rehearsal's deadline; CONNECTION LIMIT 20;
- a member of the role that owns the scratch database's tables, and set to it on login in that database only
  (`ALTER ROLE ... IN DATABASE ... SET role`): the migration acts as the owner, as it does in production, and
  what it creates is owned as in production (the schema comparison sees owners);
- the URL is written into the database's rehearsal secret in Secrets Manager, which the migration task definition
  names (ECS reads it at the task's start); the watcher beside the migration reads the same secret and takes
  `role=none` (the session user) so that it sees the migration's sessions in pg_stat_activity.

The role is dropped with its scratch database (scratch.drop); roles left by a rehearsal that died are dropped by
the next sweep (drop_orphan_roles). Creating it needs CREATEROLE and, on PostgreSQL 16+, ADMIN OPTION on the
owner role (RDS: the master user created the application's roles, so it has it).
"""

from __future__ import annotations

import re
import secrets as random
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql
from pydantic import SecretStr

from dbops.aws import secrets
from dbops.errors import ConfigError
from dbops.postgres.connection import ConnectionSpec, connect

ROLE_PREFIX = "dbops_rehearse_"
_ROLE = re.compile(rf"^{ROLE_PREFIX}(\d{{14}})_[0-9a-f]{{4}}$")
CONNECTION_LIMIT = 20
SECRET_URL_KEY = "url"

# the role owning most relations outside the system schemas: the application's, which its migrations run as
TABLE_OWNER = """
    SELECT pg_get_userbyid(c.relowner), count(*)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%%'
      AND c.relkind IN ('r', 'p')
    GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1
"""
DATABASE_OWNER = "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"


def role_name(rehearsal_id: str) -> str:
    return f"{ROLE_PREFIX}{rehearsal_id}"


def owner_of(scratch: ConnectionSpec) -> str:
    """The role the migration acts as: the owner of most tables (the database's owner when it has none)."""
    with connect(scratch) as conn:
        row = conn.execute(TABLE_OWNER).fetchone() or conn.execute(DATABASE_OWNER).fetchone()
    assert row is not None
    return str(row[0])


def create_role(scratch: ConnectionSpec, source: str, rehearsal_id: str, valid_for: timedelta) -> ConnectionSpec:
    """The temporary role for the scratch database `scratch` (see the module's docstring), which is given the owner
    of the `source` database (the public schema's owner on 15+ is the database's, as in production); returns how
    to connect as it (holding its password: never log it)."""
    role, owner = role_name(rehearsal_id), owner_of(scratch)
    password = random.token_urlsafe(32)
    until = (datetime.now(UTC) + valid_for).isoformat()
    with connect(scratch.for_database("postgres")) as conn:
        row = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", [source]).fetchone()
        if row is not None:
            conn.execute(
                sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(scratch.dbname), sql.Identifier(row[0]))
            )
        verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN NOINHERIT PASSWORD {} VALID UNTIL {} CONNECTION LIMIT {}").format(
                sql.Identifier(role), sql.Literal(verifier), sql.Literal(until), sql.Literal(CONNECTION_LIMIT)
            )
        )
        try:
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(owner), sql.Identifier(role)))
        except psycopg.Error as exc:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
            raise ConfigError(
                f"cannot let the rehearsal's role act as {owner}, the owner of the scratch database's tables "
                f"({' '.join(str(exc).split())}): dbops' user needs CREATEROLE and, on PostgreSQL 16+, ADMIN OPTION "
                f"on {owner} (GRANT {owner} TO <dbops user> WITH ADMIN OPTION)"
            ) from None
        conn.execute(
            sql.SQL("ALTER ROLE {} IN DATABASE {} SET role = {}").format(
                sql.Identifier(role), sql.Identifier(scratch.dbname), sql.Literal(owner)
            )
        )
    return scratch.model_copy(
        update={
            "user": role,
            "password": SecretStr(password),
            "sslrootcert": None,
            # the application's container has no copy of dbops' CA bundle: it encrypts, and the URL is to one host
            "sslmode": "require" if scratch.sslmode in ("verify-ca", "verify-full") else scratch.sslmode,
        }
    )


def drop_role(spec: ConnectionSpec, role: str) -> None:
    """Drop a temporary role if it exists (its scratch database dropped first: it owns nothing else)."""
    with connect(spec.for_database("postgres")) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def drop_orphan_roles(spec: ConnectionSpec, live_ids: set[str], older_than: timedelta) -> list[str]:
    """Drop the temporary roles whose rehearsal has no scratch database any more (it died between the two drops)."""
    with connect(spec.for_database("postgres")) as conn:
        rows = conn.execute("SELECT rolname, now() FROM pg_roles WHERE rolname LIKE 'dbops\\_rehearse\\_%'").fetchall()
    dropped = []
    for role, now in rows:
        match = _ROLE.match(role)
        if match is None or role.removeprefix(ROLE_PREFIX) in live_ids:
            continue
        created = datetime.strptime(match.group(1), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        if now - created >= older_than:
            drop_role(spec, role)
            dropped.append(str(role))
    return dropped


def publish_url(secret_id: str, url: str) -> None:
    """The migration's URL into the database's rehearsal secret (read by ECS when the migration task starts)."""
    _put(secret_id, {SECRET_URL_KEY: url})


def withdraw_url(secret_id: str) -> None:
    """The rehearsal is over: the secret no longer holds a URL (its role is dropped too)."""
    _put(secret_id, {SECRET_URL_KEY: ""})


def _put(secret_id: str, value: dict[str, str]) -> None:
    secrets.write_json(secret_id, value, "the rehearsal secret")
