"""The backup archive on local disk, and its table of contents filtered to chosen tables.

`pg_restore -t TABLE` restores a table and its data but not its indexes, so a selective restore keeps the
archive's own TOC entries of the chosen tables and restores them with `pg_restore -L`. Entries are chosen by
identity, never by parsing names: each TOC line carries its catalog OID, and the backup's manifest records,
from the backup's own snapshot, which catalog objects belong to each table. `pg_restore --list --verbose`
adds each entry's dependencies, which decide the rest:

- kept: the chosen tables' entries, and everything they need (a schema, a type, a function, the partitioned
  or inheritance parent a chosen child is created under: its definition only, never its rows);
- dropped: entries of other tables, everything that depends on them (a view, a function over their row type,
  their comments and grants), foreign keys (the target keeps and enforces its own when rows are swapped in),
  and large objects (they belong to no table);
- kept: everything else (schemas, types, functions, extensions), as the whole archive would restore it.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dbops.backup import stored
from dbops.backup.catalog import StoredObject, TableStat
from dbops.errors import ToolError, VerificationFailed
from dbops.postgres.tools import find_tool

PG_CLASS = 1259  # pg_class's own OID: the catalog of tables, indexes and sequences
# never restored into a selective restore's scratch copy
LEFT_OUT = ("FK CONSTRAINT", "LARGE OBJECT", "BLOB", "BLOBS", "BLOB METADATA")
_ENTRY = re.compile(r"^(\d+); (\d+) (\d+) (.*)$")
_DEPENDS = re.compile(r"^;\s+depends on:((?: \d+)*)\s*$")


Progress = Callable[[str, int], None]  # (what, bytes done so far)
Counted = Callable[[int], None]  # bytes just done


class ByteCount:
    """Bytes done by several threads at once, reported to `progress` as one running total."""

    def __init__(self, progress: Progress | None, what: str) -> None:
        self.progress, self.what = progress, what
        self.done = 0
        self._lock = threading.Lock()

    def __call__(self, count: int) -> None:
        with self._lock:
            self.done += count
            if self.progress is not None:
                self.progress(self.what, self.done)


@dataclass
class TocEntry:
    line: str
    dump_id: int
    catalog: int  # the catalog (pg_class, pg_constraint, ...) the object's OID is in; 0 for data and some others
    oid: int
    desc_and_name: str
    depends_on: list[int] = field(default_factory=list)

    @property
    def identity(self) -> tuple[int, int] | None:
        """(catalog, OID) of the object; a table's data (TABLE DATA, MATERIALIZED VIEW DATA, ROW SECURITY)
        carries the table's OID with catalog 0, and counts as the table's."""
        if self.oid == 0:
            return None
        return (self.catalog or PG_CLASS, self.oid)

    @property
    def left_out(self) -> bool:
        return any(self.desc_and_name.startswith(desc + " ") for desc in LEFT_OUT)


def download(bucket: str, obj: StoredObject, path: Path, counted: Counted | None = None) -> Path:
    """Write the object to `path` decompressed, checking it against its manifest on the way; `counted(bytes)` as
    it writes."""
    try:
        with path.open("wb") as out:
            for data in stored.read_back(bucket, obj):
                out.write(data)
                if counted is not None:
                    counted(len(data))
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
    """The archive's TOC entries with their dependencies (`--verbose` lists them under each entry)."""
    entries: list[TocEntry] = []
    argv = [str(find_tool("pg_restore", pg_bin_dir)), "--list", "--verbose", str(archive)]
    for line in _run(argv).splitlines():
        if match := _ENTRY.match(line):
            dump_id, catalog, oid, rest = match.groups()
            entries.append(TocEntry(line, int(dump_id), int(catalog), int(oid), rest))
        elif entries and (deps := _DEPENDS.match(line)):
            entries[-1].depends_on = [int(d) for d in deps.group(1).split()]
    return entries


def _closure(start: Iterable[int], edges: dict[int, list[int]]) -> set[int]:
    seen: set[int] = set()
    todo = list(start)
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(edges.get(node, ()))
    return seen


def select_entries(entries: list[TocEntry], tables: list[TableStat], chosen: set[int]) -> list[TocEntry]:
    """The entries a scratch copy of the `chosen` tables (pg_class OIDs) needs, in archive order."""
    owner: dict[tuple[int, int], int] = {}
    for table in tables:
        assert table.oid is not None
        owner[(PG_CLASS, table.oid)] = table.oid
        for catalog, oid in table.objects:
            owner[(catalog, oid)] = table.oid

    def table_of(entry: TocEntry) -> int | None:
        return owner.get(entry.identity) if entry.identity else None

    # a chosen child inherits its ancestors' CHECK constraints; those dumped apart from the parent's own
    # definition (NOT VALID ones) come along, or the child would miss them
    parents = {t.oid: t.parents for t in tables if t.oid is not None}
    ancestors = _closure((p for oid in chosen for p in parents.get(oid, [])), parents) - chosen
    own = [
        e.dump_id
        for e in entries
        if not e.left_out
        and (table_of(e) in chosen or (table_of(e) in ancestors and e.desc_and_name.startswith("CHECK CONSTRAINT ")))
    ]
    needed = _closure(own, {e.dump_id: e.depends_on for e in entries})
    dropped_seed = [
        e.dump_id
        for e in entries
        if e.left_out or (table_of(e) is not None and table_of(e) not in chosen and e.dump_id not in needed)
    ]
    dependents: dict[int, list[int]] = {}
    for e in entries:
        for dep in e.depends_on:
            dependents.setdefault(dep, []).append(e.dump_id)
    dropped = _closure(dropped_seed, dependents) - needed
    return [e for e in entries if e.dump_id not in dropped]


def selective_list(
    archive: Path, tables: list[TableStat], chosen: set[int], work: Path, pg_bin_dir: str | None = None
) -> Path:
    """Write a pg_restore -L list holding the chosen tables with what they need (see the module's docstring)."""
    keep = select_entries(table_of_contents(archive, pg_bin_dir), tables, chosen)
    path = work / "selective.list"
    path.write_text("".join(e.line + "\n" for e in keep))
    return path


def restore_jobs(tables: list[TableStat], jobs: int, chosen: set[int] | None = None) -> int:
    """pg_restore's jobs for an archive of these tables: one where it holds a partitioned table, whose indexes,
    partition attachments and foreign keys parallel jobs create in no fixed order and can deadlock on (seen on
    PostgreSQL 15 and 18 in the corpus); `jobs` otherwise, and no more than the tables restored (`chosen`, pg_class
    OIDs: a selective restore's), each of which a job's process and connection would otherwise wait beside."""
    if any(t.relkind == "p" for t in tables):
        return 1
    return jobs if chosen is None else max(1, min(jobs, len(chosen)))
