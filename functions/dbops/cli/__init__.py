"""The `dbops` command line: the same domain code the Lambda functions run, for operators.

Each command group lives in its own module with a `register(subparsers)` function; main() wires them up,
importing only the group that owns the command given (a backup does not load the health, maintenance and
restore code: about 50 ms of every start), or every group for help and usage errors.
Exit codes: 0 success, 1 failure (with a one-line reason on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from dbops.errors import DbopsError

# each command and the module (dbops.cli.<group>) that registers it
COMMANDS = {
    "sample-data": "backups",
    "backup": "backups",
    "backups": "backups",
    "verify": "backups",
    "restore": "restores",
    "restores": "restores",
    "health": "health",
    "maintain": "maintain",
    "roles": "roles",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with the group that owns `command`, or with every group."""
    parser = argparse.ArgumentParser(prog="dbops", description=__doc__.splitlines()[0] if __doc__ else None)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups = [COMMANDS[command]] if command in COMMANDS else dict.fromkeys(COMMANDS.values())
    for group in groups:
        importlib.import_module(f"dbops.cli.{group}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list[0] if args_list else None)
    args = parser.parse_args(args_list)
    try:
        return int(args.run(args) or 0)
    except DbopsError as exc:
        print(f"dbops: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dbops: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
