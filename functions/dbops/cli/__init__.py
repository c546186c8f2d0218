"""The `dbops` command line: the same domain code the Lambda functions run, for operators.

Each command group lives in its own module with a `register(subparsers)` function; main() wires them up,
importing only the group that owns the command given (a backup does not load the health, maintenance and
restore code: about 50 ms of every start), or every group for help and usage errors. run() is the program
(`dbops`, `python -m dbops.cli`); main() is the same for callers inside a process.
Exit codes: 0 success, 1 failure (with a one-line reason on stderr), 2 bad usage (argparse's usage error, or
one line naming every flag value a model refused). Bad input never ends in a traceback.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from pydantic import ValidationError

from dbops.errors import DbopsError, validation_problems

EXIT_FAILURE = 1
EXIT_USAGE = 2

# each command and the module (dbops.cli.<group>) that registers it
COMMANDS = {
    "sample-data": "backups",
    "backup": "backups",
    "backups": "backups",
    "verify": "backups",
    "export": "export",
    "restore": "restores",
    "restores": "restores",
    "health": "health",
    "status": "status",
    "maintain": "maintain",
    "roles": "roles",
    "rehearse": "rehearse",
}


def _groups(command: str | None) -> list[str]:
    """The modules to load: the one that owns `command`, or every group."""
    names = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    return [f"dbops.cli.{name}" for name in names]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with the group that owns `command`, or with every group."""
    parser = argparse.ArgumentParser(prog="dbops", description=__doc__.splitlines()[0] if __doc__ else None)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in _groups(command):
        importlib.import_module(group).register(subparsers)
    return parser


def error_line(exc: Exception) -> str:
    """What went wrong, on one line: a pydantic validation as `invalid <model>:` and every wrong field by its path
    (never the values given: a URL holds a password); anything else as its message, line breaks inside it (a
    tool's or a service's multi-line text, a newline in a name the operator typed) turned into spaces."""
    if isinstance(exc, ValidationError):
        what = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", exc.title).lower()
        text = f"invalid {what}: {validation_problems(exc)}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _not_text(args: list[str]) -> str | None:
    """Which argument is not UTF-8 text (bytes Python could only decode as surrogate escapes), by its place and
    flag, never its value (it may be a database URL): such a name would otherwise fail deep inside a library."""
    for place, arg in enumerate(args, 1):
        try:
            arg.encode()
        except UnicodeEncodeError:
            before = args[place - 2] if place > 1 else ""
            flag = arg.partition("=")[0] if arg.startswith("--") and "=" in arg else before
            of = f" (the value of {flag})" if flag.startswith("-") and flag.isascii() else ""
            return f"argument {place}{of}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    bad = _not_text(args_list)
    if bad is not None:
        print(f"dbops: error: {bad} is not UTF-8 text", file=sys.stderr)
        return EXIT_USAGE
    for arg in args_list:
        if arg.startswith("--") and arg.endswith("=--"):  # argparse (3.11, 3.12) drops such a value unseen
            print(f"dbops: error: argument {arg[:-3]}: '--' is not a value it takes", file=sys.stderr)
            return EXIT_USAGE
    parser = build_parser(args_list[0] if args_list else None)
    args = parser.parse_args(args_list)
    try:
        return int(args.run(args) or 0)
    except ValidationError as exc:  # a model built from the flags (e.g. a restore request) refused them
        print(f"dbops: error: {error_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except DbopsError as exc:
        print(f"dbops: error: {error_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("dbops: interrupted", file=sys.stderr)
        return 130


def run() -> NoReturn:
    """The `dbops` program. A short-lived process, so the garbage collector keeps out of its way: off while
    the command's modules load (its passes over objects that live to the end anyway cost ~40 ms), and every
    object frozen before exit, so the interpreter's last full collection (~0.1 s after a backup) has nothing
    to walk. Files and connections are closed by then: nothing waits on that collection."""
    gc.disable()
    for group in _groups(sys.argv[1] if len(sys.argv) > 1 else None):
        importlib.import_module(group)
    gc.freeze()
    gc.enable()
    code = main()
    gc.freeze()
    sys.exit(code)
