"""Bad input to the `dbops` command line, for any table name, backup id or kind: exit 2 (refused) or 3 (could not
run: the state machine is not there) with one line on stderr (`dbops: error: ...`, or argparse's usage error),
never a traceback and never a secret. AWS is the local moto server; every command here stops at validation or at
a missing state machine or backup, so nothing reaches a database."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dbops import aws
from dbops.backup.catalog import BACKUP_KINDS
from dbops.cli import main
from dbops.restore.names import parse_table_name
from local_stack.aws import LocalAws

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# what an operator can type: any text (argv holds no NUL), the characters that make names hard drawn often
TYPED = st.text(
    st.one_of(
        st.sampled_from(['"', ".", " ", "-", "=", "\n", "'", "A", "a", "é"]), st.characters(codec="utf-8")
    ).filter(lambda c: c != "\x00"),
    max_size=40,
)
# Python 3.11's argparse drops a flag's value that is exactly `--` (`--table=--`) without a word: the CLI refuses
# it before parsing (exit 2)
DASHES = "--"
DASHES_REFUSED = "'--' is not a value it takes"
USAGE_ERROR = re.compile(r"^dbops [a-z -]+: error: ")


@pytest.fixture(scope="module")
def empty_bucket(local_aws: LocalAws) -> Iterator[str]:
    name = f"dbops-test-{uuid.uuid4().hex[:12]}"
    aws.client("s3").create_bucket(Bucket=name)
    yield name


@pytest.fixture(scope="module")
def missing_machine(local_aws: LocalAws) -> str:
    """A well-formed ARN of a state machine that does not exist on the moto server."""
    return f"arn:aws:states:us-east-1:123456789012:stateMachine:dbops-restore-missing-{uuid.uuid4().hex[:8]}"


def run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    """main()'s exit code (returned, or argparse's SystemExit) and what it wrote on stderr."""
    capsys.readouterr()  # a property test reuses the fixture: start each example clean
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def assert_one_error_line(code: int, err: str) -> str:
    """Exit 1, 2 or 3 and a single `dbops: error:` line, or argparse's usage text ending in its one error line."""
    assert code in (1, 2, 3), (code, err)
    assert "Traceback" not in err
    lines = err.splitlines()
    if lines and lines[0].startswith("usage: dbops"):
        assert code == 2 and USAGE_ERROR.match(lines[-1]), err
        return lines[-1]
    assert len(lines) == 1 and lines[0].startswith("dbops: error: "), err
    return lines[0]


def _well_formed(table: str) -> bool:
    try:
        parse_table_name(table)
    except ValueError:
        return False
    return True


@FAST
@given(tables=st.lists(TYPED, min_size=1, max_size=3))
@example(tables=["a.b.c"])
@example(tables=[""])
@example(tables=['"Sales Ops"."Order Items"'])
@example(tables=["users", "users"])
@example(tables=["-x"])
@example(tables=[DASHES])
def test_restore_table_names(capsys: pytest.CaptureFixture[str], missing_machine: str, tables: list[str]) -> None:
    """A malformed name (or one named twice) is bad usage, refused before AWS is asked anything; well-formed
    names of any spelling pass and the command fails only at the state machine that is not there."""
    flags = [f"--table={t}" for t in tables]
    code, err = run(capsys, ["restore", *flags, f"--state-machine-arn={missing_machine}"])
    line = assert_one_error_line(code, err)
    if DASHES in tables:
        assert code == 2 and line == f"dbops: error: argument --table: {DASHES_REFUSED}", line
    elif all(_well_formed(t) for t in tables) and len(set(tables)) == len(tables):
        assert code == 3 and line.startswith("dbops: error: cannot start the restore state machine"), line
    else:
        assert code == 2 and line.startswith("dbops: error: --table: "), line


@FAST
@given(backup_id=TYPED)
@example(backup_id="latest")
@example(backup_id="20260101T000000Z-abcdef")
@example(backup_id="../../etc")
@example(backup_id="-rf")
@example(backup_id="a\nb")
def test_verify_unknown_backup_ids(capsys: pytest.CaptureFixture[str], empty_bucket: str, backup_id: str) -> None:
    code, err = run(capsys, ["verify", "--bucket", empty_bucket, "--", backup_id])
    line = assert_one_error_line(code, err)
    assert code == 2  # refused: no backup by that name
    expected = "no committed backup" if backup_id == "latest" else "not found in bucket"
    assert expected in line and empty_bucket in line


@FAST
@given(backup_id=TYPED)
@example(backup_id=DASHES)
def test_restore_any_backup_id(capsys: pytest.CaptureFixture[str], missing_machine: str, backup_id: str) -> None:
    code, err = run(capsys, ["restore", f"--backup={backup_id}", f"--state-machine-arn={missing_machine}"])
    line = assert_one_error_line(code, err)
    if backup_id == DASHES:
        assert code == 2 and line == f"dbops: error: argument --backup: {DASHES_REFUSED}", line
    else:
        assert code == 3 and line.startswith("dbops: error: cannot start the restore state machine"), line


@FAST
@given(
    command=st.sampled_from([["restore"], ["verify", "latest"], ["backups", "list"]]),
    kind=TYPED.filter(lambda k: k not in BACKUP_KINDS),
)
@example(command=["backups", "list"], kind="weekly")
@example(command=["restore"], kind="Nightly")
@example(command=["backups", "list"], kind=DASHES)
def test_wrong_kinds_are_usage_errors(
    capsys: pytest.CaptureFixture[str], empty_bucket: str, missing_machine: str, command: list[str], kind: str
) -> None:
    extra = ["--bucket", empty_bucket] if command[0] != "restore" else [f"--state-machine-arn={missing_machine}"]
    code, err = run(capsys, [*command, f"--kind={kind}", *extra])
    line = assert_one_error_line(code, err)
    assert code == 2 and ("argument --kind: invalid choice" in line or DASHES_REFUSED in line), line


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["restores", "list", "--limit", "0"], 2, "argument --limit: 0: give 1 to 1000"),
        (["sample-data", "--database-url", "postgresql://u@127.0.0.1:1/db", "--scale", "nan"], 2, "--scale: 'nan'"),
        (
            ["health", "--database-url", "postgresql://u@127.0.0.1:1/db", "--statement-timeout-ms", "-5"],
            3,  # health's own convention: the check could not start
            "dbops: error: --statement-timeout-ms: must be greater than or equal to 1",
        ),
    ],
)
def test_flag_values_out_of_range(
    capsys: pytest.CaptureFixture[str], local_aws: LocalAws, argv: list[str], code: int, message: str
) -> None:
    got, err = run(capsys, argv)
    assert got == code
    assert "Traceback" not in err and message in err.splitlines()[-1]


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["roles"], "invalid connection settings from the database URL and TLS flags: port: must be"),
        (["maintain", "analyze"], "invalid connection settings from the database URL and TLS flags: port:"),
        (["backup", "--bucket", "b"], "invalid connection settings from the database URL and TLS flags: port:"),
    ],
)
def test_a_bad_database_url_is_one_line_without_the_password(
    capsys: pytest.CaptureFixture[str], command: list[str], message: str
) -> None:
    code, err = run(capsys, [*command, "--database-url", "postgresql://ops:s3cr3t-pw@127.0.0.1:notaport/db"])
    line = assert_one_error_line(code, err)
    assert code == 2 and message in line
    assert "s3cr3t" not in err


def test_an_argument_that_is_not_utf8_is_named_by_place_not_echoed(capsys: pytest.CaptureFixture[str]) -> None:
    # what Python makes of the bytes b"pw\xff" in argv: a surrogate escape
    url = "postgresql://ops:pw\udcff@127.0.0.1:1/db"
    code, err = run(capsys, ["roles", "--database-url", url])
    line = assert_one_error_line(code, err)
    assert code == 2 and line == "dbops: error: argument 3 (the value of --database-url) is not UTF-8 text"
