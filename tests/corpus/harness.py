"""The corpus harness: load a schema file, list its tables, fingerprint their content and snapshot their structure,
damage a table for real (and only that table), check materialized views, and compare plain dumps.

Names are composed with psycopg's `sql.Identifier`, never by string formatting: the corpus is full of names that
need quoting.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from dbops.postgres.connection import ConnectionSpec, connect
from dbops.postgres.pgrestore import run_pg_restore
from dbops.postgres.tools import find_tool

TableKey = tuple[str, str]  # (schema, name)
Fingerprint = tuple[int, str]  # (rows, md5 of the rows in key order)

ROW = sql.Identifier("_corpus_row")  # the alias a table's rows are read under (no corpus column has this name)
SYSTEM_SCHEMAS = sql.SQL(
    "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%%' "
    "AND n.nspname NOT LIKE 'pg\\_temp%%'"
)


class HarnessError(RuntimeError):
    """The harness could not do what a test asked of it (not a finding about the restore)."""


@dataclass(frozen=True, order=True)
class Table:
    schema: str
    name: str
    kind: str  # 'r' (a table or a leaf partition) or 'p' (a partitioned table)

    @property
    def key(self) -> TableKey:
        return (self.schema, self.name)

    @property
    def quoted(self) -> str:
        return psql_name(self.schema, self.name)

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)


def psql_name(schema: str, name: str) -> str:
    """`"schema"."table"`, each part in double quotes with inner double quotes doubled (as psql reads it)."""
    return '"' + schema.replace('"', '""') + '"."' + name.replace('"', '""') + '"'


# ---------------------------------------------------------------------------------------------------------------
# databases


def required_extensions(schema_file: Path) -> list[str]:
    """Extensions a schema file creates."""
    found = re.findall(r"CREATE EXTENSION (?:IF NOT EXISTS )?\"?([A-Za-z0-9_]+)", schema_file.read_text(), re.I)
    return sorted(set(found))


def missing_extensions(spec: ConnectionSpec, names: list[str]) -> list[str]:
    if not names:
        return []
    with connect(spec) as conn:
        available = {r[0] for r in conn.execute("SELECT name FROM pg_available_extensions").fetchall()}
    return [n for n in names if n not in available]


def create_database(admin: ConnectionSpec, name: str, template: str = "template0") -> ConnectionSpec:
    with connect(admin.for_database("postgres")) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    return admin.for_database(name)


def drop_database(admin: ConnectionSpec, name: str) -> None:
    with connect(admin.for_database("postgres")) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def load_schema(admin: ConnectionSpec, schema_file: Path, dbname: str) -> ConnectionSpec:
    """A fresh database holding the schema file, loaded by psql as an operator would (stopping at the first error)."""
    spec = create_database(admin, dbname)
    done = subprocess.run(
        [str(find_tool("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dbname, "-f", str(schema_file)],
        env=spec.libpq_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise HarnessError(f"loading {schema_file.name} into {dbname} failed: {done.stderr.strip()}")
    with connect(spec) as conn:
        conn.execute("ANALYZE")
    return spec


def copy_database(source: ConnectionSpec, dbname: str) -> ConnectionSpec:
    """A copy made by hand the plain way: `pg_dump -Fc source | pg_restore -d copy`."""
    dump = subprocess.run(
        [str(find_tool("pg_dump")), "--no-password", "--format=custom", f"--dbname={source.dbname}"],
        env=source.libpq_env(),
        capture_output=True,
        check=False,
    )
    if dump.returncode != 0:
        raise HarnessError(f"pg_dump of {source.dbname} failed: {dump.stderr.decode(errors='replace')}")
    copy = create_database(source, dbname)
    run_pg_restore(copy, [], stdin=dump.stdout)  # tolerates only pg_restore 18's transaction_timeout on PG 15
    return copy


def plain_dump(spec: ConnectionSpec) -> list[str]:
    """`pg_dump` (plain SQL) of a database, as lines; a fixed \\restrict key so two dumps can be compared."""
    done = subprocess.run(
        [str(find_tool("pg_dump")), "--no-password", "--restrict-key=corpus", f"--dbname={spec.dbname}"],
        env=spec.libpq_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise HarnessError(f"pg_dump of {spec.dbname} failed: {done.stderr.strip()}")
    return done.stdout.splitlines()


def _header_line(line: str, dbnames: tuple[str, ...]) -> bool:
    """A dump's comment line carrying a database name or a time (the only lines two dumps may differ in)."""
    if not line.startswith("--"):
        return False
    return line.startswith(("-- Started on", "-- Completed on")) or any(name in line for name in dbnames)


def dump_difference(
    left: list[str], right: list[str], dbnames: tuple[str, ...] = ()
) -> tuple[Counter[str], Counter[str]]:
    """Lines of `left` missing from `right` and the other way round, compared as multisets (row order may differ)."""
    a = Counter(line for line in left if not _header_line(line, dbnames))
    b = Counter(line for line in right if not _header_line(line, dbnames))
    return a - b, b - a


# ---------------------------------------------------------------------------------------------------------------
# tables, content and structure

TABLES = sql.SQL("""
    SELECT n.nspname, c.relname, c.relkind::text
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND {system}
      AND NOT EXISTS (SELECT 1 FROM pg_depend d
                      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
    ORDER BY 1, 2
""").format(system=SYSTEM_SCHEMAS)

MATERIALIZED_VIEWS = sql.SQL("""
    SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'm' AND {system} ORDER BY 1, 2
""").format(system=SYSTEM_SCHEMAS)

COLUMNS = """
    SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity::text,
           a.attgenerated::text, pg_get_expr(ad.adbin, ad.adrelid), coalesce(bt.typcategory, t.typcategory)::text
    FROM pg_attribute a
    JOIN pg_type t ON t.oid = a.atttypid
    LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
    LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
    WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY a.attnum
"""
PRIMARY_KEY = """
    SELECT a.attname FROM pg_index i
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY((i.indkey::int2[])[0:i.indnkeyatts - 1])
    WHERE i.indrelid = %s::regclass AND i.indisprimary
    ORDER BY array_position(i.indkey::int2[], a.attnum)
"""


def _regclass(table: TableKey) -> str:
    return sql.Identifier(*table).as_string(None)


def user_tables(spec: ConnectionSpec) -> list[Table]:
    """Every user table (relkind r and p, leaf partitions included), extension-owned tables left out."""
    with connect(spec) as conn:
        return [Table(r[0], r[1], r[2]) for r in conn.execute(TABLES).fetchall()]


def materialized_views(spec: ConnectionSpec) -> list[TableKey]:
    with connect(spec) as conn:
        return [(r[0], r[1]) for r in conn.execute(MATERIALIZED_VIEWS).fetchall()]


def _order(conn: psycopg.Connection[Any], table: TableKey, descending: bool = False) -> sql.Composable:
    """The table's rows in key order: the primary key, or, without one, every column's text."""
    key = [r[0] for r in conn.execute(PRIMARY_KEY, [_regclass(table)]).fetchall()]
    # without a key, the whole row's text: any number of columns (the regression database has 1,600), or none
    terms = [sql.SQL("{}.{}").format(ROW, sql.Identifier(c)) for c in key] if key else [sql.SQL("{}::text").format(ROW)]
    direction = sql.SQL(" DESC") if descending else sql.SQL("")
    return sql.SQL(", ").join(sql.Composed([t, direction]) for t in terms)


def table_fingerprint(conn: psycopg.Connection[Any], table: TableKey) -> Fingerprint:
    """Rows and md5 of the rows in key order, of the table alone (`FROM ONLY`: an inheritance parent's own rows)."""
    row = conn.execute(
        sql.SQL(
            "SELECT count(*), coalesce(md5(string_agg({row}::text, E'\\n' ORDER BY {order})), '') FROM ONLY {t} {row}"
        ).format(row=ROW, order=_order(conn, table), t=sql.Identifier(*table))
    ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def fingerprints(spec: ConnectionSpec) -> dict[TableKey, Fingerprint]:
    """Content of every user table that holds rows; a partitioned table is measured by its leaves."""
    with connect(spec, statement_timeout_ms=0) as conn:
        tables = [Table(r[0], r[1], r[2]) for r in conn.execute(TABLES).fetchall()]
        return {t.key: table_fingerprint(conn, t.key) for t in tables if t.kind == "r"}


STRUCTURE: dict[str, str] = {
    "relation": """
        SELECT c.oid, c.relkind::text, pg_get_userbyid(c.relowner),
               ARRAY(SELECT x::text FROM unnest(c.relacl) x ORDER BY 1),
               c.relrowsecurity, c.relforcerowsecurity, obj_description(c.oid, 'pg_class'),
               pg_get_partkeydef(c.oid), pg_get_expr(c.relpartbound, c.oid),
               ARRAY(SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = c.oid ORDER BY 1),
               c.reloptions
        FROM pg_class c WHERE c.oid = ANY(%s)
    """,
    "columns": """
        SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               a.attidentity::text, a.attgenerated::text, pg_get_expr(ad.adbin, ad.adrelid),
               col_description(a.attrelid, a.attnum), ARRAY(SELECT x::text FROM unnest(a.attacl) x ORDER BY 1),
               a.attislocal, a.attinhcount, coll.collname
        FROM pg_attribute a
        LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
        LEFT JOIN pg_collation coll ON coll.oid = a.attcollation
        WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attrelid, a.attnum
    """,
    "indexes": """
        SELECT i.indrelid, pg_get_indexdef(i.indexrelid), obj_description(i.indexrelid, 'pg_class'),
               i.indisclustered, i.indisvalid, i.indisreplident
        FROM pg_index i WHERE i.indrelid = ANY(%s)
    """,
    "constraints": """
        SELECT k.conrelid, k.conname, pg_get_constraintdef(k.oid), k.convalidated,
               obj_description(k.oid, 'pg_constraint'), k.conislocal, k.coninhcount
        FROM pg_constraint k WHERE k.conrelid = ANY(%s)
    """,
    "triggers": """
        SELECT t.tgrelid, pg_get_triggerdef(t.oid), t.tgenabled::text, obj_description(t.oid, 'pg_trigger')
        FROM pg_trigger t WHERE t.tgrelid = ANY(%s) AND NOT t.tgisinternal
    """,
    "policies": """
        SELECT p.polrelid, p.polname, p.polcmd::text, p.polpermissive,
               ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r) END
                     FROM unnest(p.polroles) r ORDER BY 1),
               pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
        FROM pg_policy p WHERE p.polrelid = ANY(%s)
    """,
    "rules": """
        SELECT r.ev_class, pg_get_ruledef(r.oid), r.ev_enabled::text
        FROM pg_rewrite r WHERE r.ev_class = ANY(%s) AND r.rulename <> '_RETURN'
    """,
}

Structure = dict[TableKey, dict[str, Any]]


def structure(spec: ConnectionSpec) -> Structure:
    """Per table: its definition and everything attached to it — columns, indexes, constraints, triggers, policies,
    rules, owner, grants, comments, RLS switches, partitioning and inheritance — independent of OIDs."""
    with connect(spec, statement_timeout_ms=0) as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT c.oid, n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p') AND {system} AND NOT EXISTS (SELECT 1 FROM pg_depend d "
                "WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')"
            ).format(system=SYSTEM_SCHEMAS)
        ).fetchall()
        keys = {r[0]: (r[1], r[2]) for r in rows}
        snapshot: Structure = {key: {part: [] for part in STRUCTURE} for key in keys.values()}
        oids = list(keys)
        for part, query in STRUCTURE.items():
            for row in conn.execute(query, [oids]).fetchall():
                snapshot[keys[row[0]]][part].append(tuple(row[1:]))
        for entry in snapshot.values():
            for part in STRUCTURE:
                if part != "columns":  # column order matters; the rest is a set
                    entry[part] = sorted(entry[part], key=repr)
    return snapshot


def structure_difference(before: Structure, after: Structure) -> list[str]:
    """What changed, table by table and part by part, in words."""
    problems = []
    for key in sorted(set(before) | set(after)):
        name = psql_name(*key)
        if key not in after:
            problems.append(f"{name} is gone")
            continue
        if key not in before:
            problems.append(f"{name} appeared")
            continue
        for part in STRUCTURE:
            old, new = before[key][part], after[key][part]
            if old != new:
                lost = [x for x in old if x not in new]
                added = [x for x in new if x not in old]
                problems.append(
                    f"{name} {part}: lost {lost or '-'}, gained {added or '-'}"
                    if lost or added
                    else f"{name} {part}: order changed {old} -> {new}"
                )
    return problems


def content_difference(before: dict[TableKey, Fingerprint], after: dict[TableKey, Fingerprint]) -> list[str]:
    problems = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            old, new = before.get(key), after.get(key)
            problems.append(
                f"{psql_name(*key)}: {old[0] if old else 'no'} rows (md5 {old[1][:8] if old else '-'}) before, "
                f"{new[0] if new else 'no'} rows (md5 {new[1][:8] if new else '-'}) after"
            )
    return problems


# ---------------------------------------------------------------------------------------------------------------
# materialized views

READERS = """
    WITH RECURSIVE readers(oid) AS (
        SELECT r.ev_class FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
        WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
          AND d.refobjid = %(table)s::regclass AND r.ev_class <> %(table)s::regclass
        UNION
        SELECT r.ev_class FROM readers x
        JOIN pg_depend d ON d.refobjid = x.oid AND d.classid = 'pg_rewrite'::regclass
                        AND d.refclassid = 'pg_class'::regclass
        JOIN pg_rewrite r ON r.oid = d.objid
        WHERE r.ev_class <> x.oid
    )
    SELECT n.nspname, c.relname FROM readers x JOIN pg_class c ON c.oid = x.oid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'm' ORDER BY 1, 2
"""


def materialized_views_reading(spec: ConnectionSpec, table: TableKey) -> list[TableKey]:
    """Materialized views that read the table, directly or through views."""
    with connect(spec) as conn:
        return [(r[0], r[1]) for r in conn.execute(READERS, {"table": _regclass(table)}).fetchall()]


def refresh(spec: ConnectionSpec, views: list[TableKey]) -> None:
    with connect(spec, statement_timeout_ms=0) as conn:
        for view in views:
            conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(sql.Identifier(*view)))


def stale_materialized_views(spec: ConnectionSpec, views: list[TableKey]) -> list[str]:
    """The views whose content differs (as a multiset of rows) from what their query returns now."""
    stale = []
    with connect(spec, statement_timeout_ms=0) as conn:
        for view in views:
            row = conn.execute("SELECT pg_get_viewdef(%s::regclass)", [_regclass(view)]).fetchone()
            assert row is not None
            query = sql.SQL(str(row[0]).strip().rstrip(";"))  # the server's own text of the view's query
            diff = conn.execute(
                sql.SQL(
                    "SELECT count(*) FROM ((TABLE {mv} EXCEPT ALL ({q})) UNION ALL (({q}) EXCEPT ALL TABLE {mv})) d"
                ).format(mv=sql.Identifier(*view), q=query)
            ).fetchone()
            assert diff is not None
            if int(diff[0]):
                stale.append(f"{psql_name(*view)} ({diff[0]} rows differ from its query)")
    return stale


# ---------------------------------------------------------------------------------------------------------------
# damage

COUNTERS = "SELECT relid, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_xact_user_tables"
# the table and, when partitioned, every partition under it (pg_partition_tree has no row for a plain table)
OWN_RELATIONS = "SELECT %(t)s::regclass::oid UNION SELECT relid::oid FROM pg_partition_tree(%(t)s::regclass)"
KEY_COLUMNS = """
    SELECT i.indexrelid, a.attname FROM pg_index i
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
    WHERE i.indrelid = %s::regclass AND (i.indisunique OR i.indisexclusion)
    ORDER BY i.indexrelid, array_position(i.indkey::int2[], a.attnum)
"""
FK_COLUMNS = """
    SELECT DISTINCT a.attname FROM pg_constraint k
    JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = ANY(k.conkey)
    WHERE k.conrelid = %s::regclass AND k.contype = 'f'
"""
PARTITION_KEY_COLUMNS = """
    SELECT DISTINCT a.attname FROM pg_partition_ancestors(%s::regclass) anc
    JOIN pg_partitioned_table p ON p.partrelid = anc.relid
    JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = ANY(p.partattrs::int2[])
"""
SWITCHES = """
    SELECT s.kind, n.nspname, c.relname, s.name, s.state FROM (
        SELECT 'TRIGGER' AS kind, t.tgrelid AS rel, t.tgname AS name, t.tgenabled::text AS state FROM pg_trigger t
        WHERE t.tgrelid = ANY(%s) AND NOT t.tgisinternal
        UNION ALL
        SELECT 'RULE', r.ev_class, r.rulename, r.ev_enabled::text FROM pg_rewrite r
        WHERE r.ev_class = ANY(%s) AND r.rulename <> '_RETURN'
    ) s JOIN pg_class c ON c.oid = s.rel JOIN pg_namespace n ON n.oid = c.relnamespace
"""
_ENABLE = {"O": "ENABLE", "R": "ENABLE REPLICA", "A": "ENABLE ALWAYS", "D": "DISABLE"}


@dataclass
class _Damage:
    conn: psycopg.Connection[Any]
    table: Table
    own: set[int]
    done: list[str]

    @property
    def only(self) -> sql.Composable:
        """`ONLY` for a plain table (an inheritance parent alone), nothing for a partitioned one (all its leaves)."""
        return sql.SQL("") if self.table.kind == "p" else sql.SQL("ONLY ")

    def counters(self) -> dict[int, int]:
        return {int(r[0]): int(r[1]) for r in self.conn.execute(COUNTERS).fetchall()}

    def attempt(self, what: str, statement: sql.Composed, params: list[Any] | None = None) -> bool:
        """Run one change in a savepoint; keep it only when it succeeded, changed rows of this table and none of
        any other table (a cascade, a trigger or a rule elsewhere)."""
        before = self.counters()
        self.conn.execute("SAVEPOINT corpus_damage")
        try:
            changed = self.conn.execute(statement, params).rowcount
        except psycopg.Error:
            self.conn.execute("ROLLBACK TO SAVEPOINT corpus_damage")
            return False
        after = self.counters()
        elsewhere = [rel for rel, n in after.items() if rel not in self.own and n != before.get(rel, 0)]
        if changed <= 0 or elsewhere:
            self.conn.execute("ROLLBACK TO SAVEPOINT corpus_damage")
            return False
        self.conn.execute("RELEASE SAVEPOINT corpus_damage")
        self.done.append(f"{what} ({changed} rows)")
        return True


def _rows(d: _Damage, order: sql.Composable, limit: int) -> sql.Composed:
    """(tableoid, ctid) of the first `limit` rows in an order: a row's identity, also across partitions."""
    return sql.SQL("SELECT {row}.tableoid, {row}.ctid FROM {only}{t} {row} ORDER BY {order} LIMIT {n}").format(
        row=ROW, only=d.only, t=d.table.ident, order=order, n=sql.Literal(limit)
    )


def _delete(d: _Damage) -> None:
    """Delete the last three rows, or else the first two of the last twenty that can go alone."""
    last = _order(d.conn, d.table.key, descending=True)
    delete = sql.SQL("DELETE FROM {only}{t} {row} WHERE ({row}.tableoid, {row}.ctid) IN ({rows})")
    statement = delete.format(only=d.only, t=d.table.ident, row=ROW, rows=_rows(d, last, 3))
    if d.attempt("deleted the last 3 rows", statement):
        return
    candidates = d.conn.execute(_rows(d, last, 20)).fetchall()
    deleted = 0
    for tableoid, ctid in candidates:
        one = sql.SQL("DELETE FROM {only}{t} {row} WHERE {row}.tableoid = %s AND {row}.ctid = %s::tid").format(
            only=d.only, t=d.table.ident, row=ROW
        )
        if d.attempt(f"deleted row {ctid}", one, [tableoid, str(ctid)]):
            deleted += 1
            if deleted == 2:
                return


def _update(d: _Damage, columns: list[tuple[Any, ...]], keys: set[str], fks: set[str]) -> None:
    """Change a column that is in no key, no foreign key and not generated, in the first three rows."""
    first = _order(d.conn, d.table.key)
    for name, _type, notnull, identity, generated, _default, _category in columns:
        if name in keys or name in fks or identity or generated:
            continue
        c = sql.SQL("{}.{}").format(ROW, sql.Identifier(name))
        other = sql.SQL(
            "(SELECT x.{c} FROM {only}{t} x WHERE x.{c} IS DISTINCT FROM {col} ORDER BY x.{c}::text LIMIT 1)"
        ).format(c=sql.Identifier(name), only=d.only, t=d.table.ident, col=c)
        changes = [
            sql.SQL("{} || '~'").format(c),
            sql.SQL("{} + 1").format(c),
            sql.SQL("{} + interval '1 minute'").format(c),
            sql.SQL("NOT {}").format(c),
            *([] if notnull else [sql.SQL("NULL")]),
            other,
        ]
        for change in changes:
            statement = sql.SQL(
                "UPDATE {only}{t} {row} SET {c} = {change} WHERE {col} IS NOT NULL "
                "AND ({row}.tableoid, {row}.ctid) IN ({rows})"
            ).format(
                only=d.only,
                t=d.table.ident,
                row=ROW,
                c=sql.Identifier(name),
                change=change,
                col=c,
                rows=_rows(d, first, 3),
            )
            if d.attempt(f"updated column {name!r} of the first 3 rows", statement):
                return


def _insert(
    d: _Damage, columns: list[tuple[Any, ...]], key_sets: list[list[str]], fks: set[str], partition_keys: set[str]
) -> None:
    """A copy of the first row, with a new value in one column of each unique key (defaults and identities left
    to generate theirs), or an exact copy for a table without any unique key."""
    by_name = {c[0]: c for c in columns}
    defaulted = {c[0] for c in columns if c[3] or (c[5] is not None and "nextval" in str(c[5]))}
    varied: set[str] = set()
    for key in key_sets:
        if any(c in defaulted or c in varied for c in key):
            continue  # this key gets a new value already
        ranked = sorted(
            key, key=lambda c: (c in fks, c in partition_keys, by_name[c][6] not in ("N", "S", "D"), key.index(c))
        )
        varied.add(ranked[0])
    first = _order(d.conn, d.table.key)
    for step in range(1000, 1008):
        names, values = [], []
        for name, _type, _notnull, identity, generated, _default, category in columns:
            if generated or identity or name in defaulted:
                continue
            col = sql.SQL("{}.{}").format(ROW, sql.Identifier(name))
            if name in varied and category == "N":
                value: sql.Composable = sql.SQL("(SELECT max(x.{c}) FROM {t} x) + {k}").format(
                    c=sql.Identifier(name), t=d.table.ident, k=sql.Literal(step)
                )
            elif name in varied and category == "S":
                value = sql.SQL("{} || {}").format(col, sql.Literal(f"#{step}"))
            elif name in varied and category == "D":
                value = sql.SQL("(SELECT max(x.{c}) FROM {t} x) + {k} * interval '1 day'").format(
                    c=sql.Identifier(name), t=d.table.ident, k=sql.Literal(step)
                )
            else:
                value = col
            names.append(sql.Identifier(name))
            values.append(value)
        statement = sql.SQL("INSERT INTO {t} ({names}) SELECT {values} FROM {only}{t} {row} ORDER BY {order} LIMIT 1")
        if d.attempt(
            "inserted a copy of the first row" + (f" with new {sorted(varied)}" if varied else ""),
            statement.format(
                t=d.table.ident,
                names=sql.SQL(", ").join(names),
                values=sql.SQL(", ").join(values),
                only=d.only,
                row=ROW,
                order=first,
            ),
        ):
            return


def damage(spec: ConnectionSpec, table: Table) -> list[str]:
    """Change the table's content for real — delete rows, update a non-key column, insert a row — and nothing else:
    each change runs in a savepoint and is kept only when no other table changed with it (cascades, triggers and
    rules writing elsewhere are refused), foreign keys checked immediately. The table's own triggers and rules are
    switched off while it is damaged (an audit trigger would write elsewhere) and back on before the commit.
    Returns what was done; raises HarnessError when nothing could be changed."""
    with connect(spec, autocommit=False, statement_timeout_ms=0) as conn:
        before = _content(conn, table)
        conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
        own = {int(r[0]) for r in conn.execute(OWN_RELATIONS, {"t": _regclass(table.key)}).fetchall()}
        switches = conn.execute(SWITCHES, [list(own), list(own)]).fetchall()
        for kind, schema, relname, name, _state in switches:  # kind is TRIGGER or RULE, from the query above
            conn.execute(
                sql.SQL("ALTER TABLE {} DISABLE {} {}").format(
                    sql.Identifier(schema, relname), sql.SQL(kind), sql.Identifier(name)
                )
            )
        d = _Damage(conn, table, own, [])
        columns = [tuple(r) for r in conn.execute(COLUMNS, [_regclass(table.key)]).fetchall()]
        key_sets: dict[int, list[str]] = {}
        for index, column in conn.execute(KEY_COLUMNS, [_regclass(table.key)]).fetchall():
            key_sets.setdefault(int(index), []).append(str(column))
        keys = {c for key in key_sets.values() for c in key}
        fks = {str(r[0]) for r in conn.execute(FK_COLUMNS, [_regclass(table.key)]).fetchall()}
        partition_keys = {str(r[0]) for r in conn.execute(PARTITION_KEY_COLUMNS, [_regclass(table.key)]).fetchall()}
        _delete(d)
        _update(d, columns, keys | partition_keys, fks)
        _insert(d, columns, list(key_sets.values()), fks, partition_keys)
        for kind, schema, relname, name, state in switches:
            conn.execute(
                sql.SQL("ALTER TABLE {} {} {} {}").format(
                    sql.Identifier(schema, relname), sql.SQL(_ENABLE[state]), sql.SQL(kind), sql.Identifier(name)
                )
            )
        conn.commit()
        if _content(conn, table) == before:
            raise HarnessError(f"could not damage {table.quoted}: every change was refused ({d.done})")
        conn.commit()
        return d.done


def table_content(spec: ConnectionSpec, table: Table) -> dict[TableKey, Fingerprint]:
    """The fingerprints of one table (of its leaves, for a partitioned table): what `damage` changed, since it
    keeps no change that touched another table."""
    with connect(spec, statement_timeout_ms=0) as conn:
        return _content(conn, table)


def _content(conn: psycopg.Connection[Any], table: Table) -> dict[TableKey, Fingerprint]:
    """The table's content, or its leaves' for a partitioned table."""
    if table.kind == "r":
        return {table.key: table_fingerprint(conn, table.key)}
    leaves = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_partition_tree(%s::regclass) p JOIN pg_class c ON c.oid = p.relid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE p.isleaf",
        [_regclass(table.key)],
    ).fetchall()
    return {(r[0], r[1]): table_fingerprint(conn, (r[0], r[1])) for r in leaves}
