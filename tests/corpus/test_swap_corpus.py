"""The selective swap (dbops.restore.selective_swap.swap_tables) called directly on the corpus of foreign schemas
(tests/corpus/schemas/), on every server version the `pg` fixture offers: every table that holds rows (leaf
partitions, inheritance parents and children, names that need quoting, keys across schemas) swapped alone from a
pristine copy of its database.

test_corpus_restores.py restores every table alone through the restore steps, with no other session on the
database, so the swap's locks are always granted and what they cover is never seen. Here, per table:

- for every table a foreign key links it to (read from pg_constraint by this test, partition copies of the keys
  included), a real session holding ROW EXCLUSIVE there (an open writer) gets the swap refused for now, naming
  that session, with nothing changed: the lock plan covers that table;
- with sessions holding the table and every such table open for reading (ACCESS SHARE, an open transaction
  each), the swap of the damaged table goes through and puts back exactly its rows: readers go on. A table with
  enabled rules is the exception: the swap disables them, which takes ACCESS EXCLUSIVE, so its plan takes that
  up front and a reader of the table gets the swap refused for now, named, until it has gone.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from dbops.errors import RestoreBusy
from dbops.postgres.connection import ConnectionSpec, connect
from dbops.restore.models import TablePlan
from dbops.restore.selective_swap.swap import SwapLimits, swap_tables
from local_stack.postgres import LocalPostgres
from tests.corpus import harness

pytestmark = pytest.mark.corpus

SCHEMAS = sorted((Path(__file__).parent / "schemas").glob("*.sql"))
BUSY = SwapLimits(lock_timeout_s=0.05, lock_wait_budget_s=0.3)
# the tables a foreign key links a table to, either way, as regclass prints them (the table itself left out)
LINKED = """
    SELECT DISTINCT CASE WHEN k.conrelid = t.oid THEN k.confrelid ELSE k.conrelid END::regclass::text
    FROM pg_constraint k, (SELECT %s::regclass::oid) t(oid)
    WHERE k.contype = 'f' AND t.oid IN (k.conrelid, k.confrelid) AND k.conrelid <> k.confrelid
    ORDER BY 1
"""
RULES = "SELECT count(*) FROM pg_rewrite WHERE ev_class = %s::regclass AND rulename <> '_RETURN' AND ev_enabled <> 'D'"


@pytest.fixture(scope="module", params=SCHEMAS, ids=[p.stem for p in SCHEMAS])
def loaded(request: pytest.FixtureRequest, pg: LocalPostgres) -> Iterator[tuple[ConnectionSpec, ConnectionSpec]]:
    """(the schema loaded into a fresh database, a pristine copy of it: the swap's scratch)."""
    schema: Path = request.param
    admin = ConnectionSpec.from_url(pg.url())
    missing = harness.missing_extensions(admin, harness.required_extensions(schema))
    if missing:
        pytest.skip(f"PostgreSQL {pg.major} here has no {' or '.join(missing)} extension, which {schema.name} needs")
    name = f"swap{schema.stem[:2]}_{uuid.uuid4().hex[:6]}"
    target = harness.load_schema(admin, schema, name)
    scratch = harness.create_database(admin, f"{name}_scratch", template=name)
    yield target, scratch
    if (pg.data_dir / "postmaster.pid").exists():
        for db in (name, f"{name}_scratch"):
            harness.drop_database(admin, db)


def _linked(spec: ConnectionSpec, table: harness.Table) -> tuple[list[str], bool]:
    """(the tables its foreign keys link it to, whether it has enabled rules)."""
    with connect(spec) as conn:
        rules = conn.execute(RULES, [table.quoted]).fetchone()
        return [r[0] for r in conn.execute(LINKED, [table.quoted]).fetchall()], bool(rules and rules[0])


def _open(spec: ConnectionSpec, relation: str, mode: str) -> psycopg.Connection[tuple[object, ...]]:
    """A session holding `mode` on `relation` in a transaction left open (the caller closes it)."""
    conn = psycopg.connect(**spec.connect_kwargs(), autocommit=False)
    conn.execute(sql.SQL("LOCK TABLE {} IN {} MODE").format(sql.SQL(relation), sql.SQL(mode)))
    return conn


def test_every_table_swapped_alone_locks_the_tables_its_keys_link_and_lets_readers_go_on(
    loaded: tuple[ConnectionSpec, ConnectionSpec], subtests: pytest.Subtests
) -> None:
    target, scratch = loaded
    admin = target.for_database("postgres")
    pristine = harness.fingerprints(target)
    tables = [t for t in harness.user_tables(target) if t.kind == "r"]
    assert tables
    for table in tables:
        if harness.fingerprints(target) != pristine:  # a failed subtest left its damage: start again
            harness.drop_database(admin, target.dbname)
            harness.create_database(admin, target.dbname, template=scratch.dbname)
        plan = [TablePlan(schema_name=table.schema, name=table.name, rows=0)]
        linked, ruled = _linked(target, table)
        for relation in linked:
            with subtests.test(msg=f"{table.quoted}: a writer on {relation}"):
                writer = _open(target, relation, "ROW EXCLUSIVE")
                try:
                    with pytest.raises(RestoreBusy) as refused:
                        swap_tables(scratch, target, plan, BUSY)
                    assert f"pid {writer.info.backend_pid}" in str(refused.value), str(refused.value)
                finally:
                    writer.close()
                assert not harness.content_difference(pristine, harness.fingerprints(target))
        with subtests.test(msg=f"{table.quoted}: readers on it and on {linked}"):
            done = harness.damage(target, table)
            damaged = harness.fingerprints(target)
            readers = [_open(target, relation, "ACCESS SHARE") for relation in [table.quoted, *linked]]
            try:
                if ruled:
                    with pytest.raises(RestoreBusy) as refused:
                        swap_tables(scratch, target, plan, BUSY)
                    assert f"pid {readers[0].info.backend_pid}" in str(refused.value), str(refused.value)
                    assert harness.fingerprints(target) == damaged
                    readers.pop(0).close()
                swap_tables(scratch, target, plan, BUSY)
            finally:
                for reader in readers:
                    reader.close()
            after = harness.fingerprints(target)
            assert not harness.content_difference(pristine, after), (
                f"after swapping {table.quoted} back (damaged: {done}): {harness.content_difference(pristine, after)}"
            )
