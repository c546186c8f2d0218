"""The `dbops` command line: the same domain code the Lambda functions run, for operators.

Each command group lives in its own module with a `register(subparsers)` function; main() wires them up,
importing only the group that owns the command given (a backup does not load the health, maintenance and
restore code: about 50 ms of every start), or every group for help and usage errors. run() is the program
(`dbops`, `python -m dbops.cli`); main() is the same for callers inside a process.
Exit codes (README, "Exit codes"): 0 done; 1 failed (the work ran and did not succeed); 2 refused or bad input
(argparse's usage error, a flag value a model refused, a request that cannot be carried out as asked: nothing was
changed); 3 could not run (AWS, the database or a PostgreSQL client tool out of reach). Every error is one line on
stderr, in plain words, naming flags as typed; bad input never ends in a traceback. `dbops health` and `dbops
status` keep the monitoring-plugin convention instead (0 ok, 1 warn, 2 critical, 3 unknown).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from pydantic import ValidationError

from dbops import aws, contract
from dbops.errors import (
    BackupNotFound,
    ConfigError,
    DbopsError,
    PauseTooLong,
    RefusedBeforeStart,
    RehearsalRefused,
    RestoreBusy,
    RestoreRefused,
    StorageError,
    validation_problems,
)

EXIT_DONE, EXIT_FAILURE, EXIT_USAGE, EXIT_COULD_NOT_RUN = (
    contract.EXIT_DONE,
    contract.EXIT_FAILURE,
    contract.EXIT_USAGE,
    contract.EXIT_COULD_NOT_RUN,
)
# refusals: the request as given cannot be carried out, and nothing was changed
REFUSALS = (
    ConfigError,
    RestoreRefused,
    RehearsalRefused,
    RefusedBeforeStart,
    BackupNotFound,
    RestoreBusy,
    PauseTooLong,
)

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


def exit_code(exc: DbopsError) -> int:
    """The exit code for an error that ended a command: 2 refused, 3 could not run, 1 failed."""
    if isinstance(exc, REFUSALS):
        return EXIT_USAGE
    if isinstance(exc, StorageError) or exc.could_not_run:
        return EXIT_COULD_NOT_RUN
    return EXIT_FAILURE


def flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each option's destination (and a repeatable one's plural, `tables` for `--table`) with its longest flag,
    over the parser and its subcommands: a model built from the flags names its fields so."""
    names: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                names = flag_names(sub) | names
        elif action.option_strings and action.dest != "help":
            flag = max(action.option_strings, key=len)
            names[action.dest] = flag
            if isinstance(action, argparse._AppendAction):
                names[action.dest + "s"] = flag
    return names


def typed_names(args: argparse.Namespace) -> dict[str, str]:
    """Each parsed option's field as its flag (`statement_timeout_ms` as `--statement-timeout-ms`): for a command
    that builds a model from its flags itself and reports the model's refusal."""
    return {dest: "--" + dest.replace("_", "-") for dest in vars(args)}


def error_line(exc: Exception, names: dict[str, str] | None = None) -> str:
    """What went wrong, on one line: a pydantic validation as every wrong value by the flag that gave it (`names`)
    or its field's name, in plain words (never the values given: a URL holds a password); anything else as its
    message, line breaks inside it (a tool's or a service's multi-line text, a newline in a name the operator
    typed) turned into spaces."""
    text = (
        validation_problems(exc, names, plain=True)
        if isinstance(exc, ValidationError)
        else str(exc) or "unexpected error"
    )
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
        with aws.region_kept():
            return int(args.run(args) or EXIT_DONE)
    except ValidationError as exc:  # a model built from the flags (e.g. a restore request) refused them
        print(f"dbops: error: {error_line(exc, flag_names(parser))}", file=sys.stderr)
        return EXIT_USAGE
    except DbopsError as exc:
        print(f"dbops: error: {error_line(exc)}", file=sys.stderr)
        return exit_code(exc)
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
