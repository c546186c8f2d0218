"""The parallel backup format on the corpus: every schema backed up in ranges of one page (so every table is split
wherever it has more than one), verified, restored in full into a new database, which must hold the same rows
(table fingerprints) and dump exactly like the source (plain pg_dump compared as multisets of lines)."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import pytest

from dbops import aws
from dbops.backup.catalog import CatalogEntry
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


@pytest.mark.parametrize("schema", SCHEMAS, ids=[p.stem for p in SCHEMAS])
def test_parallel_backup_restores_like_pg_dump(schema: Path, pg: LocalPostgres, local_aws: LocalAws) -> None:
    admin = ConnectionSpec.from_url(pg.url())
    missing = harness.missing_extensions(admin, harness.required_extensions(schema))
    if missing:
        pytest.skip(f"PostgreSQL {pg.major} here has no {' or '.join(missing)} extension, which {schema.name} needs")
    name = f"par{schema.stem[:2]}_{uuid.uuid4().hex[:6]}"
    source = harness.load_schema(admin, schema, name)
    bucket = f"dbops-parallel-{uuid.uuid4().hex[:12]}"
    aws.client("s3").create_bucket(Bucket=bucket)
    target = f"{name}_copy"
    try:
        manifest = run_parallel_backup(
            source, BackupRequest(database="corpus", bucket=bucket), workers=2, range_bytes=PAGE
        )
        assert manifest.format == "parallel" and manifest.workers == 2
        verify_entry(bucket, CatalogEntry(manifest=manifest))
        restored = harness.create_database(admin, target)
        restore_parallel(bucket, manifest, restored, jobs=2)

        assert harness.fingerprints(restored) == harness.fingerprints(source)
        only_restored, only_source = harness.dump_difference(
            harness.plain_dump(restored), harness.plain_dump(source), (target, name)
        )
        assert (only_restored, only_source) == (Counter(), Counter()), (
            f"{sum(only_source.values())} lines missing, e.g. {list(only_source)[:8]}; "
            f"{sum(only_restored.values())} extra, e.g. {list(only_restored)[:8]}"
        )
        counted = {t.oid: t.rows for t in manifest.tables}
        for obj in manifest.data:
            assert obj.table_oid in counted
    finally:
        for db in (name, target):
            harness.drop_database(admin, db)
