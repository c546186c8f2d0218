"""A disaster drill request (the DR stack's schedule): a drill of the newest verified backup, and nothing else."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from dbops.restore.models import RestoreRequest


def test_the_scheduled_disaster_drill_parses() -> None:
    request = RestoreRequest.model_validate(
        {"backup": "latest", "database": "sprint_reports_v2", "mode": "drill", "disaster": True}
    )
    assert request.disaster and request.mode == "drill"
    assert RestoreRequest().disaster is False  # every other request is no disaster drill


@pytest.mark.parametrize(
    "other",
    [
        {"mode": "restore"},
        {"mode": "drill", "backup": "20261207T220238Z-8c07af"},
        {"mode": "drill", "kind": "predeploy"},
        {"mode": "drill", "tables": ["users"]},
    ],
)
def test_a_disaster_drill_of_anything_but_the_newest_verified_backup_is_refused(other: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="disaster is a drill of the newest verified backup"):
        RestoreRequest.model_validate({"disaster": True, **other})
