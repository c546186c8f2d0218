"""The regression database (PostgreSQL's own test schema, see regression.py) on each session server."""

from __future__ import annotations

import pytest

from dbops.postgres.connection import ConnectionSpec
from local_stack.postgres import LocalPostgres
from tests.corpus.regression import build_regression_database

REGRESSION_DB = "regression"


_built: set[str] = set()  # the servers (data folders) the regression database is built on, this session


@pytest.fixture(scope="session")
def regression_db(pg: LocalPostgres) -> ConnectionSpec:
    """Built once per server version (about half a minute); tests must not change it, as it is shared."""
    admin = ConnectionSpec.from_url(pg.url())
    if str(pg.data_dir) not in _built:
        # the server's own psql: Debian's 15 for the 15 server, the wheel's 18 for the 18 server
        build_regression_database(admin, REGRESSION_DB, pg.bin_dir / "psql")
        _built.add(str(pg.data_dir))
    return admin.for_database(REGRESSION_DB)
