"""Restores of PostgreSQL's own regression database (the corpus pg_upgrade's tests dump and restore), through the
restore state machine, on every server version the `pg` fixture offers.

A sample of tables of every kind is damaged and restored alone by its quoted name: partitioned parents,
inheritance parents, tables in other schemas, tables with foreign keys either way, row-level security, names that
need quoting. After each, every table of the database holds what it held before the damage, with the same
structure. A full restore into a new database dumps exactly like a plain `pg_dump -Fc | pg_restore` copy.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from psycopg import sql

from dbops import aws
from dbops.backup.run import BackupRequest, run_backup
from dbops.postgres.connection import ConnectionSpec, connect
from local_stack.aws import LocalAws
from local_stack.postgres import LocalPostgres
from tests.corpus import harness
from tests.support import restore_environment

pytestmark = pytest.mark.corpus

Run = Callable[..., dict[str, Any]]
DATABASE = "sprint_reports_v2"  # the configured database's name (tests.support.restore_environment)
PER_KIND = 2

# each kind of table the sample must hold, as a condition on pg_class `c` (the first PER_KIND by name)
KINDS = {
    "partitioned parent": "c.relkind = 'p' AND NOT c.relispartition",
    "inheritance parent": "c.relkind = 'r' AND EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhparent = c.oid)",
    "other schema": "c.relkind = 'r' AND n.nspname NOT IN ('public') AND NOT c.relispartition",
    "references another table": "EXISTS (SELECT 1 FROM pg_constraint k WHERE k.contype = 'f' AND k.conrelid = c.oid "
    "AND k.confrelid <> c.oid)",
    "referenced by another table": "c.relkind = 'r' AND EXISTS (SELECT 1 FROM pg_constraint k WHERE k.contype = 'f' "
    "AND k.confrelid = c.oid AND k.conrelid <> c.oid)",
    "row-level security": "c.relrowsecurity",
    "name needs quoting": "(c.relname !~ '^[a-z_][a-z0-9_]*$' OR n.nspname !~ '^[a-z_][a-z0-9_]*$')",
}
SAMPLE = """
    SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_%' AND ({condition})
    ORDER BY 1, 2
"""


# the regression scripts leave their row-level security tables empty: rows for them (FORCE included, whose policies
# would hide most of these from the owner) before the backup, so there is something to damage and restore
RLS_ROWS = [
    "INSERT INTO regress_rls_schema.rls_tbl SELECT g FROM generate_series(1, 10) g",
    "INSERT INTO regress_rls_schema.rls_tbl_force SELECT g FROM generate_series(1, 10) g",
]


@dataclass
class Regression:
    admin: ConnectionSpec
    source: ConnectionSpec  # a copy of the shared regression database, which the tests damage
    reference: ConnectionSpec  # its state as backed up
    bucket: str


@pytest.fixture(scope="module")
def regression(regression_db: ConnectionSpec, pg: LocalPostgres, local_aws: LocalAws) -> Iterator[Regression]:
    admin = regression_db.for_database("postgres")
    name = f"regr_{uuid.uuid4().hex[:6]}"
    source = harness.create_database(admin, name, template=regression_db.dbname)
    with connect(source) as conn:
        for statement in RLS_ROWS:
            conn.execute(statement)
    reference = harness.create_database(admin, f"{name}_ref", template=name)
    bucket = f"dbops-regr-{uuid.uuid4().hex[:12]}"
    aws.client("s3").create_bucket(Bucket=bucket)
    run_backup(source, BackupRequest(database=DATABASE, bucket=bucket))
    yield Regression(admin, source, reference, bucket)
    if (pg.data_dir / "postmaster.pid").exists():
        for db in (name, f"{name}_ref", f"{name}_full"):
            harness.drop_database(admin, db)


@pytest.fixture
def configured(regression: Regression, monkeypatch: pytest.MonkeyPatch) -> Regression:
    for key, value in restore_environment(regression.source, regression.bucket).items():
        monkeypatch.setenv(key, value)
    return regression


def _candidates(spec: ConnectionSpec) -> dict[str, list[harness.Table]]:
    """Tables of each kind, by name; every kind must be there (the corpus test proves the counts)."""
    tables = {t.key: t for t in harness.user_tables(spec)}
    found = {}
    with connect(spec) as conn:
        for kind, condition in KINDS.items():
            rows = conn.execute(sql.SQL(SAMPLE).format(condition=sql.SQL(condition))).fetchall()
            found[kind] = [tables[(r[0], r[1])] for r in rows if (r[0], r[1]) in tables]
    return found


def test_a_sample_of_every_kind_of_table_restores_alone_leaving_every_other_table_as_it_was(
    configured: Regression, run_restore: Run, subtests: pytest.Subtests
) -> None:
    """The first PER_KIND tables of each kind that a real change can damage (many regression tables are empty
    or refuse every change): each damaged, restored alone, and the whole database compared."""
    spec = configured.source
    pristine = harness.fingerprints(spec)
    pristine_structure = harness.structure(spec)
    for kind, candidates in _candidates(spec).items():
        restored = 0
        for table in candidates:
            if restored == PER_KIND:
                break
            try:
                done = harness.damage(spec, table)
            except harness.HarnessError:
                continue  # nothing to damage here: the next table of this kind
            restored += 1
            with subtests.test(msg=f"{kind}: {table.quoted}"):
                # for the message only: the damage changed this table alone (harness.damage keeps no change that
                # touched another), so the database's state after it is the pristine one with this table's content
                # (measuring every table again, for a message, cost a second per case)
                damaged = {**pristine, **harness.table_content(spec, table)}

                result = run_restore(tables=[table.quoted])

                assert result["status"] == "SUCCEEDED", f"{table.quoted} after {done}: {result.get('cause')}"
                after = harness.fingerprints(spec)
                assert not harness.content_difference(pristine, after), (
                    f"after restoring {table.quoted} (damage changed {harness.content_difference(pristine, damaged)})"
                    f", tables differ from before the damage: {harness.content_difference(pristine, after)}"
                )
                changed = harness.structure_difference(pristine_structure, harness.structure(spec))
                assert not changed, f"after restoring {table.quoted}, structure differs: {changed}"
        assert restored == PER_KIND, f"only {restored} tables of kind {kind!r} could be damaged"


def test_a_full_restore_dumps_like_a_plain_dump_and_restore(configured: Regression, run_restore: Run) -> None:
    target = f"{configured.source.dbname}_full"

    result = run_restore(target=target)

    assert result["status"] == "SUCCEEDED", result.get("cause")
    reference_copy = harness.copy_database(configured.reference, f"{configured.reference.dbname}_plain")
    try:
        restored = harness.plain_dump(configured.source.for_database(target))
        expected = harness.plain_dump(reference_copy)
    finally:
        harness.drop_database(configured.admin, reference_copy.dbname)
    only_restored, only_expected = harness.dump_difference(restored, expected, (target, reference_copy.dbname))
    assert not only_restored and not only_expected, (
        f"{sum(only_expected.values())} lines missing, e.g. {list(only_expected)[:8]}; "
        f"{sum(only_restored.values())} lines extra, e.g. {list(only_restored)[:8]}"
    )
