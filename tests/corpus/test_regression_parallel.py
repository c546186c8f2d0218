"""A parallel backup of PostgreSQL's regression database (the shared one, built once per server version and only
read here) restored in full into a new database holds the same rows (table fingerprints) and dumps the same
(plain pg_dump compared as a multiset of lines) as the same database copied the plain way, `pg_dump -Fc |
pg_restore`: a dump and restore of the regression database does not give back the original exactly (inheritance
children get their columns in their parent's order, so their rows' text changes), so pg_dump's own round trip is
the reference, as for the single format's full restore (test_regression_restores.py). The larger tables are copied
in ranges, the small ones' rows are in the schema archive."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from dbops import aws
from dbops.backup.catalog import CatalogEntry
from dbops.backup.parallel.run import run_parallel_backup
from dbops.backup.run import BackupRequest
from dbops.backup.verify import verify_entry
from dbops.postgres.connection import ConnectionSpec
from dbops.restore.parallel_load import restore_parallel
from local_stack.aws import LocalAws
from tests.corpus import harness

pytestmark = pytest.mark.corpus

# ranges this small split the regression database's few larger tables (tenk1, onek, ...) into several objects;
# each object costs a psql session and an upload, so not smaller (the 14-schema corpus splits every page)
RANGE_BYTES = 256 * 1024
# tables from 1 MB (tenk1, ...) in COPY jobs, the thousand others' rows in pg_dump's archive: both paths at once
SMALL_BYTES = 1024 * 1024


def test_a_parallel_backup_of_the_regression_database_restores_like_pg_dump(
    regression_db: ConnectionSpec, local_aws: LocalAws
) -> None:
    admin = regression_db.for_database("postgres")
    bucket = f"dbops-regr-par-{uuid.uuid4().hex[:12]}"
    aws.client("s3").create_bucket(Bucket=bucket)
    request = BackupRequest(database="regression", bucket=bucket)
    manifest = run_parallel_backup(regression_db, request, workers=2, range_bytes=RANGE_BYTES, small_bytes=SMALL_BYTES)
    verify_entry(bucket, CatalogEntry(manifest=manifest))
    assert manifest.format == "parallel" and manifest.workers == 2
    assert len(manifest.data) > len({obj.table_oid for obj in manifest.data}), "no table was split into ranges"
    in_archive = [t for t in manifest.tables if t.relkind == "r" and t.oid not in {o.table_oid for o in manifest.data}]
    assert len(in_archive) > 100, "the small tables' rows are in the schema archive"

    target = f"regr_par_{uuid.uuid4().hex[:6]}"
    made = [target, f"{target}_plain"]
    try:
        restored = harness.create_database(admin, target)
        restore_parallel(bucket, manifest, restored, jobs=2)
        plain = harness.copy_database(regression_db, made[1])

        assert harness.fingerprints(restored) == harness.fingerprints(plain)
        only_restored, only_plain = harness.dump_difference(
            harness.plain_dump(restored), harness.plain_dump(plain), tuple(made)
        )
        assert (only_restored, only_plain) == (Counter(), Counter()), (
            f"{sum(only_plain.values())} lines missing, e.g. {list(only_plain)[:8]}; "
            f"{sum(only_restored.values())} extra, e.g. {list(only_restored)[:8]}"
        )
    finally:
        for db in made:
            harness.drop_database(admin, db)
