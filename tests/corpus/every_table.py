"""Restore every table of PostgreSQL's regression database alone, one after another (too long for `make test`:
about 20 minutes for 616 tables on 2 cores; the suite restores a sample of every kind).

    PYTHONPATH=functions:. .venv/bin/python -m tests.corpus.every_table [--table '"schema"."name"' ...]

A throwaway PostgreSQL 18 and an in-process moto server; the regression database is built (regression.py), backed
up once, and each table restored through the restore steps (validate, stage, check, swap, finish) without damage:
what is proven is that the scratch copy restores, checks and swaps for every kind of table. Prints each failure
and a count; exits 1 when any failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from dbops import aws
from dbops.backup.run import BackupRequest, run_backup
from dbops.errors import DbopsError
from dbops.postgres.connection import ConnectionSpec
from dbops.restore import steps
from dbops.restore.models import RestoreRequest, RestoreState
from dbops.restore.names import display
from dbops.settings import FunctionSettings
from local_stack.aws import LocalAws
from local_stack.postgres import LocalPostgres, embedded_bin_dir
from tests.corpus.regression import build_regression_database

STEPS = (steps.validate, steps.stage, steps.check, steps.swap, steps.finish)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--table", action="append", help="only these tables (psql-style names)")
    args = parser.parse_args()
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
    server = LocalPostgres(embedded_bin_dir()).start()
    try:
        admin = ConnectionSpec.from_url(server.url())
        build_regression_database(admin, "regression", server.bin_dir / "psql")
        spec = admin.for_database("regression")
        with LocalAws():
            aws.client("s3").create_bucket(Bucket="dbops-every-table")
            manifest = run_backup(spec, BackupRequest(database="regression", bucket="dbops-every-table"))
            os.environ["DBOPS_BUCKET"] = "dbops-every-table"
            os.environ["DBOPS_DATABASES"] = json.dumps([{"name": "regression", "url": server.url("regression")}])
            settings = FunctionSettings()
            names = [display(t.schema_name, t.name) for t in manifest.tables if t.relkind != "m"]
            chosen = [n for n in names if not args.table or n in args.table]
            failed = 0
            for name in chosen:
                state = RestoreState(request=RestoreRequest(tables=[name]))
                try:
                    for step in STEPS:
                        state = step(state, settings)
                except DbopsError as exc:
                    failed += 1
                    print(f"FAILED {name}: {type(exc).__name__}: {exc}", flush=True)
                    steps.rollback(state, settings)
            print(f"{len(chosen)} tables restored alone, {failed} failed")
            return 1 if failed else 0
    finally:
        server.destroy()


if __name__ == "__main__":
    sys.exit(main())
