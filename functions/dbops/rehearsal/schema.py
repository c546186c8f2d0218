"""The schema as `pg_dump --schema-only` writes it, normalized, and what differs between two of them.

Both dumps come from the same scratch database (before the upgrade, after the downgrade), so only what changes
from one pg_dump run to the next is dropped: comment lines, pg_dump 17.6+/18's `\\restrict KEY` / `\\unrestrict KEY`
lines (a random key per run), and runs of blank lines. `SET` lines stay: they are the same every run, and a
`SET default_tablespace` before a table is part of where it lives (compared with each table and index it applies
to, not where pg_dump happened to write it). The migration tool's version table is left out
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
from typing import Literal

from dbops.errors import ToolError
from dbops.postgres.connection import ConnectionSpec, connect, server_version_num
from dbops.postgres.tools import find_tool, require_compatible, tool_version
from dbops.rehearsal.models import SchemaCheck, SchemaObjectChange

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


# pg_dump's header of each object it writes (the name is the object's tag, unquoted)
_HEADER = re.compile(r"^-- Name: (.*); Type: ([^;]*); Schema: ([^;]*)(?:; Owner: [^;]*)?(?:; Tablespace: [^;]*)?$")
_IDENT = r'(?:"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*)'
_QUALIFIED = re.compile(rf"(?<![\w$\"]){_IDENT}\.{_IDENT}(?![\w$])")
PREAMBLE = "SETTINGS"  # what pg_dump writes before its first object (SET lines)


# settings pg_dump writes only where they change, after the header of the table or index they apply to: whether
# an object's definition holds such a line depends on the objects before it (a new table sorted first takes it),
# so each table and index carries the ones in force for it instead
_PLACEMENT = re.compile(r"^SET (default_table_access_method|default_tablespace) = .*;$")
_PLACED_KINDS = ("TABLE", "MATERIALIZED VIEW", "INDEX")


def _objects(text: str) -> dict[tuple[str, str, str], list[str]]:
    """The dump's objects by (type, schema, tag) in the dump's order, each with its normalized definition; the
    `-- Name: ...; Type: ...` headers outside quoted text delimit them."""
    raw = text.splitlines()
    chunks: dict[tuple[str, str, str], list[str]] = {(PREAMBLE, "-", ""): []}
    key: tuple[str, str, str] = (PREAMBLE, "-", "")
    placement: dict[str, str] = {}

    def settle() -> None:  # the object now complete: the placement settings in force for it after it
        if key[0] in _PLACED_KINDS:
            chunks[key].extend(placement[s] for s in sorted(placement))

    for line, quoted in zip(raw, _in_quotes(raw), strict=True):
        setting = None if quoted else _PLACEMENT.match(line)
        if setting is not None:
            placement[setting.group(1)] = line
            continue
        header = None if quoted else _HEADER.match(line)
        if header is None:
            chunks[key].append(line)
            continue
        settle()
        name, kind, schema = header.groups()
        key, n = (kind, schema, name), 1
        while key in chunks:  # the same header twice: keep both
            n += 1
            key = (kind, schema, f"{name} #{n}")
        chunks[key] = []
    settle()
    return {k: normalize("\n".join(lines)) for k, lines in chunks.items()}


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident


def _quote(part: str) -> str:
    plain = re.fullmatch(r"[a-z_][a-z0-9_$]*", part) is not None
    return part if plain else '"' + part.replace('"', '""') + '"'


def _label(key: tuple[str, str, str], definition: list[str]) -> str:
    """`TYPE schema.name`, the name quoted as PostgreSQL quotes it: as the definition writes it (pg_dump quotes
    as quote_ident does, keywords too), else each part quoted unless plain lower case."""
    kind, schema, name = key
    if kind == PREAMBLE:
        return "the dump's settings (SET lines)"
    if schema == "-":
        return f"{kind} {name}"
    for line in definition:
        for match in _QUALIFIED.finditer(line):
            written = match.group(0)
            found_schema, found = _parts(written)
            if found_schema != schema:
                continue
            if found == name:
                return f"{kind} {written}"
            if name.startswith(f"{found}("):  # a function's signature
                return f"{kind} {written}{name[len(found) :]}"
            if name.startswith(f"{found} "):  # `table constraint`, `table trigger`, `table column` (DEFAULT)
                return f"{kind} {_quote(name[len(found) + 1 :])} ON {written}"
    if " " in name or "(" in name:  # a tag of several words (`table constraint`) or a signature: as pg_dump wrote it
        return f"{kind} {_quote(schema)}.{name}"
    return f"{kind} {_quote(schema)}.{_quote(name)}"


def _parts(qualified: str) -> list[str]:
    return [_unquote(m.group(0)) for m in re.finditer(_IDENT, qualified)]


def _trim(line: str) -> str:
    return line.strip().rstrip(",;")


def _lines_changed(old: list[str], new: list[str]) -> list[str]:
    """An object's definition's changed lines, `- old` and `+ new`; a line that only gained or lost its trailing
    comma (the line before an added column) is no change."""
    lines = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        gone = [_trim(line) for line in old[i1:i2] if line.strip()]
        came = [_trim(line) for line in new[j1:j2] if line.strip()]
        lines += [f"- {line}" for line in gone if line not in came]
        lines += [f"+ {line}" for line in came if line not in gone]
    return lines


# the statement by which an object of pg_dump's belongs to a table: its qualified name is the first one in it
_OF_TABLE = re.compile(
    r"^(?:ALTER (?:TABLE|FOREIGN TABLE|VIEW|MATERIALIZED VIEW) (?:ONLY )?(?:IF EXISTS )?"
    r"|CREATE (?:UNIQUE )?INDEX .*? ON (?:ONLY )?"
    r"|CREATE (?:OR REPLACE )?(?:CONSTRAINT )?TRIGGER .*? ON "
    r"|CREATE POLICY .*? ON "
    r"|CREATE (?:OR REPLACE )?RULE .*? TO "
    r"|COMMENT ON (?:TABLE|COLUMN|FOREIGN TABLE|VIEW|MATERIALIZED VIEW) "
    r"|(?:GRANT|REVOKE) .*? ON TABLE "
    r"|ALTER SEQUENCE .*? OWNED BY "
    r")(?P<name>" + _IDENT + r"\." + _IDENT + r")"
)
_OF_SEQUENCE = re.compile(
    r"^(?:CREATE SEQUENCE |ALTER SEQUENCE |COMMENT ON SEQUENCE |(?:GRANT|REVOKE) .*? ON SEQUENCE )"
    r"(?:IF NOT EXISTS )?(?P<name>" + _IDENT + r"\." + _IDENT + r")"
)
_OWNED_BY = re.compile(
    r"^ALTER SEQUENCE (" + _IDENT + r"\." + _IDENT + r") OWNED BY (" + _IDENT + r"\." + _IDENT + r")"
)
_TABLE_KINDS = ("TABLE", "FOREIGN TABLE", "VIEW", "MATERIALIZED VIEW")

Key = tuple[str, str, str]


def _statement(definition: list[str]) -> str:
    """An object's statement on one line (its settings left out)."""
    return " ".join(line.strip() for line in definition if line.strip() and not line.startswith("SET "))


def _owners(objects: dict[Key, list[str]]) -> dict[Key, Key]:
    """Each object that belongs to a table of the dump (its constraints, indexes, triggers, policies, rules,
    comments, grants, its column defaults and identity, a sequence it owns and that sequence's own objects): the
    table's key."""
    tables = {(schema, name): key for key in objects for kind, schema, name in [key] if kind in _TABLE_KINDS}
    owned: dict[tuple[str, ...], tuple[str, ...]] = {}  # a sequence's name parts -> its table's
    for definition in objects.values():
        match = _OWNED_BY.match(_statement(definition))
        if match:
            owned[tuple(_parts(match.group(1)))] = tuple(_parts(match.group(2)))
    owners: dict[Key, Key] = {}
    for key, definition in objects.items():
        if key[0] in _TABLE_KINDS or key[0] == PREAMBLE:
            continue
        statement = _statement(definition)
        of_table = _OF_TABLE.match(statement)
        name = tuple(_parts(of_table.group("name"))) if of_table else None
        if of_table is None:
            of_sequence = _OF_SEQUENCE.match(statement)
            name = owned.get(tuple(_parts(of_sequence.group("name")))) if of_sequence else None
        if name is not None and len(name) == 2 and (name[0], name[1]) in tables:
            owners[key] = tables[(name[0], name[1])]
    return owners


def compare(before: str, after: str) -> SchemaCheck:
    """Whether two dumps hold the same schema; if not, each object added, removed or changed, once, with its
    definition's lines that differ, and the diff."""
    old, new = normalize(before), normalize(after)
    if old == new:
        return SchemaCheck(compared=True, identical=True)
    old_objects, new_objects = _objects(before), _objects(after)
    owners = {**_owners(old_objects), **_owners(new_objects)}
    found: dict[Key, SchemaObjectChange] = {}
    for key in [*old_objects, *(k for k in new_objects if k not in old_objects)]:
        was, now = old_objects.get(key), new_objects.get(key)
        if was == now:
            continue
        change: Literal["added", "removed", "changed"] = (
            "added" if was is None else "removed" if now is None else "changed"
        )
        lines = _lines_changed(was or [], now or [])
        if lines:  # else only blank lines moved
            found[key] = SchemaObjectChange(change=change, object=_label(key, now or was or []), lines=lines)
    # a table added or removed whole is one object: what belongs to it (its sequence, key, indexes...) with it
    for key, owner in owners.items():
        table = found.get(owner)
        if key in found and table is not None and table.change == found[key].change != "changed":
            table.lines += found.pop(key).lines
    objects = list(found.values())
    diff = list(difflib.unified_diff(old, new, "before the upgrade", "after the downgrade", lineterm=""))
    if len(diff) > MAX_DIFF_LINES:
        diff = [*diff[:MAX_DIFF_LINES], f"... {len(diff) - MAX_DIFF_LINES} more lines"]
    changes = [f"{o.change} {o.object}" for o in objects] or ["the dumps differ in their layout only"]
    return SchemaCheck(compared=True, identical=False, changes=changes, objects=objects, diff=diff)
