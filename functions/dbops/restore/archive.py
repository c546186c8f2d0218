"""The backup archive on local disk, and its table of contents filtered to chosen tables.

`pg_restore -t TABLE` restores a table and its data but not its indexes, so a selective restore keeps the
archive's own TOC entries that belong to the chosen tables (TABLE, TABLE DATA, CONSTRAINT, INDEX, DEFAULT,
SEQUENCE*, TRIGGER, ACL, COMMENT, POLICY ...) plus objects not attached to any table (schemas, types,
functions), and restores them with `pg_restore -L`. Foreign keys stay out of the scratch copy: the target
keeps its own and enforces them when the rows are swapped in.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dbops import stored
from dbops.catalog import StoredObject
from dbops.errors import ToolError, VerificationFailed
from dbops.pgtools import find_tool

# TOC descriptions that belong to one table (and are dropped when that table is not chosen)
TABLE_ATTACHED = {
    "TABLE",
    "TABLE DATA",
    "CONSTRAINT",
    "FK CONSTRAINT",
    "INDEX",
    "INDEX ATTACH",
    "DEFAULT",
    "TRIGGER",
    "POLICY",
    "ROW SECURITY",
    "RULE",
    "SEQUENCE",
    "SEQUENCE OWNED BY",
    "SEQUENCE SET",
    "STATISTICS",
    "VIEW",
    "MATERIALIZED VIEW",
    "MATERIALIZED VIEW DATA",
    "ACL",
    "COMMENT",
    "SECURITY LABEL",
    "PUBLICATION TABLE",
    "FOREIGN TABLE",
}
DESCRIPTIONS = sorted(
    TABLE_ATTACHED
    | {
        "SCHEMA",
        "EXTENSION",
        "TYPE",
        "DOMAIN",
        "FUNCTION",
        "PROCEDURE",
        "AGGREGATE",
        "COLLATION",
        "DEFAULT ACL",
        "ENCODING",
        "STDSTRINGS",
        "SEARCHPATH",
        "DATABASE",
        "DATABASE PROPERTIES",
        "PUBLICATION",
        "CAST",
        "OPERATOR",
        "EVENT TRIGGER",
        "LARGE OBJECT",
        "BLOB",
        "BLOBS",
    },
    key=len,
    reverse=True,
)
_ENTRY = re.compile(r"^(\d+); (\d+) (\d+) (.*)$")
_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_INDEX_ON = re.compile(rf"CREATE (?:UNIQUE )?INDEX ({_IDENT}) ON (?:ONLY )?({_IDENT})\.({_IDENT})")
_OWNED_BY = re.compile(rf"ALTER SEQUENCE ({_IDENT})\.({_IDENT}) OWNED BY ({_IDENT})\.({_IDENT})\.")
_IDENTITY = re.compile(
    rf"ALTER TABLE (?:ONLY )?({_IDENT})\.({_IDENT}) ALTER COLUMN {_IDENT} ADD GENERATED .*?SEQUENCE NAME "
    rf"({_IDENT})\.({_IDENT})",
    re.S,
)


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident


@dataclass(frozen=True)
class TocEntry:
    line: str
    desc: str
    schema: str
    tag: str


def download(bucket: str, obj: StoredObject, path: Path) -> Path:
    """Write the object to `path` decompressed, checking it against its manifest on the way."""
    try:
        with path.open("wb") as out:
            for data in stored.read_back(bucket, obj):
                out.write(data)
    except VerificationFailed as exc:
        path.unlink(missing_ok=True)
        raise VerificationFailed(f"archive s3://{bucket}/{obj.key} does not match its manifest: {exc}") from None
    return path


def _run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ToolError(f"{Path(argv[0]).name} could not read the archive: {done.stderr.strip()[-1000:]}")
    return done.stdout


def table_of_contents(archive: Path, pg_bin_dir: str | None = None) -> list[TocEntry]:
    entries = []
    for line in _run([str(find_tool("pg_restore", pg_bin_dir)), "--list", str(archive)]).splitlines():
        match = _ENTRY.match(line)
        if not match:
            continue
        rest = match.group(4)
        desc = next((d for d in DESCRIPTIONS if rest.startswith(d + " ")), rest.split(" ")[0])
        parts = rest[len(desc) + 1 :].split(" ")
        schema, tag = parts[0], " ".join(parts[1:-1])
        entries.append(TocEntry(line=line, desc=desc, schema=schema, tag=tag))
    return entries


def _owners(archive: Path, entries: list[TocEntry], scratch: Path, pg_bin_dir: str | None) -> dict[str, str]:
    """Which table each index and sequence belongs to, read from the archive's own DDL."""
    wanted = [e for e in entries if e.desc in ("INDEX", "SEQUENCE", "SEQUENCE OWNED BY")]
    if not wanted:
        return {}
    scratch.write_text("\n".join(e.line for e in wanted) + "\n")
    ddl = _run([str(find_tool("pg_restore", pg_bin_dir)), "--file=-", f"--use-list={scratch}", str(archive)])
    owner: dict[str, str] = {}
    for m in _INDEX_ON.finditer(ddl):
        owner[f"{_unquote(m.group(2))}.{_unquote(m.group(1))}"] = f"{_unquote(m.group(2))}.{_unquote(m.group(3))}"
    for m in _OWNED_BY.finditer(ddl):
        owner[f"{_unquote(m.group(1))}.{_unquote(m.group(2))}"] = f"{_unquote(m.group(3))}.{_unquote(m.group(4))}"
    for m in _IDENTITY.finditer(ddl):
        owner[f"{_unquote(m.group(3))}.{_unquote(m.group(4))}"] = f"{_unquote(m.group(1))}.{_unquote(m.group(2))}"
    return owner


def _belongs_to(entry: TocEntry, owners: dict[str, str]) -> str | None:
    """The schema.table an entry is attached to, or None when it is not attached to a table."""
    first = entry.tag.split(" ")[0]
    if entry.desc in (
        "TABLE",
        "TABLE DATA",
        "VIEW",
        "MATERIALIZED VIEW",
        "MATERIALIZED VIEW DATA",
        "FOREIGN TABLE",
        "ROW SECURITY",
    ):
        return f"{entry.schema}.{entry.tag}"
    if entry.desc in ("CONSTRAINT", "FK CONSTRAINT", "DEFAULT", "TRIGGER", "POLICY", "RULE"):
        return f"{entry.schema}.{first}"
    if entry.desc in ("INDEX", "SEQUENCE", "SEQUENCE OWNED BY", "SEQUENCE SET", "STATISTICS", "INDEX ATTACH"):
        return owners.get(f"{entry.schema}.{entry.tag}", f"?{entry.schema}.{entry.tag}")
    if entry.desc in ("ACL", "COMMENT", "SECURITY LABEL"):
        kind, _, name = entry.tag.partition(" ")
        if kind in ("TABLE", "VIEW", "MATERIALIZED VIEW", "FOREIGN TABLE"):
            return f"{entry.schema}.{name}"
        if kind == "SEQUENCE":
            return owners.get(f"{entry.schema}.{name}", f"?{entry.schema}.{name}")
        if kind == "COLUMN":
            return f"{entry.schema}.{name.rsplit('.', 1)[0]}"
        if kind == "INDEX":
            return owners.get(f"{entry.schema}.{name}", f"?{entry.schema}.{name}")
        return None
    return None


def selective_list(archive: Path, tables: list[str], work: Path, pg_bin_dir: str | None = None) -> Path:
    """Write a pg_restore -L list holding the chosen tables with everything attached to them."""
    entries = table_of_contents(archive, pg_bin_dir)
    owners = _owners(archive, entries, work / "owners.list", pg_bin_dir)
    chosen = set(tables)
    keep = []
    for entry in entries:
        owner = _belongs_to(entry, owners)
        if entry.desc == "FK CONSTRAINT":
            continue  # the target keeps and enforces its own foreign keys
        if owner is None or owner in chosen:
            keep.append(entry.line)
    path = work / "selective.list"
    path.write_text("\n".join(keep) + "\n")
    return path
