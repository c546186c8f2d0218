"""dbops roles: print (or apply) the SQL that creates the dbops group roles and the optional audit logging."""

from __future__ import annotations

import argparse
from typing import Any

from dbops.cli.common import add_database_url, spec_from
from dbops.postgres.roles import DEFAULT_PREFIX, RoleNames, apply_roles, plan_roles


def cmd_roles(args: argparse.Namespace) -> int:
    spec = spec_from(args)
    if args.database:
        spec = spec.for_database(args.database)
    names = RoleNames(args.role_prefix)
    plan = plan_roles(spec, grant_to=args.grant_to or (), audit=not args.no_audit, names=names)
    if not args.apply:
        print(plan.script(), end="")
        return 0
    results = apply_roles(spec, plan)
    for result in results:
        line = f"{result.name}: {result.status}"
        print(f"{line}: {result.detail}" if result.detail else line)
    return 1 if any(r.status == "failed" for r in results) else 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "roles",
        help="least-privilege roles inside PostgreSQL (dbops_backup, _monitor, _maintenance, _restore) and pgaudit",
        description="Prints idempotent SQL; --apply runs it (as a superuser or, on RDS, the master user).",
    )
    add_database_url(p)
    p.add_argument("--apply", action="store_true", help="run the SQL instead of printing it")
    p.add_argument("--database", help="the database to grant CONNECT on and set up (default: the URL's)")
    p.add_argument(
        "--grant-to",
        action="append",
        metavar="USER",
        help="also GRANT the dbops roles to this existing login user (repeatable)",
    )
    p.add_argument(
        "--role-prefix",
        default=DEFAULT_PREFIX,
        help="role names <prefix>_backup, _monitor, _maintenance, _restore (default: dbops)",
    )
    p.add_argument("--no-audit", action="store_true", help="leave out the optional pgaudit section")
    p.set_defaults(run=cmd_roles)
