"""The CLI's command map: every command reachable, and a command loads only its own group's code."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from dbops.cli import COMMANDS, build_parser


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(actions[0].choices)


def test_the_full_parser_has_exactly_the_mapped_commands() -> None:
    assert _commands(build_parser()) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_is_registered_by_the_group_it_is_mapped_to(command: str) -> None:
    assert command in _commands(build_parser(command))


def test_a_backup_does_not_import_the_other_groups() -> None:
    probe = (
        "import sys\n"
        "from dbops.cli import build_parser\n"
        "build_parser('backup')\n"
        "print(' '.join(m for m in ('dbops.health', 'dbops.maintenance', 'dbops.restore.runner',"
        " 'dbops.postgres.roles')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_program_lists_every_command_in_its_help_and_exits_2_on_an_unknown_one() -> None:
    help_run = subprocess.run([sys.executable, "-m", "dbops.cli", "--help"], capture_output=True, text=True)
    assert help_run.returncode == 0
    assert all(command in help_run.stdout for command in COMMANDS)
    bad = subprocess.run([sys.executable, "-m", "dbops.cli", "no-such-command"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "invalid choice: 'no-such-command'" in bad.stderr
