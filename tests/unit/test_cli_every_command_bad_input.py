"""Every `dbops` command with arguments drawn at random (its own flags with any text, choices and junk): what it
prints holds no library wording ("Value error", a pydantic or psycopg class name, a traceback), and it ends with a
documented exit code (README, "Exit codes": 0, 1, 2, 3). AWS is the local moto server with an empty bucket and no
state machine; the database URL points at a closed port, so nothing reaches a database."""

from __future__ import annotations

import argparse
import re
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbops import aws
from dbops.cli import build_parser, main
from local_stack.aws import LocalAws

DOCUMENTED = {0, 1, 2, 3}
MONITORING = {"health", "status"}  # 0 ok, 1 warn, 2 critical, 3 unknown
UNREACHABLE = "postgresql://ops:pw@127.0.0.1:1/app"
# the flags that would point a command at a real database: always the unreachable one
FIXED = {"--database-url", "--sslmode", "--sslrootcert", "--help", "-h"}
LIBRARY = re.compile(
    r"Value error|Assertion failed|Traceback|pydantic|psycopg|ValidationError|OperationalError|ClientError|"
    r"BotoCoreError|errors\.pydantic\.dev|Input should|Field required|Extra inputs"
)
TEXT = st.text(
    st.one_of(
        st.sampled_from(['"', ".", " ", "-", "=", "'", "1", "a", "0", "é", "+"]), st.characters(codec="utf-8")
    ).filter(lambda c: c != "\x00"),
    max_size=20,
)


def _leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Each command (`backups list` included) and its parser."""
    found: dict[tuple[str, ...], argparse.ArgumentParser] = {}
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {path: parser}
    for name, sub in subs[0].choices.items():
        found |= _leaves(sub, (*path, name))
    return found


LEAVES = _leaves(build_parser())
FLAGS = {
    path: [a for a in p._actions if a.option_strings and not FIXED & set(a.option_strings)]
    for path, p in LEAVES.items()
}


def _value(action: argparse.Action) -> st.SearchStrategy[list[str]]:
    flag = st.sampled_from(action.option_strings)
    if action.nargs == 0:
        return flag.map(lambda f: [f])
    values = st.one_of(st.sampled_from(list(action.choices)), TEXT) if action.choices else TEXT
    return st.tuples(flag, values).map(lambda fv: [f"{fv[0]}={fv[1]}"])


@st.composite
def commands(draw: st.DrawFn) -> list[str]:
    path = draw(st.sampled_from(sorted(LEAVES)))
    flags = FLAGS[path]
    argv = list(path)
    if flags:
        for action in draw(st.lists(st.sampled_from(flags), max_size=4)):
            argv += draw(_value(action))
    positional = [a for a in LEAVES[path]._actions if not a.option_strings and a.dest != "help"]
    for action in positional:
        if action.choices:
            argv.append(draw(st.sampled_from(list(action.choices))))
        elif action.nargs not in ("*", "?"):
            argv.append(draw(st.one_of(st.just("latest"), TEXT.filter(lambda t: not t.startswith("-")))))
    return argv


@pytest.fixture(scope="module")
def aws_targets(local_aws: LocalAws) -> list[str]:
    bucket = f"dbops-test-{uuid.uuid4().hex[:12]}"
    aws.client("s3").create_bucket(Bucket=bucket)
    return [bucket, f"arn:aws:states:us-east-1:123456789012:stateMachine:dbops-missing-{uuid.uuid4().hex[:8]}"]


def _fixed(argv: list[str], bucket: str, machine: str) -> list[str]:
    """The command's safe targets, after what was drawn (the last value of a flag wins): the unreachable database,
    the empty bucket, the missing state machine, whichever the command takes."""
    options = {s for a in LEAVES[_path(argv)]._actions for s in a.option_strings}
    fixed = [f"--database-url={UNREACHABLE}"] if "--database-url" in options else []
    fixed += [f"--bucket={bucket}"] if "--bucket" in options and not any(a.startswith("--bucket") for a in argv) else []
    if "--state-machine-arn" in options and not any(a.startswith("--state-machine-arn") for a in argv):
        fixed.append(f"--state-machine-arn={machine}")
    return fixed


def _path(argv: list[str]) -> tuple[str, ...]:
    return next(p for p in sorted(LEAVES, key=len, reverse=True) if tuple(argv[: len(p)]) == p)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=commands())
def test_no_library_wording_and_only_documented_exit_codes(
    capsys: pytest.CaptureFixture[str], aws_targets: list[str], argv: list[str]
) -> None:
    path = _path(argv)
    bucket, machine = aws_targets
    full = [*argv, *_fixed(argv, bucket, machine)]
    if path == ("rehearse",):
        full += ["--", "true"]
    capsys.readouterr()
    try:
        code = main(full)
    except SystemExit as exc:  # argparse's usage error
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert code in DOCUMENTED, (full, code, err)
    assert not LIBRARY.search(out + err), (full, out + err)
    if code and path[0] not in MONITORING:  # health and status report a critical database on stdout
        assert err.strip(), (full, code)
