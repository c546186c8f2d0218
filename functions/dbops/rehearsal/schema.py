"""The schema as `pg_dump --schema-only` writes it, normalized, and what differs between two of them.

Both dumps come from the same scratch database (before the upgrade, after the downgrade), so only what changes
from one pg_dump run to the next is dropped: comment lines, pg_dump 17.6+/18's `\\restrict KEY` / `\\unrestrict KEY`
lines (a random key per run), and runs of blank lines. `SET` lines stay: they are the same every run, and a
`SET default_tablespace` before a table is part of where it lives. The migration tool's version table is left out
(its rows are the revision; a downgrade to base leaves the empty table behind, which is no schema change of the
application's); the revision itself is compared on its own.

Lines inside quoted text (a function's body between dollar quotes, a string spanning lines) are the object's
content, whatever they begin with: never dropped as comments, never taken for the start of a statement (a body's
`BEGIN`, `END` or `-- note` at the start of a line).
"""

from __future__ import annotations

import difflib
import re
import subprocess

from dbops.errors import ToolError
from dbops.postgres.connection import ConnectionSpec, connect, server_version_num
from dbops.postgres.tools import find_tool, require_compatible, tool_version
from dbops.rehearsal.models import SchemaCheck

MAX_DIFF_LINES = 400


def dump_schema(spec: ConnectionSpec, pg_bin_dir: str | None = None, exclude_table: str | None = None) -> str:
    """The database's schema as SQL (pg_dump --schema-only); ToolError with pg_dump's own message."""
    pg_dump = tool_version(find_tool("pg_dump", pg_bin_dir))
    with connect(spec) as conn:
        require_compatible(pg_dump, server_version_num(conn), spec.dbname)
    argv = [str(pg_dump.path), "--schema-only", "--no-password"]
    if exclude_table:
        argv.append(f"--exclude-table={table_pattern(exclude_table)}")
    done = subprocess.run(argv, env=spec.libpq_env(), capture_output=True, check=False)
    if done.returncode != 0:
        raise ToolError(
            f"pg_dump --schema-only of {spec.dbname} failed: {done.stderr.decode(errors='replace').strip()[-1000:]}"
        )
    return done.stdout.decode()


# what opens quoted text outside of it: a comment (the rest of the line), a quoted name, a string, a dollar quote
_OPENING = re.compile(r"--|\"|'|(?<![\w$])\$(?:[A-Za-z_]\w*)?\$")


def _open_after(line: str, inside: str | None) -> str | None:
    """The quote still open at the end of `line` (`'`, `"` or a `$tag$`), given the one open at its start."""
    pos = 0
    while True:
        if inside is None:
            match = _OPENING.search(line, pos)
            if match is None or match.group(0) == "--":
                return None
            inside, pos = match.group(0), match.end()
            continue
        end = line.find(inside, pos)
        if end < 0:
            return inside
        if inside in ("'", '"') and line.startswith(inside, end + 1):
            pos = end + 2  # a doubled quote: still inside
        else:
            pos = end + len(inside)
            inside = None


def _in_quotes(lines: list[str]) -> list[bool]:
    """For each line, whether it begins inside quoted text (a function's body, a string spanning lines)."""
    flags, inside = [], None
    for line in lines:
        flags.append(inside is not None)
        inside = _open_after(line, inside)
    return flags


def table_pattern(table: str) -> str:
    """A pg_dump pattern for exactly this table: `name` in any schema, or `schema.name`; each part matched as it is
    spelled (quoted: case, dots and pattern characters taken literally)."""
    parts = table.split(".", 1)
    quoted = ['"' + part.replace('"', '""') + '"' for part in parts]
    return ".".join(quoted) if len(parts) == 2 else f"*.{quoted[0]}"


def normalize(text: str) -> list[str]:
    """The dump's lines without what differs from run to run (see the module's docstring)."""
    raw = text.splitlines()
    lines: list[str] = []
    for line, quoted in zip(raw, _in_quotes(raw), strict=True):
        if not quoted:
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


def _starts(lines: list[str]) -> list[bool]:
    """For each line, whether it starts a statement (at the start of the line, outside quoted text)."""
    return [not quoted and _starts_statement(line) for line, quoted in zip(lines, _in_quotes(lines), strict=True)]


def _owners(lines: list[str], starts: list[bool]) -> list[str]:
    """For each line, the statement it belongs to: the last line before it (or itself) that starts one."""
    owners, current = [], ""
    for line, start in zip(lines, starts, strict=True):
        if start:
            current = _header(line)
        owners.append(current)
    return owners


def _change(sign: str, line: str, owner: str, start: bool) -> str:
    if start:
        return f"{sign} {_header(line)}"
    return f"{sign} {line.strip().rstrip(',;')} (in {owner})"


def compare(before: str, after: str) -> SchemaCheck:
    """Whether two dumps hold the same schema; if not, each changed line with the statement it is in, and the diff."""
    old, new = normalize(before), normalize(after)
    if old == new:
        return SchemaCheck(compared=True, identical=True)
    old_starts, new_starts = _starts(old), _starts(new)
    old_owner, new_owner = _owners(old, old_starts), _owners(new, new_starts)
    changes = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        changes += [_change("-", old[i], old_owner[i], old_starts[i]) for i in range(i1, i2) if old[i]]
        changes += [_change("+", new[j], new_owner[j], new_starts[j]) for j in range(j1, j2) if new[j]]
    diff = list(difflib.unified_diff(old, new, "before the upgrade", "after the downgrade", lineterm=""))
    if len(diff) > MAX_DIFF_LINES:
        diff = [*diff[:MAX_DIFF_LINES], f"... {len(diff) - MAX_DIFF_LINES} more lines"]
    return SchemaCheck(compared=True, identical=False, changes=changes, diff=diff)
