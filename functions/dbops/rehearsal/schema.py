"""The schema as `pg_dump --schema-only` writes it, normalized, and what differs between two of them.

Both dumps come from the same scratch database (before the upgrade, after the downgrade), so only what changes
from one pg_dump run to the next is dropped: comment lines, pg_dump 17.6+/18's `\\restrict KEY` / `\\unrestrict KEY`
lines (a random key per run), and runs of blank lines. `SET` lines stay: they are the same every run, and a
`SET default_tablespace` before a table is part of where it lives. The migration tool's version table is left out
(its rows are the revision; a downgrade to base leaves the empty table behind, which is no schema change of the
application's); the revision itself is compared on its own.
"""

from __future__ import annotations

import difflib
import subprocess

from dbops.connection import ConnectionSpec, connect, server_version_num
from dbops.errors import ToolError
from dbops.pgtools import find_tool, require_compatible, tool_version
from dbops.rehearsal.models import SchemaCheck

MAX_DIFF_LINES = 400


def dump_schema(spec: ConnectionSpec, pg_bin_dir: str | None = None, exclude_table: str | None = None) -> str:
    """The database's schema as SQL (pg_dump --schema-only); ToolError with pg_dump's own message."""
    pg_dump = tool_version(find_tool("pg_dump", pg_bin_dir))
    with connect(spec) as conn:
        require_compatible(pg_dump, server_version_num(conn), spec.dbname)
    argv = [str(pg_dump.path), "--schema-only", "--no-password"]
    if exclude_table:
        argv.append(f"--exclude-table=*.{exclude_table}")
    done = subprocess.run(argv, env=spec.libpq_env(), capture_output=True, check=False)
    if done.returncode != 0:
        raise ToolError(
            f"pg_dump --schema-only of {spec.dbname} failed: {done.stderr.decode(errors='replace').strip()[-1000:]}"
        )
    return done.stdout.decode()


def normalize(text: str) -> list[str]:
    """The dump's lines without what differs from run to run (see the module's docstring)."""
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("--") or line.startswith("\\restrict ") or line.startswith("\\unrestrict "):
            continue
        if not line.strip():
            if lines and lines[-1] == "":
                continue
            line = ""
        lines.append(line.rstrip())
    while lines and lines[0] == "":
        lines.pop(0)
    while lines and lines[-1] == "":
        lines.pop()
    return lines


def _starts_statement(line: str) -> bool:
    return bool(line) and not line[0].isspace() and not line.startswith(")")


def _header(line: str) -> str:
    return line.removesuffix(" (").rstrip(";")


def _owners(lines: list[str]) -> list[str]:
    """For each line, the statement it belongs to: the last line before it (or itself) that starts one."""
    owners, current = [], ""
    for line in lines:
        if _starts_statement(line):
            current = _header(line)
        owners.append(current)
    return owners


def _change(sign: str, line: str, owner: str) -> str:
    if _starts_statement(line):
        return f"{sign} {_header(line)}"
    return f"{sign} {line.strip().rstrip(',;')} (in {owner})"


def compare(before: str, after: str) -> SchemaCheck:
    """Whether two dumps hold the same schema; if not, each changed line with the statement it is in, and the diff."""
    old, new = normalize(before), normalize(after)
    if old == new:
        return SchemaCheck(compared=True, identical=True)
    old_owner, new_owner = _owners(old), _owners(new)
    changes = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        changes += [_change("-", old[i], old_owner[i]) for i in range(i1, i2) if old[i]]
        changes += [_change("+", new[j], new_owner[j]) for j in range(j1, j2) if new[j]]
    diff = list(difflib.unified_diff(old, new, "before the upgrade", "after the downgrade", lineterm=""))
    if len(diff) > MAX_DIFF_LINES:
        diff = [*diff[:MAX_DIFF_LINES], f"... {len(diff) - MAX_DIFF_LINES} more lines"]
    return SchemaCheck(compared=True, identical=False, changes=changes, diff=diff)
