"""Running the migration command against the scratch database: a clean environment, a time limit, its output.

The command is anyone's program (`alembic upgrade head`, `flyway migrate`, `psql -f`), so it gets only what it
needs: the scratch database's URL in the variable it reads, libpq's PG* variables for the same database (for
psql-based tools), and a short list of harmless variables of ours (PATH, HOME, locale, PYTHONPATH, ...) plus the
ones the operator names. Never our own settings: DBOPS_DATABASE_URL, PGPASSWORD and AWS credentials are
production's. It runs in its own process group, so a time limit stops it and everything it started; whatever
it prints is kept (its end) with the password replaced by ***.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlencode

from dbops.postgres.connection import ConnectionSpec
from dbops.rehearsal.models import CommandRun

KEPT_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "TMPDIR",
    "PYTHONPATH",
    "VIRTUAL_ENV",
)
TAIL_LINES = 200
STOP_GRACE_S = 3.0


def database_url(spec: ConnectionSpec) -> str:
    """postgresql://user:password@host:port/dbname?sslmode=... for `spec` (it holds the password: never print it)."""
    auth = quote(spec.user, safe="")
    if spec.password is not None:
        auth += ":" + quote(spec.password.get_secret_value(), safe="")
    query: dict[str, str] = {"sslmode": spec.sslmode}
    if spec.sslrootcert:
        query["sslrootcert"] = spec.sslrootcert
    host = spec.host
    if host.startswith("/"):  # a Unix socket folder goes in the query
        query["host"] = host
        host = ""
    elif ":" in host:
        host = f"[{host}]"
    return f"postgresql://{auth}@{host}:{spec.port}/{quote(spec.dbname, safe='')}?{urlencode(query)}"


def command_env(spec: ConnectionSpec, url_env: str, pass_env: list[str]) -> dict[str, str]:
    """The command's whole environment (see the module's docstring)."""
    env = {name: os.environ[name] for name in (*KEPT_ENV, *pass_env) if name in os.environ}
    env.update({k: v for k, v in spec.libpq_env().items() if k != "PGAPPNAME"})
    env[url_env] = database_url(spec)
    return env


def secrets_of(spec: ConnectionSpec) -> list[str]:
    """What must never appear in output: the password, as typed and as a URL carries it."""
    if spec.password is None or not spec.password.get_secret_value():
        return []
    password = spec.password.get_secret_value()
    return sorted({password, quote(password, safe="")}, key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def find_program(argv: list[str], env: dict[str, str]) -> str | None:
    """The program `argv` runs, as the command's PATH finds it; None: there is no such program."""
    program = argv[0]
    if "/" in program:
        path = Path(program)
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(program, path=env.get("PATH", os.defpath))


def default_downgrade(command: list[str], revision: str | None) -> list[str] | None:
    """An Alembic command's rollback: `... upgrade <target>` becomes `... downgrade <revision>` (`base` when the
    database had none), keeping what comes before (`-c alembic.ini`, `-x key=value`, `python -m alembic`). None when
    the command is not an Alembic upgrade: then the rollback must be given."""
    if "upgrade" not in command:
        return None
    at = command.index("upgrade")
    if not any(Path(arg).name.startswith("alembic") for arg in command[:at]):
        return None
    return [*command[:at], "downgrade", revision or "base"]


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the command's process group, SIGKILL to what is left after a grace period."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            if sig == signal.SIGTERM:  # the leader is gone: make sure nothing it started lingers
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
            return
        except subprocess.TimeoutExpired:
            continue


def run_command(
    argv: list[str],
    env: dict[str, str],
    time_limit_s: float,
    secrets: list[str],
    on_output: Callable[[str], None] | None = None,
) -> CommandRun:
    """Run `argv` to its end or until `time_limit_s`, whatever happens to us (it is stopped if we are interrupted)."""
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return CommandRun(argv=argv, exit_code=None, seconds=0.0, error=f"cannot start {argv[0]}: {exc.strerror}")
    tail: deque[str] = deque(maxlen=TAIL_LINES)

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = redact(raw.decode(errors="replace").rstrip("\n"), secrets)
            tail.append(line)
            if on_output is not None:
                on_output(line)

    reader = threading.Thread(target=read, name="command-output", daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=time_limit_s)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        _stop_group(proc)  # after a normal end too: nothing the command started outlives it
        reader.join(timeout=5)
    return CommandRun(
        argv=argv,
        exit_code=proc.returncode,
        seconds=round(time.monotonic() - t0, 3),
        timed_out=timed_out,
        output_tail="\n".join(tail),
    )
