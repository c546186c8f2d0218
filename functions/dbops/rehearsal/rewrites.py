"""The database's relations before and after the command: names and sizes for the report, and the tables the
command rewrote.

A rewrite gives a relation new storage: its `relfilenode` changes while its OID stays (ALTER COLUMN ... TYPE that
is not binary-coercible, ADD COLUMN with a volatile default, VACUUM FULL, CLUSTER, TRUNCATE; the table's indexes
are rebuilt with it). Comparing every user table's and index's relfilenode before and after is exact, whatever
statement did it and however short it was.

Relations are named `schema.name` with each part quoted as PostgreSQL quotes it (`quote_ident`: `public.orders`,
`"Sales Ops"."Order Items"`, `"a.b"."c.d"`), so a name in the report is unambiguous and can be pasted into SQL.
"""

from __future__ import annotations

from dataclasses import dataclass

from dbops.postgres.connection import ConnectionSpec, connect
from dbops.rehearsal.models import RewrittenTable

KINDS = {
    "r": "table",
    "p": "partitioned table",
    "m": "materialized view",
    "i": "index",
    "I": "partitioned index",
    "S": "sequence",
    "v": "view",
    "f": "foreign table",
    "c": "composite type",
}

RELATIONS = """
SELECT c.oid::int8, n.nspname, c.relname, c.relkind::text, c.relfilenode::int8,
       CASE WHEN c.relkind IN ('r', 'm', 'p') THEN pg_total_relation_size(c.oid) ELSE pg_relation_size(c.oid) END,
       i.indrelid::int8, format('%I.%I', n.nspname, c.relname),
       array_remove(ARRAY[c.reltoastrelid::int8, (SELECT x.indexrelid::int8 FROM pg_index x
                                                  WHERE c.reltoastrelid <> 0 AND x.indrelid = c.reltoastrelid
                                                  LIMIT 1)], NULL)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_index i ON i.indexrelid = c.oid
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  AND c.relkind IN ('r', 'p', 'm', 'i', 'I', 'S', 'v', 'f')
"""


@dataclass(frozen=True)
class Relation:
    oid: int
    schema: str
    name: str
    relkind: str
    filenode: int
    bytes: int
    table_oid: int | None  # an index's table
    qualified: str  # schema.name, each part quoted when it needs it, as PostgreSQL quotes it (quote_ident)
    toast: tuple[int, ...] = ()  # its TOAST table's and TOAST index's OIDs (pg_toast: not relations of their own here)

    @property
    def kind(self) -> str:
        return KINDS.get(self.relkind, f"relkind {self.relkind}")


Relations = dict[int, Relation]


def snapshot(spec: ConnectionSpec) -> Relations:
    """Every user relation of the database by OID, with its storage (relfilenode) and size now."""
    with connect(spec, statement_timeout_ms=0) as conn:
        rows = conn.execute(RELATIONS).fetchall()
    return {
        int(r[0]): Relation(
            int(r[0]),
            r[1],
            r[2],
            r[3],
            int(r[4]),
            int(r[5] or 0),
            int(r[6]) if r[6] else None,
            str(r[7]),
            tuple(int(o) for o in r[8] if o),
        )
        for r in rows
    }


def name_parts(qualified: str) -> list[str]:
    """The parts of a name quoted as `Relation.qualified` is: `"a.b"."c.d"` → ["a.b", "c.d"] (a dot inside double
    quotes is part of the name, a doubled double quote is one)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    i = 0
    while i < len(qualified):
        ch = qualified[i]
        if quoted and ch == '"' and qualified[i + 1 : i + 2] == '"':
            current.append('"')
            i += 1
        elif ch == '"':
            quoted = not quoted
        elif ch == "." and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def storage_of(oid: int, relations: Relations) -> tuple[Relation, str] | None:
    """The table whose storage a relation of no name here is, and what it is to it: its TOAST table or index, or
    the new heap a rewrite built (ALTER TABLE ... TYPE, VACUUM FULL, CLUSTER make a transient table, named
    `pg_temp_<table oid>` in pg_class, but visible to no other session before it commits and dropped before then;
    its storage is swapped into the table, whose relfilenode is then the transient table's OID)."""
    for rel in relations.values():
        if oid in rel.toast:
            return rel, "its TOAST storage"
    for rel in relations.values():
        if rel.filenode == oid and rel.oid != oid and rel.relkind in ("r", "m"):
            return rel, "its new storage (a rewrite's transient table)"
    return None


def table_of(relation: Relation, relations: Relations) -> Relation:
    """The table an index belongs to; any other relation is its own."""
    if relation.table_oid is not None and relation.table_oid in relations:
        return relations[relation.table_oid]
    return relation


def _rebuilt(before: Relations, after: Relations) -> list[tuple[Relation, Relation]]:
    """Indexes dropped and created again under the same name (ALTER COLUMN ... TYPE rebuilds an index on the
    column as a new index): (before, after) pairs."""
    created = {r.qualified: r for oid, r in after.items() if oid not in before and r.relkind in ("i", "I")}
    return [
        (r, created[r.qualified])
        for oid, r in before.items()
        if oid not in after and r.relkind in ("i", "I") and r.qualified in created
    ]


def rewritten(before: Relations, after: Relations) -> list[RewrittenTable]:
    """Tables (and indexes rebuilt alone) whose storage changed, each with its indexes rebuilt with it."""
    changed = [
        rel for oid, rel in before.items() if oid in after and rel.filenode != 0 and after[oid].filenode != rel.filenode
    ]
    changed += [old for old, _ in _rebuilt(before, after)]
    by_table: dict[int, RewrittenTable] = {}
    for rel in sorted(changed, key=lambda r: (r.relkind != "r", r.qualified)):
        table = table_of(rel, before)
        entry = by_table.get(table.oid)
        if entry is None:
            entry = by_table[table.oid] = RewrittenTable(
                table=table.qualified,
                bytes_before=table.bytes,
                bytes_after=after[table.oid].bytes if table.oid in after else None,
                table_rewritten=False,
            )
        if rel.oid == table.oid:
            entry.table_rewritten = True
        else:
            entry.indexes.append(rel.qualified)
    return sorted(by_table.values(), key=lambda t: -t.bytes_before)


def created_and_dropped(before: Relations, after: Relations) -> tuple[list[str], list[str]]:
    """Relations the command created and dropped, by kind and name; an index rebuilt under its own name is
    neither (it is listed with its table's rewrite)."""
    rebuilt = {old.oid for old, _ in _rebuilt(before, after)} | {new.oid for _, new in _rebuilt(before, after)}
    created = sorted(f"{r.kind} {r.qualified}" for oid, r in after.items() if oid not in before and oid not in rebuilt)
    dropped = sorted(f"{r.kind} {r.qualified}" for oid, r in before.items() if oid not in after and oid not in rebuilt)
    return created, dropped
