"""The CDK-synthesized restore state machine, deployed into the moto server and run for real."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from dbops.connection import ConnectionSpec
from dbops.local.aws import LocalAws
from dbops.local.workflow import deploy_restore_workflow
from dbops.restore.models import RestoreRequest
from dbops.restore.runner import follow, start_restore


@pytest.fixture(scope="session")
def restore_machine(local_aws: LocalAws) -> str:
    return deploy_restore_workflow(retry_interval_s=1, retry_attempts=1)


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch, bucket: str) -> Callable[..., None]:
    """Point the step handlers at a database (as the deployed functions' environment would)."""

    def apply(spec: ConnectionSpec, **database: Any) -> None:
        assert spec.password is not None
        url = f"postgresql://{spec.user}:{spec.password.get_secret_value()}@{spec.host}:{spec.port}/{spec.dbname}"
        monkeypatch.setenv("DBOPS_BUCKET", bucket)
        monkeypatch.setenv("DBOPS_DATABASES", json.dumps([{"name": "sprint_reports_v2", "url": url, **database}]))
        monkeypatch.setenv("DBOPS_PRE_RESTORE_KEEP_DAYS", "7")

    return apply


@pytest.fixture
def run_restore(restore_machine: str) -> Callable[..., dict[str, Any]]:
    def run(**request: Any) -> dict[str, Any]:
        states: list[str] = []
        description = follow(
            start_restore(restore_machine, RestoreRequest(**request)),
            lambda kind, name: states.append(name) if kind == "entered" else None,
            poll_s=0.2,
        )
        description["states"] = states
        return description

    return run
