"""The parallel backup format on the corpus: every schema backed up in ranges of one page (so every table is split
wherever it has more than one), verified, restored in full into a new database, which must hold the same rows
(table fingerprints) and dump exactly like the source (plain pg_dump compared as multisets of lines); restored
table by table (each with its partitions or children, as Stage stages a selective restore), each holding the
source's rows; and one table backed up alone (a selective restore's safety backup) restoring the same."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from dbops import aws
from dbops.backup.catalog import BackupManifest, CatalogEntry, TableStat
from dbops.backup.parallel.run import run_parallel_backup
from dbops.backup.run import BackupRequest
from dbops.backup.verify import verify_entry
from dbops.postgres.connection import ConnectionSpec
from dbops.restore.parallel_load import restore_parallel
from local_stack.aws import LocalAws
from local_stack.postgres import LocalPostgres
from tests.corpus import harness

pytestmark = pytest.mark.corpus

SCHEMAS = sorted((Path(__file__).parent / "schemas").glob("*.sql"))
PAGE = 8192


@dataclass
class BackedUp:
    admin: ConnectionSpec
    name: str
    source: ConnectionSpec
    bucket: str
    manifest: BackupManifest
    made: list[str]  # databases to drop afterwards

    def new_database(self, suffix: str) -> ConnectionSpec:
        self.made.append(f"{self.name}_{suffix}")
        return harness.create_database(self.admin, self.made[-1])

    def backup(self, tables: list[tuple[str, str]]) -> BackupManifest:
        return _backup(self.source, self.bucket, tables)


def _backup(source: ConnectionSpec, bucket: str, tables: list[tuple[str, str]] | None = None) -> BackupManifest:
    request = BackupRequest(database="corpus", bucket=bucket, tables=tables)
    # small_bytes=0: every table in COPY jobs, none in pg_dump's archive (the regression database's test covers both)
    manifest = run_parallel_backup(source, request, workers=2, range_bytes=PAGE, small_bytes=0)
    verify_entry(bucket, CatalogEntry(manifest=manifest))
    return manifest


@contextmanager
def backed_up(schema: Path, pg: LocalPostgres) -> Iterator[BackedUp]:
    admin = ConnectionSpec.from_url(pg.url())
    missing = harness.missing_extensions(admin, harness.required_extensions(schema))
    if missing:
        pytest.skip(f"PostgreSQL {pg.major} here has no {' or '.join(missing)} extension, which {schema.name} needs")
    name = f"par{schema.stem[:2]}_{uuid.uuid4().hex[:6]}"
    bucket = f"dbops-parallel-{uuid.uuid4().hex[:12]}"
    aws.client("s3").create_bucket(Bucket=bucket)
    made = [name]
    try:
        source = harness.load_schema(admin, schema, name)
        yield BackedUp(admin, name, source, bucket, _backup(source, bucket), made)
    finally:
        for db in made:
            harness.drop_database(admin, db)


def _with_descendants(table: TableStat, tables: list[TableStat]) -> list[TableStat]:
    found = [table]
    for t in found:
        found.extend(c for c in tables if t.oid in c.parents and c not in found)
    return found


@pytest.mark.parametrize("schema", SCHEMAS, ids=[p.stem for p in SCHEMAS])
def test_parallel_backup_restores_like_pg_dump(schema: Path, pg: LocalPostgres, local_aws: LocalAws) -> None:
    with backed_up(schema, pg) as corpus:
        manifest = corpus.manifest
        assert manifest.format == "parallel" and manifest.workers == 2
        restored = corpus.new_database("copy")
        restore_parallel(corpus.bucket, manifest, restored, jobs=2)

        source = harness.fingerprints(corpus.source)
        assert harness.fingerprints(restored) == source
        copied: Counter[tuple[str, str]] = Counter()
        for obj in manifest.data:
            copied[(obj.schema_name, obj.table)] += obj.rows  # as psql reported each COPY's
        assert dict(copied) == {key: source[key][0] for key in copied}
        only_restored, only_source = harness.dump_difference(
            harness.plain_dump(restored), harness.plain_dump(corpus.source), (restored.dbname, corpus.name)
        )
        assert (only_restored, only_source) == (Counter(), Counter()), (
            f"{sum(only_source.values())} lines missing, e.g. {list(only_source)[:8]}; "
            f"{sum(only_restored.values())} extra, e.g. {list(only_restored)[:8]}"
        )
        counted = {t.oid: t.rows for t in manifest.tables}
        for obj in manifest.data:
            assert obj.table_oid in counted


@pytest.mark.parametrize("schema", SCHEMAS, ids=[p.stem for p in SCHEMAS])
def test_parallel_backup_restores_table_by_table(schema: Path, pg: LocalPostgres, local_aws: LocalAws) -> None:
    with backed_up(schema, pg) as corpus:
        expected = harness.fingerprints(corpus.source)
        tables = [t for t in corpus.manifest.tables if t.relkind in ("r", "p") and not t.parents]
        for i, table in enumerate(tables):
            chosen = _with_descendants(table, corpus.manifest.tables)
            restored = corpus.new_database(f"t{i}")
            restore_parallel(corpus.bucket, corpus.manifest, restored, chosen={t.oid for t in chosen if t.oid})
            got = harness.fingerprints(restored)
            keys = [(t.schema_name, t.name) for t in chosen if (t.schema_name, t.name) in expected]
            assert {k: got.get(k) for k in keys} == {k: expected[k] for k in keys}, table.qualified
        # one table (the one with the most descendants) backed up alone restores the same
        table = max(tables, key=lambda t: len(_with_descendants(t, corpus.manifest.tables)))
        alone = corpus.backup([(table.schema_name, table.name)])
        in_it = {t.qualified for t in _with_descendants(table, corpus.manifest.tables)}
        assert alone.tables_only and {t.qualified for t in alone.tables} == in_it
        restored = corpus.new_database("alone")
        restore_parallel(corpus.bucket, alone, restored, chosen={t.oid for t in alone.tables if t.oid})
        got = harness.fingerprints(restored)
        keys = [k for k in expected if f"{k[0]}.{k[1]}" in in_it]
        assert {k: got.get(k) for k in keys} == {k: expected[k] for k in keys}
