"""Flags shared by the commands; each also readable from an environment variable."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any

from dbops.contract import BACKUP_KINDS
from dbops.errors import ConfigError
from dbops.postgres.connection import ConnectionSpec
from dbops.text import table_lines


class EnvDefault(argparse.Action):
    """A flag whose default comes from an environment variable; required only when neither is set (an empty
    variable counts as not set)."""

    def __init__(self, envvar: str, required: bool = True, default: Any = None, **kwargs: Any) -> None:
        default = os.environ.get(envvar) or default
        if default is not None:
            required = False
        kwargs["help"] = f"{kwargs.get('help', '')} [env {envvar}]".strip()
        super().__init__(default=default, required=required, **kwargs)

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        setattr(namespace, self.dest, values)


def add_database_url(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "--database-url",
        action=EnvDefault,
        envvar="DBOPS_DATABASE_URL",
        required=required,
        help="postgresql://user:password@host:port/dbname (never logged)",
    )
    parser.add_argument(
        "--sslmode", action=EnvDefault, envvar="PGSSLMODE", required=False, help="libpq sslmode, e.g. verify-full"
    )
    parser.add_argument(
        "--sslrootcert",
        action=EnvDefault,
        envvar="PGSSLROOTCERT",
        required=False,
        help="CA bundle for verify-ca / verify-full",
    )


def add_backup_choice(parser: argparse.ArgumentParser) -> None:
    """The backup a command reads: its id or `latest`, narrowed by kind and database."""
    parser.add_argument("backup", metavar="BACKUP_ID|latest")
    parser.add_argument("--kind", choices=BACKUP_KINDS)
    parser.add_argument("--database", help="the catalog name the backup was taken under")


def add_bucket(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bucket", action=EnvDefault, envvar="DBOPS_BUCKET", help="the backup bucket")


def add_bucket_optional(parser: argparse.ArgumentParser, purpose: str) -> None:
    parser.add_argument("--bucket", action=EnvDefault, envvar="DBOPS_BUCKET", required=False, help=purpose)


AWS_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")


def add_region(parser: argparse.ArgumentParser, help_text: str) -> None:
    """--region: an AWS region's name, checked here (the SDK's own refusal would be its wording, not ours)."""

    def region(text: str) -> str:
        if not AWS_REGION.fullmatch(text):
            raise argparse.ArgumentTypeError(f"{text!r} is not an AWS region (like us-west-2)")
        return text

    parser.add_argument("--region", type=region, help=help_text)


def add_pg_bin(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pg-bin",
        action=EnvDefault,
        envvar="DBOPS_PG_BIN",
        required=False,
        help="folder holding pg_dump / pg_restore (default: layer, wheel, PATH)",
    )


def spec_from(args: argparse.Namespace) -> ConnectionSpec:
    if not args.database_url:
        raise ConfigError("give --database-url or DBOPS_DATABASE_URL")
    return ConnectionSpec.from_url(args.database_url, sslmode=args.sslmode, sslrootcert=args.sslrootcert)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    print("\n".join(table_lines(headers, rows)))


def find_state_machine(explicit: str | None, *, what: str, name_prefix: str, logical_name: str, envvar: str) -> str:
    """A deployed (or local) state machine: given, else the only one named `name_prefix`* (the stack's name) or
    holding `logical_name` (CDK's generated name)."""
    if explicit:
        return explicit
    from dbops.aws import stepfunctions  # not loaded for `dbops backup`

    machines = stepfunctions.state_machines()
    found = [
        m["stateMachineArn"] for m in machines if m["name"].lower().startswith(name_prefix) or logical_name in m["name"]
    ]
    if len(found) != 1:
        raise ConfigError(
            f"cannot tell which {what} state machine to use ({len(found)} found): pass --state-machine-arn or set "
            f"{envvar}"
        )
    return found[0]


def add_state_machine(parser: argparse.ArgumentParser, envvar: str, name_prefix: str) -> None:
    parser.add_argument(
        "--state-machine-arn",
        action=EnvDefault,
        envvar=envvar,
        required=False,
        help=f"default: the state machine named {name_prefix}*",
    )
