"""Running pg_restore and judging its result.

pg_restore 17+ sets transaction_timeout in every session, which servers older than 17 reject; that one
error is harmless (the setting does not exist there) and is the only one tolerated. Any other error fails.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from dbops.errors import ToolError
from dbops.postgres.connection import ConnectionSpec
from dbops.postgres.tools import find_tool

HARMLESS = ('unrecognized configuration parameter "transaction_timeout"',)
_ERROR = re.compile(r"^pg_restore: error: (.*)$", re.MULTILINE)


def real_errors(stderr: str) -> list[str]:
    return [e for e in _ERROR.findall(stderr) if not any(h in e for h in HARMLESS)]


def run_pg_restore(
    target: ConnectionSpec,
    args: list[str],
    *,
    archive: Path | None = None,
    stdin: bytes | None = None,
    pg_bin_dir: str | None = None,
    timeout: float | None = None,
) -> None:
    """Restore into `target` (its libpq env carries the password); raises ToolError on any real error."""
    argv = [str(find_tool("pg_restore", pg_bin_dir)), "--no-password", f"--dbname={target.dbname}", *args]
    if archive is not None:
        argv.append(str(archive))
    done = subprocess.run(argv, input=stdin, env=target.libpq_env(), capture_output=True, timeout=timeout, check=False)
    stderr = done.stderr.decode(errors="replace")
    if done.returncode == 0:
        return
    errors = real_errors(stderr)
    if done.returncode < 0:
        raise ToolError(f"pg_restore into {target.dbname} was killed by signal {-done.returncode}")
    if errors or "errors ignored on restore" not in stderr:
        detail = "; ".join(errors[:5]) or stderr.strip()[-2000:]
        raise ToolError(f"pg_restore into {target.dbname} failed: {detail}")
