"""`dbops rehearse` (run_rehearsal on a fresh pg_dump, `source="database"`) on schemas it was not designed around:
the corpus (tests/corpus/schemas/) and PostgreSQL's regression database, on every server version `pg` offers.

Per corpus schema and server, on its largest ordinary table (chosen from the catalog: partitions and tables whose
row type a column elsewhere uses are left out, ADD COLUMN is refused on those), named by its quoted qualified name:

- a reversible migration (ADD COLUMN rehearsal_probe, DROP COLUMN as the rollback) passes; the schema after the
  rollback is identical to the one before (what a dump normalization that odd names break would fail); its ACCESS
  EXCLUSIVE is reported on the table, by the table's quoted qualified name, credited to the statement;
- a rewrite of the table (ALTER COLUMN ... TYPE bigint of an int column no view, policy or trigger uses; else an
  ADD COLUMN with a volatile default) is reported in `rewrites` by the table's name, with its indexes;
- a rollback that forgets the column fails the rehearsal, the change naming the table.

Also: every table of 03_quoted_names in one rehearsal, each statement writing a string literal (reported by its
name, the literal hidden, the name intact); a plpgsql function of 08_triggers_rules whose body the rollback leaves
changed (the change is caught and names the function). On the regression database: one rehearsal adds (and drops)
a column on a partitioned table and an inheritance parent at once (a pg_dump of its 616 tables takes seconds).

After each rehearsal the scratch database is gone and the source is as before: its dump (schema and data) and
fingerprints for a corpus schema; for the shared regression database, its schema dump and the altered tables' rows.

Upgrades whose lock is checked keep their transaction open HOLD_S after the ALTER (`ALTER ...; SELECT pg_sleep()`,
one query string, one implicit transaction): on a table of a few hundred rows the ALTER alone lasts a millisecond,
between two samples.
"""

from __future__ import annotations

import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from psycopg import sql

from dbops.postgres.connection import ConnectionSpec, connect
from dbops.postgres.tools import find_tool
from dbops.rehearsal import RehearsalRequest, RehearsalResult, format_report, run_rehearsal
from local_stack.postgres import LocalPostgres
from tests.corpus import harness

pytestmark = pytest.mark.corpus

SCHEMAS = sorted((Path(__file__).parent / "schemas").glob("*.sql"))
PROBE = "rehearsal_probe"
HOLD_S = 0.1  # how long each upgrade keeps its lock: several samples
INTERVAL_S = 0.01
ACCESS_EXCLUSIVE = "AccessExclusiveLock"

NOT_SYSTEM = harness.SYSTEM_SCHEMAS
NOT_EXTENSION = sql.SQL(
    "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid "
    "AND d.deptype = 'e')"
)
# a column of some relation has the table's row type (or an array of it): ADD COLUMN is refused then
ROW_TYPE_USED = sql.SQL(
    "EXISTS (SELECT 1 FROM pg_depend d JOIN pg_type t ON t.oid = c.reltype "
    "WHERE d.refclassid = 'pg_type'::regclass AND d.refobjid IN (t.oid, t.typarray) "
    "AND d.classid = 'pg_class'::regclass AND d.objsubid > 0)"
)
# the tables a migration may add a column to, largest first (a partitioned table by its partitions' sizes)
TABLES = sql.SQL("""
    SELECT n.nspname, c.relname, format('%I.%I', n.nspname, c.relname)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE {kind} AND NOT c.relispartition AND {system} AND {extension} AND NOT {row_type_used}
    ORDER BY (SELECT sum(pg_total_relation_size(p.relid)) FROM pg_partition_tree(c.oid) p) DESC NULLS LAST,
             pg_total_relation_size(c.oid) DESC, 1, 2
""")
# an int column the table has of its own, that no view, rule, policy, trigger or generated column uses (a type
# change is refused then), and that is in no inheritance child's such use either
INT_COLUMN = """
    SELECT a.attname FROM pg_attribute a
    WHERE a.attrelid = %(t)s::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attinhcount = 0
      AND a.atttypid IN ('int2'::regtype, 'int4'::regtype) AND a.attgenerated = '' AND a.attidentity = ''
      AND NOT EXISTS (
          SELECT 1 FROM pg_attribute x JOIN pg_depend d
              ON d.refclassid = 'pg_class'::regclass AND d.refobjid = x.attrelid AND d.refobjsubid = x.attnum
          WHERE x.attrelid IN (SELECT %(t)s::regclass UNION SELECT inhrelid FROM pg_inherits
                               WHERE inhparent = %(t)s::regclass)
            AND x.attname = a.attname
            AND (d.classid IN ('pg_rewrite'::regclass, 'pg_policy'::regclass, 'pg_trigger'::regclass)
                 OR (d.classid = 'pg_class'::regclass AND d.objsubid > 0)))
      -- PostgreSQL 18 (18.6) refuses to change the type of a parent's column that a child has in an index of its own
      -- ("cannot create not-null constraint ... A not-null constraint named ... already exists"); 15 does it
      AND NOT EXISTS (
          SELECT 1 FROM pg_inherits h JOIN pg_index i ON i.indrelid = h.inhrelid
          JOIN pg_attribute y ON y.attrelid = h.inhrelid AND y.attnum = ANY(i.indkey)
          WHERE h.inhparent = %(t)s::regclass AND y.attname = a.attname)
    ORDER BY a.attnum LIMIT 1
"""
INDEXES = """
    SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE i.indrelid = %s::regclass
"""
INHERITORS = """
    WITH RECURSIVE tree(oid) AS (
        SELECT %s::regclass::oid UNION SELECT i.inhrelid FROM pg_inherits i JOIN tree ON i.inhparent = tree.oid)
    SELECT format('%%I.%%I', n.nspname, c.relname) FROM tree JOIN pg_class c ON c.oid = tree.oid
    JOIN pg_namespace n ON n.oid = c.relnamespace
"""


@dataclass(frozen=True)
class Target:
    """A table a migration changes: its parts, and its name as PostgreSQL quotes it (`format('%I.%I')`)."""

    schema: str
    name: str
    quoted: str

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)


@dataclass
class Source:
    """A database rehearsed on, as it was before any rehearsal."""

    admin: ConnectionSpec
    spec: ConnectionSpec
    psql: Path
    dump: list[str]
    fingerprints: dict[harness.TableKey, harness.Fingerprint]


def _tables(spec: ConnectionSpec, kind: sql.Composable) -> list[Target]:
    with connect(spec) as conn:
        rows = conn.execute(
            TABLES.format(kind=kind, system=NOT_SYSTEM, extension=NOT_EXTENSION, row_type_used=ROW_TYPE_USED)
        ).fetchall()
    assert rows, f"{spec.dbname} has no table of the kind {kind.as_string(None)}"
    return [Target(*row) for row in rows]


def _largest(spec: ConnectionSpec, kind: sql.Composable) -> Target:
    return _tables(spec, kind)[0]


def _psql(psql: Path, statement: sql.Composable) -> list[str]:
    """The command: the server's psql running one query string (its PG* variables name the scratch database)."""
    return [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", statement.as_string(None)]


def _holding(*statements: sql.Composable) -> sql.Composed:
    """The statements, then a sleep, in one query string: one implicit transaction keeping their locks HOLD_S."""
    sleep = sql.SQL("SELECT pg_sleep({})").format(sql.Literal(HOLD_S))
    return sql.SQL("; ").join([*statements, sleep])


def _add_probe(table: Target) -> sql.Composed:
    return sql.SQL("ALTER TABLE {} ADD COLUMN {} int").format(table.ident, sql.Identifier(PROBE))


def _drop_probe(table: Target) -> sql.Composed:
    return sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(table.ident, sql.Identifier(PROBE))


def _rehearse(
    source: Source, command: list[str], *, downgrade: list[str] | None = None, skip_downgrade: bool = False
) -> RehearsalResult:
    request = RehearsalRequest(
        database=source.spec.dbname,
        command=command,
        source="database",
        downgrade=downgrade,
        skip_downgrade=skip_downgrade,
        version_table=None,
        interval_s=INTERVAL_S,
    )
    return run_rehearsal(source.spec, request)


def _scratch_gone(source: Source, result: RehearsalResult) -> None:
    assert result.scratch_dropped, f"{result.scratch_database} was not dropped"
    with connect(source.admin) as conn:
        row = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [result.scratch_database]).fetchone()
    assert row == (0,), f"{result.scratch_database} is still on the server"


def _source_unchanged(source: Source) -> None:
    """The source dumps (schema, data, large objects) and fingerprints exactly as before the rehearsal."""
    missing, extra = harness.dump_difference(source.dump, harness.plain_dump(source.spec), (source.spec.dbname,))
    assert (missing, extra) == (Counter(), Counter()), f"the source changed: lost {missing}, gained {extra}"
    assert not harness.content_difference(source.fingerprints, harness.fingerprints(source.spec))


def _access_exclusive_on(result: RehearsalResult, table: Target, statement: str) -> None:
    """The statement's ACCESS EXCLUSIVE is reported on the table by its quoted name: a finding and a lock hold,
    credited to the statement that took it."""
    findings = [
        f
        for f in result.findings
        if f.statement == statement and f.table == table.quoted and f.mode == ACCESS_EXCLUSIVE
    ]
    assert len(findings) == 1, (
        f"not one ACCESS EXCLUSIVE finding on {table.quoted} by the upgrade: "
        f"{[(f.statement, f.table, f.mode) for f in result.findings]}"
    )
    [finding] = findings
    assert finding.taken_by_statement, finding
    assert f"ACCESS EXCLUSIVE on {table.quoted} " in finding.what, finding.what
    [run] = [s for s in result.statements if s.query == statement]
    holds = [h for h in run.locks if h.relation.name == table.quoted and h.mode == ACCESS_EXCLUSIVE]
    assert holds and holds[0].relation.table == table.quoted and holds[0].relation.existed_before, run.locks
    assert holds[0].held_s > 0 and holds[0].blocking
    report = " ".join(format_report(result).split())  # the report's lines are wrapped: whitespace aside
    assert f"ACCESS EXCLUSIVE on {table.quoted} (" in report, report


# ---------------------------------------------------------------------------------------------------------------
# the corpus


@dataclass
class Corpus(Source):
    schema: Path
    table: Target


@pytest.fixture(scope="module", params=SCHEMAS, ids=[p.stem for p in SCHEMAS])
def corpus(request: pytest.FixtureRequest, pg: LocalPostgres) -> Iterator[Corpus]:
    schema: Path = request.param
    admin = ConnectionSpec.from_url(pg.url())
    missing = harness.missing_extensions(admin, harness.required_extensions(schema))
    if missing:
        pytest.skip(f"PostgreSQL {pg.major} here has no {' or '.join(missing)} extension, which {schema.name} needs")
    spec = harness.load_schema(admin, schema, f"rehearse{schema.stem[:2]}_{uuid.uuid4().hex[:6]}")
    try:
        table = _largest(spec, sql.SQL("c.relkind = 'r'"))
        yield Corpus(
            admin, spec, pg.bin_dir / "psql", harness.plain_dump(spec), harness.fingerprints(spec), schema, table
        )
    finally:
        if (pg.data_dir / "postmaster.pid").exists():
            harness.drop_database(admin, spec.dbname)


def test_a_migration_undone_by_its_rollback_passes_with_the_same_schema(corpus: Corpus) -> None:
    table = corpus.table
    upgrade = _holding(_add_probe(table))

    result = _rehearse(corpus, _psql(corpus.psql, upgrade), downgrade=_psql(corpus.psql, _drop_probe(table)))

    assert result.upgrade.ok and result.downgrade is not None and result.downgrade.ok, (
        result.upgrade.output_tail,
        result.downgrade,
    )
    assert result.schema_check.compared and result.schema_check.identical is True, result.schema_check.diff[:40]
    assert result.verdict == "pass", result.reasons
    _access_exclusive_on(result, table, upgrade.as_string(None))
    assert result.rewrites == [], f"adding a column without a default rewrote {result.rewrites}"
    _scratch_gone(corpus, result)
    _source_unchanged(corpus)


def test_a_rewrite_is_reported_on_the_table_with_its_indexes(corpus: Corpus) -> None:
    table = corpus.table
    with connect(corpus.spec) as conn:
        regclass = table.ident.as_string(conn)
        column = conn.execute(INT_COLUMN, {"t": regclass}).fetchone()
        indexes = {str(r[0]) for r in conn.execute(INDEXES, [regclass]).fetchall()}
        inheritors = {str(r[0]) for r in conn.execute(INHERITORS, [regclass]).fetchall()}
    if column is not None:  # a type change that is not binary-coercible
        rewrite = sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE bigint").format(table.ident, sql.Identifier(column[0]))
    else:  # every int column is used by a view or the like: a column whose default is volatile
        rewrite = sql.SQL("ALTER TABLE {} ADD COLUMN {} timestamptz DEFAULT clock_timestamp()").format(
            table.ident, sql.Identifier(PROBE)
        )
    statement = _holding(rewrite).as_string(None)

    result = _rehearse(corpus, _psql(corpus.psql, _holding(rewrite)), skip_downgrade=True)

    assert result.upgrade.ok, result.upgrade.output_tail
    assert result.downgrade is None and result.schema_check.compared is False
    by_table = {r.table: r for r in result.rewrites}
    assert table.quoted in by_table, f"{table.quoted} not among the rewrites {sorted(by_table)}"
    found = by_table[table.quoted]
    assert found.table_rewritten and found.statement == statement, found
    assert set(found.indexes) == indexes, f"indexes rebuilt: {found.indexes}, the table's: {sorted(indexes)}"
    # an index on the column is dropped and built again under its name: a rebuild, not a new index
    assert (result.created, result.dropped) == ([], []), (result.created, result.dropped)
    # nothing else: the table's inheritance children are rewritten with it, and only they
    assert set(by_table) <= inheritors, f"rewrites beyond {sorted(inheritors)}: {sorted(by_table)}"
    [finding] = [f for f in result.findings if f.table == table.quoted and f.rewritten]
    assert finding.severity == "warn" and finding.statement == statement and table.quoted in finding.advice
    # the rewrite's new storage (a transient table no other session sees in pg_class, its TOAST, new indexes) is
    # reported on the table, by its quoted name, never as `relation <oid>`
    [run] = [s for s in result.statements if s.query == statement]
    unnamed = [h.relation.name for h in run.locks if h.relation.name.startswith("relation ")]
    assert not unnamed, f"locks on relations named by OID only: {unnamed}"
    storage = [h for h in run.locks if h.relation.storage and h.relation.storage.startswith("its new storage")]
    assert storage and all(h.relation.table in by_table for h in storage), [h.relation for h in run.locks]
    assert table.quoted in {h.relation.name for h in storage}, [h.relation for h in storage]
    report = " ".join(format_report(result).split())
    assert f"{table.quoted}* (" in report and "and its new storage)" in report, report
    _scratch_gone(corpus, result)
    _source_unchanged(corpus)


def _volatile_column(table: Target, column: str) -> sql.Composed:
    """ADD COLUMN with a volatile default: a rewrite of any table a column can be added to."""
    return sql.SQL("ALTER TABLE {} ADD COLUMN {} timestamptz DEFAULT clock_timestamp()").format(
        table.ident, sql.Identifier(column)
    )


def _unrelated(spec: ConnectionSpec, table: Target) -> Target | None:
    """Another ordinary table, not of the table's inheritance tree (nor it of the other's), not a typed table."""
    with connect(spec) as conn:
        tree = {str(r[0]) for r in conn.execute(INHERITORS, [table.ident.as_string(conn)]).fetchall()}
        for other in _tables(spec, sql.SQL("c.relkind = 'r' AND c.reloftype = 0")):
            if other.quoted in tree:
                continue
            theirs = {str(r[0]) for r in conn.execute(INHERITORS, [other.ident.as_string(conn)]).fetchall()}
            if table.quoted not in theirs:
                return other
    return None


def test_a_table_rewritten_twice_in_one_transaction_has_every_storage_named_after_it(corpus: Corpus) -> None:
    """The first rewrite's storage is in no catalog once the second replaced it (and no other session ever saw it
    in one): its locks are still reported on the table, by its quoted name, not as `relation <oid>`, though the
    statement also rewrote another table meanwhile."""
    table, other = corpus.table, _unrelated(corpus.spec, corpus.table)
    if other is None:
        pytest.skip(f"{corpus.schema.name} has no second table to rewrite in between")
    sleep = sql.SQL("SELECT pg_sleep({})").format(sql.Literal(HOLD_S))
    upgrade = sql.SQL("; ").join(
        [
            _volatile_column(table, f"{PROBE}_1"),
            sleep,  # samples see the first rewrite's storage while only this table is rewritten
            _volatile_column(other, PROBE),
            _volatile_column(table, f"{PROBE}_2"),
            sleep,
        ]
    )

    result = _rehearse(corpus, _psql(corpus.psql, upgrade), skip_downgrade=True)

    assert result.upgrade.ok, result.upgrade.output_tail
    rewritten = {r.table for r in result.rewrites if r.table_rewritten}
    assert {table.quoted, other.quoted} <= rewritten, rewritten
    [run] = [s for s in result.statements if upgrade.as_string(None).startswith(s.query.rstrip("…"))]
    unnamed = [h.relation.name for h in run.locks if h.relation.name.startswith("relation ")]
    assert not unnamed, f"locks on relations named by OID only: {unnamed}"
    storage = {h.relation.oid for h in run.locks if (h.relation.storage or "").startswith("its new storage")}
    mine = {
        h.relation.oid
        for h in run.locks
        if h.relation.table == table.quoted and (h.relation.storage or "").startswith("its new storage")
    }
    assert len(mine) >= 2, f"not both rewrites' storage on {table.quoted}: {[h.relation for h in run.locks]}"
    assert all(h.relation.table in rewritten for h in run.locks if h.relation.oid in storage), run.locks
    _scratch_gone(corpus, result)
    _source_unchanged(corpus)


def test_a_rollback_that_forgets_the_column_fails_naming_the_table(corpus: Corpus) -> None:
    table = corpus.table

    result = _rehearse(corpus, _psql(corpus.psql, _add_probe(table)), downgrade=["true"])

    assert result.upgrade.ok and result.downgrade is not None and result.downgrade.ok
    check = result.schema_check
    assert check.compared and check.identical is False
    assert check.changes == [f"changed TABLE {table.quoted}"], check.changes
    [table_change] = check.objects
    assert f"+ {PROBE} integer" in table_change.lines, table_change
    assert result.verdict == "fail"
    assert any(r.startswith("the downgrade left the schema different") and table.quoted in r for r in result.reasons)
    _scratch_gone(corpus, result)
    _source_unchanged(corpus)


LEFTOVER = "Leftover Probe"  # a name PostgreSQL quotes


def test_a_table_the_rollback_leaves_behind_is_one_object_with_its_definition(corpus: Corpus) -> None:
    """A rollback that forgets a table (an identity column, a primary key, a serial column, an index) fails naming
    it once, by its quoted name, with its whole definition under it (its identity sequence, key, owned sequence,
    default and index with it): not each line of it, nor each object pg_dump writes for it, as a change."""
    table = Target(corpus.table.schema, LEFTOVER, "")
    with connect(corpus.spec) as conn:  # quoted as pg_dump and the report quote them: only where needed
        row = conn.execute(
            "SELECT format('%%I.%%I', %s::text, %s::text), format('%%I.%%I', %s::text, %s::text)",
            [table.schema, LEFTOVER, table.schema, f"{LEFTOVER}_id_seq"],
        ).fetchone()
        assert row is not None
        quoted, sequence = row
    create = sql.SQL(
        "CREATE TABLE {} (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n serial, note text); "
        "CREATE INDEX {} ON {} (note)"
    ).format(table.ident, sql.Identifier(f"{LEFTOVER} note"), table.ident)

    result = _rehearse(corpus, _psql(corpus.psql, create), downgrade=["true"])

    assert result.upgrade.ok and result.downgrade is not None and result.downgrade.ok, result.upgrade.output_tail
    check = result.schema_check
    assert check.compared and check.identical is False
    assert check.changes == [f"added TABLE {quoted}"], check.changes
    [leftover] = check.objects
    lines = leftover.lines
    assert lines[0] == f"+ CREATE TABLE {quoted} (" and "+ note text" in lines, lines
    text = "\n".join(lines)
    for part in (  # its identity sequence, its serial's sequence, owned and its default, its key, its index
        f"SEQUENCE NAME {sequence}",
        "START WITH 1",
        "CREATE SEQUENCE",
        "OWNED BY",
        "SET DEFAULT nextval(",
        f'ADD CONSTRAINT "{LEFTOVER}_pkey" PRIMARY KEY (id)',
        "CREATE INDEX",
    ):
        assert part in text, (part, lines)
    assert result.verdict == "fail"
    assert any(r.endswith(f": added TABLE {quoted}") for r in result.reasons), result.reasons
    report = format_report(result)
    assert f"\n  added TABLE {quoted}\n      + CREATE TABLE {quoted} (\n" in report, report
    _scratch_gone(corpus, result)
    _source_unchanged(corpus)


QUOTED_NAMES = Path(__file__).parent / "schemas" / "03_quoted_names.sql"
SECRET = "s3cr3t -- it's"  # a string literal a migration writes: hidden in the report, whatever names surround it


@contextmanager
def _loaded(pg: LocalPostgres, schema: Path) -> Iterator[Source]:
    """One corpus schema in a fresh database, dropped at the end."""
    admin = ConnectionSpec.from_url(pg.url())
    spec = harness.load_schema(admin, schema, f"rehearse{schema.stem[:2]}x_{uuid.uuid4().hex[:6]}")
    try:
        yield Source(admin, spec, pg.bin_dir / "psql", harness.plain_dump(spec), harness.fingerprints(spec))
    finally:
        if (pg.data_dir / "postmaster.pid").exists():
            harness.drop_database(admin, spec.dbname)


@pytest.fixture(scope="module")
def quoted_names(pg: LocalPostgres) -> Iterator[Source]:
    with _loaded(pg, QUOTED_NAMES) as source:
        yield source


def test_every_table_of_the_quoted_names_schema_is_reported_by_its_name_its_literals_hidden(
    quoted_names: Source,
) -> None:
    """Every table of 03_quoted_names (a dot, a double quote and an apostrophe, spaces, non-ASCII, reserved words in
    its names) altered in one rehearsal, one query string each (so each lock has its statement), each also writing
    a string literal holding an apostrophe and `--`."""
    source = quoted_names
    tables = _tables(source.spec, sql.SQL("c.relkind = 'r'"))
    assert any(t.quoted != f"{t.schema}.{t.name}" for t in tables), "no name in the schema needs quoting"

    def upgrade(table: Target, literal: sql.Composable) -> sql.Composed:
        comment = sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(table.ident, sql.Identifier(PROBE), literal)
        return _holding(_add_probe(table), comment)

    command = [*_psql(source.psql, upgrade(tables[0], sql.Literal(SECRET)))]
    for table in tables[1:]:
        command += ["-c", upgrade(table, sql.Literal(SECRET)).as_string(None)]
    rollback = _psql(source.psql, sql.SQL("; ").join(_drop_probe(t) for t in tables))

    result = _rehearse(source, command, downgrade=rollback)

    assert result.upgrade.ok and result.downgrade is not None and result.downgrade.ok, result.upgrade.output_tail
    assert result.schema_check.compared and result.schema_check.identical is True, result.schema_check.diff[:40]
    assert result.verdict == "pass", result.reasons
    for table in tables:  # each statement as sent, its literal hidden and nothing else changed
        _access_exclusive_on(result, table, upgrade(table, sql.SQL("'…'")).as_string(None))
    shown = [s.query for s in result.statements] + [f"{f.statement} {f.what} {f.advice}" for f in result.findings]
    assert not [text for text in shown if SECRET in text or "s3cr3t" in text]
    _scratch_gone(source, result)
    _source_unchanged(source)


TRIGGERS = Path(__file__).parent / "schemas" / "08_triggers_rules.sql"
PROBE_LINE = "-- rehearsal probe"
FUNCTION = """
    SELECT format('%I.%I', n.nspname, p.proname), pg_get_functiondef(p.oid), p.prosrc
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
    WHERE l.lanname = 'plpgsql' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                      AND d.deptype = 'e')
    ORDER BY 1 LIMIT 1
"""


@pytest.fixture(scope="module")
def triggers(pg: LocalPostgres) -> Iterator[Source]:
    with _loaded(pg, TRIGGERS) as source:
        yield source


def test_a_rollback_that_leaves_a_function_body_changed_fails_naming_the_function(triggers: Source) -> None:
    """The upgrade ends a plpgsql function's body (08_triggers_rules) with a line `-- rehearsal probe`, after its
    `END`, and the rollback does nothing: in pg_dump's text that line and the `END` before it start a line inside
    the dollar quotes — content of the function, neither a comment of pg_dump's nor a statement of its own."""
    with connect(triggers.spec) as conn:
        row = conn.execute(FUNCTION).fetchone()
    assert row is not None, "08_triggers_rules has no plpgsql function"
    name, definition, body = (str(v) for v in row)
    assert definition.count(body) == 1
    replace = sql.SQL(definition.replace(body, f"{body.rstrip(chr(10))}\n{PROBE_LINE}\n"))

    result = _rehearse(triggers, _psql(triggers.psql, replace), downgrade=["true"])

    assert result.upgrade.ok and result.downgrade is not None and result.downgrade.ok, result.upgrade.output_tail
    check = result.schema_check
    assert check.compared and check.identical is False, "the changed function body went unnoticed"
    [change] = check.objects
    assert check.changes == [f"changed FUNCTION {change.object.removeprefix('FUNCTION ')}"], check.changes
    assert change.change == "changed" and change.object.startswith(f"FUNCTION {name}("), change
    assert change.lines == [f"+ {PROBE_LINE}"], change
    assert result.verdict == "fail"
    _scratch_gone(triggers, result)
    _source_unchanged(triggers)


# ---------------------------------------------------------------------------------------------------------------
# the regression database (shared by the session's tests: read here, never changed)


TREE = """
    WITH RECURSIVE tree(oid) AS (
        SELECT %s::regclass::oid UNION SELECT i.inhrelid FROM pg_inherits i JOIN tree ON i.inhparent = tree.oid)
    SELECT n.nspname, c.relname FROM tree JOIN pg_class c ON c.oid = tree.oid
    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r'
"""


def _tree_fingerprints(spec: ConnectionSpec, tables: list[Target]) -> dict[harness.TableKey, harness.Fingerprint]:
    """The rows of the tables and of every table under them (partitions, inheritance children), each alone."""
    with connect(spec, statement_timeout_ms=0) as conn:
        keys = [
            (str(r[0]), str(r[1])) for t in tables for r in conn.execute(TREE, [t.ident.as_string(conn)]).fetchall()
        ]
        return {key: harness.table_fingerprint(conn, key) for key in keys}


def _schema_dump(spec: ConnectionSpec) -> list[str]:
    """pg_dump --schema-only, with a fixed \\restrict key so that two dumps compare."""
    done = subprocess.run(
        [str(find_tool("pg_dump")), "--schema-only", "--no-password", "--restrict-key=corpus"],
        env=spec.libpq_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.splitlines()


@pytest.fixture(scope="module")
def regression(regression_db: ConnectionSpec, pg: LocalPostgres) -> Source:
    admin = regression_db.for_database("postgres")
    return Source(admin, regression_db, pg.bin_dir / "psql", [], {})


def test_regression_database_a_partitioned_table_and_an_inheritance_parent_altered_and_undone(
    regression: Source,
) -> None:
    spec = regression.spec
    partitioned = _largest(spec, sql.SQL("c.relkind = 'p'"))
    parent = _largest(
        spec, sql.SQL("c.relkind = 'r' AND EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhparent = c.oid)")
    )
    rows_before, schema_before = _tree_fingerprints(spec, [partitioned, parent]), _schema_dump(spec)
    upgrade = _holding(_add_probe(partitioned), _add_probe(parent))

    result = _rehearse(
        regression,
        _psql(regression.psql, upgrade),
        downgrade=_psql(regression.psql, sql.SQL("; ").join([_drop_probe(partitioned), _drop_probe(parent)])),
    )

    assert result.upgrade.ok and result.downgrade is not None and result.downgrade.ok, result.upgrade.output_tail
    assert result.schema_check.compared and result.schema_check.identical is True, result.schema_check.diff[:40]
    assert result.verdict == "pass", result.reasons
    for table in (partitioned, parent):
        _access_exclusive_on(result, table, upgrade.as_string(None))
    _scratch_gone(regression, result)
    assert _schema_dump(spec) == schema_before
    assert _tree_fingerprints(spec, [partitioned, parent]) == rows_before
