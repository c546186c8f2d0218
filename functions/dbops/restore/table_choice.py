"""Which tables the requested names mean, in a backup's manifest or a database; whether the target has them."""

from __future__ import annotations

import difflib

from dbops.backup.catalog import IDENTITY_FORMAT, BackupManifest, TableStat
from dbops.errors import RestoreRefused
from dbops.postgres.connection import ConnectionSpec, connect
from dbops.restore.models import TablePlan
from dbops.restore.names import TableName, display, parse_table_name
from dbops.restore.parallel_load import whole_refused
from dbops.text import plural

# each (schema, name) asked, in order, with its relkind there (NULL: no such relation)
KINDS_OF_TABLES = (
    "SELECT c.relkind::text FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS t(nspname, relname, i) "
    "LEFT JOIN (pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace) "
    "ON n.nspname = t.nspname AND c.relname = t.relname ORDER BY t.i"
)


def plan_of(table: TableStat) -> TablePlan:
    return TablePlan(
        schema_name=table.schema_name, name=table.name, rows=table.rows, oid=table.oid, relkind=table.relkind
    )


def _find_table(text: str, tables: list[TableStat], where: str) -> TableStat:
    """The table of `where` (a backup, a database) an operator's name means: the exact spelling first, then with
    unquoted parts folded to lower case; a name without a schema means public's table, or the only one of that
    name."""
    try:
        wanted = parse_table_name(text)
    except ValueError as exc:
        raise RestoreRefused(str(exc)) from None
    by_name = {(t.schema_name, t.name): t for t in tables}
    for schema, name in wanted.spellings():
        if schema is not None:
            if (schema, name) in by_name:
                return by_name[(schema, name)]
            continue
        if ("public", name) in by_name:
            return by_name[("public", name)]
        found = [t for t in tables if t.name == name]
        if len(found) == 1:
            return found[0]
        if found:
            raise RestoreRefused(
                f"{text!r} is ambiguous in {where}: name the schema, one of "
                + ", ".join(display(t.schema_name, t.name) for t in found)
            )
    close = close_tables(wanted, tables)
    hint = f"; did you mean {', '.join(close)}?" if close else f" ({plural(len(tables), 'table')} in it)"
    raise RestoreRefused(f"{text!r} is not a table in {where}{hint}")


SUGGESTIONS, NAME_CUTOFF = 3, 0.6


def _likeness(typed: str, stored: str) -> float:
    return difflib.SequenceMatcher(None, typed.casefold(), stored.casefold()).ratio()


def close_tables(wanted: TableName, tables: list[TableStat]) -> list[str]:
    """At most 3 tables a mistyped name may have meant, ranked by the table part typed and then by the schema (a
    shared schema does not make an unrelated table look close): public's first when no schema was typed."""
    ranked = []
    for t in tables:
        name_score = _likeness(wanted.name, t.name)
        if name_score < NAME_CUTOFF:
            continue
        schema_score = _likeness(wanted.schema, t.schema_name) if wanted.schema else float(t.schema_name == "public")
        ranked.append((-name_score, -schema_score, display(t.schema_name, t.name)))
    return [shown for *_, shown in sorted(ranked)[:SUGGESTIONS]]


def resolve_tables(names: list[str], manifest: BackupManifest) -> list[TablePlan]:
    """The chosen tables, each followed by its partitions or inheritance children: a table as the application
    sees it (`SELECT * FROM parent` reads them all). A single partition or child restores by its own name."""
    if manifest.format_version < IDENTITY_FORMAT:
        raise RestoreRefused(
            f"backup {manifest.id} was taken by an older dbops that did not record which objects belong to each "
            "table, so its tables cannot be restored one by one: restore it whole into a new database "
            "(--target NAME) and copy the tables from there, or take a new backup"
        )
    return [plan_of(t) for t in resolve_names(names, manifest.tables, f"backup {manifest.id}")]


def whole_plan(manifest: BackupManifest) -> list[TablePlan]:
    """Every table of a backup that restores whole; a backup of some tables' rows only is refused."""
    if manifest.tables_only:
        raise RestoreRefused(whole_refused(manifest))
    return [plan_of(t) for t in manifest.tables]


def resolve_names(names: list[str], tables: list[TableStat], where: str) -> list[TableStat]:
    """The tables named (each followed by its partitions or inheritance children) among `tables` of `where`;
    RestoreRefused names what is wrong with a name."""
    children: dict[int, list[TableStat]] = {}
    for t in tables:
        for parent in t.parents:
            children.setdefault(parent, []).append(t)
    chosen: dict[int | None, TableStat] = {}
    for text in names:
        table = _find_table(text, tables, where)
        if table.relkind == "m":
            raise RestoreRefused(
                f"{display(table.schema_name, table.name)} is a materialized view: it is not restored by name but "
                "refreshed after the tables it reads are restored; name those tables"
            )
        todo = [table]
        while todo:
            t = todo.pop(0)
            if t.oid not in chosen:
                chosen[t.oid] = t
                todo.extend(children.get(t.oid or 0, []))
    return list(chosen.values())


def unrestorable_in(spec: ConnectionSpec, plans: list[TablePlan]) -> list[str]:
    """The planned tables that are missing in a database, or there of another kind, each with why."""
    kinds = {"r": "table", "p": "partitioned table"}
    with connect(spec) as conn:  # one query for them all
        found = conn.execute(KINDS_OF_TABLES, [[t.schema_name for t in plans], [t.name for t in plans]]).fetchall()
    problems = []
    for t, (relkind,) in zip(plans, found, strict=True):
        if relkind is None:
            problems.append(f"{t.qualified} (missing)")
        elif relkind != t.relkind:
            there = kinds.get(relkind, f"not a table (relkind {relkind})")
            problems.append(f"{t.qualified} (a {kinds[t.relkind]} in the backup, a {there} there)")
    return problems
