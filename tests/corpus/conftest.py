"""The regression database (PostgreSQL's own test schema, see regression.py) on each session server."""

from __future__ import annotations

import pytest

from dbops.connection import ConnectionSpec
from dbops.local.postgres import LocalPostgres
from tests.corpus.regression import build_regression_database

REGRESSION_DB = "regression"


@pytest.fixture(scope="session")
def regression_db(pg: LocalPostgres) -> ConnectionSpec:
    """Built once per server version (about half a minute); tests must not change it, as it is shared."""
    admin = ConnectionSpec.from_url(pg.url())
    # the server's own psql: Debian's 15 for the 15 server, the wheel's 18 for the 18 server
    build_regression_database(admin, REGRESSION_DB, pg.bin_dir / "psql")
    return admin.for_database(REGRESSION_DB)
