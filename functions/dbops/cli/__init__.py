"""The `dbops` command line: the same domain code the Lambda functions run, for operators.

Each command group lives in its own module with a `register(subparsers)` function; main() wires them up.
Exit codes: 0 success, 1 failure (with a one-line reason on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dbops.cli import backups, health, maintain, restores, roles
from dbops.errors import DbopsError

COMMAND_GROUPS = [backups, restores, health, maintain, roles]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dbops", description=__doc__.splitlines()[0] if __doc__ else None)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
