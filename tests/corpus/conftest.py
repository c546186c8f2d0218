"""The regression database (PostgreSQL's own test schema, see regression.py) for each session server version."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dbops.postgres.connection import ConnectionSpec
from local_stack.postgres import LocalPostgres
from tests.corpus.regression_cluster import DBNAME, start_copy

REGRESSION_DB = DBNAME


@pytest.fixture(scope="session")
def regression_servers() -> Iterator[dict[str, LocalPostgres]]:
    """The regression servers of this session by binaries' folder, destroyed at its end (as `servers`)."""
    started: dict[str, LocalPostgres] = {}
    yield started
    for server in started.values():
        server.destroy()


@pytest.fixture(scope="session")
def regression_db(pg: LocalPostgres, regression_servers: dict[str, LocalPostgres]) -> ConnectionSpec:
    """The regression database on a server of its own of `pg`'s version: a private copy of the cluster built once
    per version and machine (regression_cluster.py), started on first use. Tests must not change it, as the
    session's tests share it; what they do on its server (copies, restores) stays on that server."""
    key = str(pg.bin_dir)
    if key not in regression_servers:
        regression_servers[key] = start_copy(pg.bin_dir)
    return ConnectionSpec.from_url(regression_servers[key].url(REGRESSION_DB))
