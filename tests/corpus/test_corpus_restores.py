"""Selective and full restores through the restore state machine, on a corpus of schemas the restore code was not
designed around (tests/corpus/schemas/), on every server version the `pg` fixture offers.

Per schema and server: one backup; then every table in turn is damaged and restored alone by its psql-style quoted
name, and the whole database must be as before the damage, content and structure; materialized views are refused
by name and refreshed after a restore of a table they read; a full restore into a new database must dump exactly
like a plain `pg_dump -Fc | pg_restore` copy. Two foreign-key cases must fail cleanly, naming what is in the way.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dbops import aws
from dbops.backup.catalog import BackupManifest
from dbops.backup.run import BackupRequest, run_backup
from dbops.errors import RestoreRefused
from dbops.postgres.connection import ConnectionSpec, connect
from dbops.restore.names import display
from dbops.restore.table_choice import resolve_tables
from local_stack.aws import LocalAws
from local_stack.postgres import LocalPostgres
from tests.corpus import harness
from tests.corpus.harness import psql_name
from tests.support import refusal, restore_environment

pytestmark = pytest.mark.corpus

Run = Callable[..., dict[str, Any]]
SCHEMAS = sorted((Path(__file__).parent / "schemas").glob("*.sql"))
FOREIGN_KEYS = Path(__file__).parent / "schemas" / "04_foreign_keys.sql"
DATABASE = "sprint_reports_v2"  # the configured database's name (tests.support.restore_environment)


@dataclass
class Corpus:
    """One schema loaded on one server, backed up once, with a plain copy made right after the backup."""

    schema: Path
    admin: ConnectionSpec
    source: ConnectionSpec
    reference: ConnectionSpec  # pg_dump -Fc | pg_restore of the source as backed up: the expected state
    bucket: str
    backup: BackupManifest
    extra: list[str] = field(default_factory=list)  # databases a test made, dropped with the corpus


def _new_bucket() -> str:
    name = f"dbops-corpus-{uuid.uuid4().hex[:12]}"
    aws.client("s3").create_bucket(Bucket=name)
    return name


def _load(pg: LocalPostgres, schema: Path) -> tuple[ConnectionSpec, ConnectionSpec]:
    """(admin, the schema loaded into a fresh database); skips when the server lacks an extension it needs."""
    admin = ConnectionSpec.from_url(pg.url())
    missing = harness.missing_extensions(admin, harness.required_extensions(schema))
    if missing:
        pytest.skip(f"PostgreSQL {pg.major} here has no {' or '.join(missing)} extension, which {schema.name} needs")
    name = f"corpus{schema.stem[:2]}_{uuid.uuid4().hex[:6]}"
    return admin, harness.load_schema(admin, schema, name)


@pytest.fixture(scope="module", params=SCHEMAS, ids=[p.stem for p in SCHEMAS])
def corpus(request: pytest.FixtureRequest, pg: LocalPostgres, local_aws: LocalAws) -> Iterator[Corpus]:
    admin, source = _load(pg, request.param)
    bucket = _new_bucket()
    backup = run_backup(source, BackupRequest(database=DATABASE, bucket=bucket))
    reference = harness.copy_database(source, f"{source.dbname}_ref")
    made = Corpus(request.param, admin, source, reference, bucket, backup)
    # the harness checks itself: the plain copy holds what the source holds, and dumps exactly like it
    assert harness.fingerprints(reference) == harness.fingerprints(source)
    assert harness.structure(reference) == harness.structure(source)
    differences = harness.dump_difference(
        harness.plain_dump(source), harness.plain_dump(reference), (source.dbname, reference.dbname)
    )
    assert differences == (Counter(), Counter()), differences
    yield made
    if (pg.data_dir / "postmaster.pid").exists():
        for name in [source.dbname, reference.dbname, *made.extra]:
            harness.drop_database(admin, name)


@pytest.fixture
def configured(corpus: Corpus, monkeypatch: pytest.MonkeyPatch) -> Corpus:
    """The restore steps pointed at the corpus database and its bucket."""
    for key, value in restore_environment(corpus.source, corpus.bucket).items():
        monkeypatch.setenv(key, value)
    return corpus


def _reset(corpus: Corpus) -> None:
    """The source back as it was backed up (after a restore that failed or left something behind)."""
    harness.drop_database(corpus.admin, corpus.source.dbname)
    harness.create_database(corpus.admin, corpus.source.dbname, template=corpus.reference.dbname)


def test_full_restore_into_a_new_database_dumps_like_a_plain_dump_and_restore(
    configured: Corpus, run_restore: Run
) -> None:
    corpus = configured
    target = f"{corpus.source.dbname}_full"
    corpus.extra.append(target)

    result = run_restore(target=target)

    assert result["status"] == "SUCCEEDED", result.get("cause")
    restored = harness.plain_dump(corpus.source.for_database(target))
    expected = harness.plain_dump(corpus.reference)
    only_restored, only_expected = harness.dump_difference(restored, expected, (target, corpus.reference.dbname))
    assert not only_restored and not only_expected, (
        f"the restored database's dump differs from a plain pg_dump | pg_restore copy's: "
        f"{sum(only_expected.values())} lines missing, e.g. {list(only_expected)[:8]}; "
        f"{sum(only_restored.values())} lines extra, e.g. {list(only_restored)[:8]}"
    )


def test_every_table_restored_alone_puts_back_exactly_its_rows(
    configured: Corpus, run_restore: Run, subtests: pytest.Subtests
) -> None:
    """One selective restore per table (partitioned parents included: all their partitions come back), each after
    a real damage to that table; then every materialized view is refused by name."""
    corpus = configured
    spec = corpus.source
    pristine = harness.fingerprints(spec)
    pristine_structure = harness.structure(spec)
    tables = harness.user_tables(spec)
    assert tables, f"{corpus.schema.name} has no tables"
    dirty = False
    for table in tables:
        with subtests.test(msg=table.quoted):
            if dirty:
                _reset(corpus)
            dirty = True
            views = harness.materialized_views_reading(spec, table.key)
            done = harness.damage(spec, table)
            harness.refresh(spec, views)  # the views now hold the damaged rows: the restore must refresh them
            damaged = harness.fingerprints(spec)

            result = run_restore(tables=[table.quoted])

            assert result["status"] == "SUCCEEDED", f"restore of {table.quoted} after {done}: {result.get('cause')}"
            after = harness.fingerprints(spec)
            assert not harness.content_difference(pristine, after), (
                f"after restoring {table.quoted} (damaged: {done}; "
                f"damage changed {harness.content_difference(pristine, damaged)}), tables differ from before the "
                f"damage: {harness.content_difference(pristine, after)}"
            )
            changed = harness.structure_difference(pristine_structure, harness.structure(spec))
            assert not changed, f"after restoring {table.quoted}, structure differs: {changed}"
            assert not harness.stale_materialized_views(spec, views), (
                f"after restoring {table.quoted}, materialized views reading it were not refreshed: "
                f"{harness.stale_materialized_views(spec, views)}"
            )
            dirty = False
    for view in harness.materialized_views(spec):
        name = psql_name(*view)
        with subtests.test(msg=f"materialized view {name} by name"):
            if dirty:
                _reset(corpus)
            dirty = True
            before = harness.fingerprints(spec)

            result = run_restore(tables=[name])

            assert result["status"] == "SUCCEEDED", f"a restore of materialized view {name} by name was not refused"
            cause = refusal(result)
            assert view[1] in cause and "materialized view" in cause.lower() and "refresh" in cause.lower(), (
                f"the refusal of {name} does not say it is a materialized view refreshed after its tables: {cause}"
            )
            assert harness.fingerprints(spec) == before
            dirty = False


# ---------------------------------------------------------------------------------------------------------------
# foreign keys in the way of a selective restore


def test_a_misspelled_table_is_refused_with_the_table_meant_suggested(
    corpus: Corpus, subtests: pytest.Subtests
) -> None:
    """The did-you-mean ranking on schemas it was not designed around: each table's name typed with one letter too
    many (in its schema, as psql writes it) is refused by the backup's manifest, the table meant among the names
    suggested."""
    tables = {(t.schema_name, t.name) for t in corpus.backup.tables}
    for t in corpus.backup.tables:
        if (t.schema_name, t.name + "x") in tables:
            continue  # the misspelling names another table
        typed = psql_name(t.schema_name, t.name + "x")
        with subtests.test(table=typed):
            with pytest.raises(RestoreRefused) as refused:
                resolve_tables([typed], corpus.backup)
            message = str(refused.value)
            assert "; did you mean " in message, message
            suggested = message.split("; did you mean ", 1)[1].removesuffix("?")
            assert f", {display(t.schema_name, t.name)}, " in f", {suggested}, ", message


@pytest.fixture
def fk_database(pg: LocalPostgres, local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> Iterator[Corpus]:
    """04_foreign_keys loaded into a fresh database, backed up, the restore steps pointed at it."""
    admin, source = _load(pg, FOREIGN_KEYS)
    bucket = _new_bucket()
    for key, value in restore_environment(source, bucket).items():
        monkeypatch.setenv(key, value)
    backup = run_backup(source, BackupRequest(database=DATABASE, bucket=bucket))
    yield Corpus(FOREIGN_KEYS, admin, source, source, bucket, backup)
    if (pg.data_dir / "postmaster.pid").exists():
        harness.drop_database(admin, source.dbname)


def _mentions_key(cause: str, keys: list[int]) -> bool:
    return any(re.search(rf"(?<![\w.]){k}(?![\w.])", cause) for k in keys)


def _names_table(cause: str, schema: str, name: str) -> bool:
    return re.search(rf'"?{re.escape(schema)}"?\."?{re.escape(name)}\b', cause) is not None


def test_restoring_a_child_whose_backup_rows_reference_a_parent_deleted_since_fails_and_changes_nothing(
    fk_database: Corpus, run_restore: Run
) -> None:
    spec = fk_database.source
    with connect(spec) as conn:
        customers = [
            int(r[0])
            for r in conn.execute(
                "SELECT DISTINCT customer_id FROM billing.invoices WHERE customer_id > 200 ORDER BY 1 LIMIT 2"
            ).fetchall()
        ]
        invoices = [
            int(r[0])
            for r in conn.execute(
                "SELECT id FROM billing.invoices WHERE customer_id = ANY(%s) ORDER BY 1", [customers]
            ).fetchall()
        ]
        # the customers go, and with them their invoices (NO ACTION: deleted first) and addresses (cascade)
        conn.execute("DELETE FROM billing.invoices WHERE customer_id = ANY(%s)", [customers])
        conn.execute("DELETE FROM crm.customers WHERE id = ANY(%s)", [customers])
    before = harness.fingerprints(spec)
    before_structure = harness.structure(spec)

    result = run_restore(tables=[psql_name("billing", "invoices")])

    assert result["status"] == "FAILED", "rows referencing deleted customers were restored"
    cause = str(result.get("cause"))
    assert "invoices_customer_fk" in cause, f"the cause does not name the constraint: {cause}"
    assert _names_table(cause.replace("invoices_customer_fk", ""), "billing", "invoices"), (
        f"the cause does not name the table billing.invoices: {cause}"
    )
    assert _mentions_key(cause, customers + invoices), (
        f"the cause names none of the offending keys (customers {customers}, invoices {invoices}): {cause}"
    )
    assert not harness.content_difference(before, harness.fingerprints(spec))
    assert not harness.structure_difference(before_structure, harness.structure(spec))


def test_restoring_a_parent_whose_new_rows_are_referenced_by_a_table_not_restored_fails_and_deletes_nothing(
    fk_database: Corpus, run_restore: Run
) -> None:
    spec = fk_database.source
    customers, addresses = [9001, 9002], [9101, 9102, 9103]
    with connect(spec) as conn:  # customers added since the backup, with addresses (ON DELETE CASCADE)
        conn.execute(
            "INSERT INTO crm.customers (id, name, country) "
            "SELECT c, 'new customer ' || c, 'DE' FROM unnest(%s::int[]) c",
            [customers],
        )
        conn.execute(
            "INSERT INTO crm.addresses (id, customer_id, line) "
            "SELECT a, %s, a || ' New Street' FROM unnest(%s::int[]) a",
            [customers[0], addresses[:2]],
        )
        conn.execute(
            "INSERT INTO crm.addresses (id, customer_id, line) VALUES (%s, %s, 'Other Street')",
            [addresses[2], customers[1]],
        )
    before = harness.fingerprints(spec)
    before_structure = harness.structure(spec)

    result = run_restore(tables=[psql_name("crm", "customers")])

    assert result["status"] == "FAILED", "the restore deleted customers that addresses reference (cascading)"
    cause = str(result.get("cause"))
    assert "addresses_customer_fk" in cause, f"the cause does not name the constraint: {cause}"
    assert _names_table(cause.replace("addresses_customer_fk", ""), "crm", "addresses"), (
        f"the cause does not name the referencing table crm.addresses: {cause}"
    )
    assert _mentions_key(cause, customers + addresses), (
        f"the cause names none of the offending keys (customers {customers}, addresses {addresses}): {cause}"
    )
    after = harness.fingerprints(spec)
    assert after[("crm", "addresses")] == before[("crm", "addresses")], "addresses were deleted by the restore"
    assert not harness.content_difference(before, after)
    assert not harness.structure_difference(before_structure, harness.structure(spec))


def test_corpus_has_every_class_of_schema() -> None:
    """The corpus README lists every schema file (and nothing else)."""
    readme = (Path(__file__).parent / "schemas" / "README.md").read_text()
    listed = set(re.findall(r"`(\d\d_[a-z_]+\.sql)`", readme))
    assert listed == {p.name for p in SCHEMAS}
    assert len(SCHEMAS) >= 10
