"""The Alembic advice on transactions shows only where it applies: an Alembic upgrade whose env.py runs every
revision in one transaction (the fixture project tests/fixtures/alembic_sprint_reports), not one whose env.py sets
transaction_per_migration=True, not a downgrade, not another tool."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dbops.rehearsal import advice

FIXTURE = Path(__file__).parents[1] / "fixtures" / "alembic_sprint_reports"
UPGRADE = ["alembic", "upgrade", "head"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(FIXTURE, copy)
    return copy


def _held(one_transaction: bool) -> str:
    return advice.advise(
        advice.Situation(
            statement="UPDATE report_snapshots SET x = 1",
            mode="RowExclusiveLock",
            table="public.report_snapshots",
            size="7.0 MB",
            lock="6.00s",
            rewritten=False,
            held_past_statement=True,
            server_major=18,
            alembic_one_transaction=one_transaction,
        )
    )


def test_the_fixture_project_runs_its_upgrade_in_one_transaction(project: Path) -> None:
    assert advice.alembic_one_transaction(UPGRADE, project)
    assert advice.alembic_one_transaction(["alembic", "-c", "alembic.ini", "upgrade", "head"], project)
    assert "transaction_per_migration=True" in _held(True)


def test_not_for_an_env_py_that_sets_transaction_per_migration(project: Path) -> None:
    env = project / "env.py"
    env.write_text(
        env.read_text().replace(
            "context.configure(connection=connection, target_metadata=None)",
            "context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)",
        )
    )
    assert not advice.alembic_one_transaction(UPGRADE, project)


@pytest.mark.parametrize(
    "command", [["alembic", "downgrade", "-1"], ["python", "migrate.py", "upgrade"], ["flyway", "migrate"]]
)
def test_not_for_a_downgrade_or_another_tool(project: Path, command: list[str]) -> None:
    assert not advice.alembic_one_transaction(command, project)


def test_no_env_py_no_alembic_advice(tmp_path: Path) -> None:
    assert not advice.alembic_one_transaction(UPGRADE, tmp_path)
    text = _held(False)
    assert "held until the transaction ended" in text and "Alembic" not in text
