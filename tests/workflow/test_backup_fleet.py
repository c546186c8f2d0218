"""`dbops backups start` over 100 databases, most failing: every failure plainly and every success by its id."""

from __future__ import annotations

import json
import uuid

import pytest

from dbops.backup import catalog
from dbops.cli import main
from dbops.postgres.connection import ConnectionSpec
from local_stack.aws import LocalAws
from local_stack.postgres import LocalPostgres, free_port

SUCCEEDING = [f"ok_{n:03d}" for n in range(30)]
REFUSED = [f"refused_{n:03d}" for n in range(35)]  # a port where nothing listens
MISSING = [f"missing_{n:03d}" for n in range(35)]  # a database the server does not have
FLEET = SUCCEEDING + REFUSED + MISSING


@pytest.fixture(scope="module")
def fleet_machine(local_aws: LocalAws) -> str:
    from local_stack.workflow import deploy_backup_workflow  # synthesizes with CDK: only when a test needs it

    return deploy_backup_workflow(
        FLEET, max_concurrency=8, name=f"dbops-backup-fleet-{uuid.uuid4().hex[:8]}", fargate_task=False
    )


def test_a_fleet_run_prints_every_failure_and_every_success(
    pg18: LocalPostgres,
    bucket: str,
    fleet_machine: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = ConnectionSpec.from_url(pg18.url())  # every succeeding name backs up this one small database
    assert spec.password is not None
    login = f"{spec.user}:{spec.password.get_secret_value()}"
    url = f"postgresql://{login}@{spec.host}:{spec.port}/{spec.dbname}"
    nowhere = free_port()
    configured = (
        [{"name": name, "url": url} for name in SUCCEEDING]
        + [{"name": name, "url": f"postgresql://{login}@127.0.0.1:{nowhere}/db"} for name in REFUSED]
        + [{"name": name, "url": f"postgresql://{login}@{spec.host}:{spec.port}/{name}"} for name in MISSING]
    )
    monkeypatch.setenv("DBOPS_BUCKET", bucket)
    monkeypatch.setenv("DBOPS_DATABASES", json.dumps(configured))

    code = main(["backups", "start", "--kind", "manual", "--state-machine-arn", fleet_machine])

    out = capsys.readouterr().out
    assert code == 1, out
    lines = out.splitlines()
    committed = {e.manifest.database: e.manifest.id for e in catalog.list_backups(bucket)}
    assert sorted(committed) == SUCCEEDING
    for name in SUCCEEDING:
        assert f"  {name}: backup {committed[name]}" in lines, name
    for name in REFUSED + MISSING:
        [line] = [line for line in lines if line.startswith(f"  {name}: ")]
        assert f"{name}: {name}" not in line and f"of database {name}" not in line, line  # its name once
        assert '\\"' not in line and "errorMessage" not in line, line  # the message, not the Lambda's JSON
    refused = next(line for line in lines if line.startswith(f"  {REFUSED[0]}: "))
    assert refused.count(REFUSED[0]) == 1 and refused.endswith("Connection refused"), refused
    assert refused.startswith(f"  {REFUSED[0]}: backup failed: cannot connect to db on 127.0.0.1:"), refused
    missing = next(line for line in lines if line.startswith(f"  {MISSING[0]}: "))
    assert f'database "{MISSING[0]}" does not exist' in missing, missing
    assert spec.password.get_secret_value() not in out
    assert "FAILED: 70 of 100 backups failed" in out
