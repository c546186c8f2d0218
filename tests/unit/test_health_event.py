"""The health handler accepts a schedule (every database) or a direct invoke naming one; nothing else."""

from __future__ import annotations

import pytest

from handlers.health import parse_event
from local_stack.lambda_runtime import scheduled_event


def test_scheduled_event_means_every_database() -> None:
    assert parse_event(scheduled_event("dbops-health")).database is None


def test_scheduled_event_detail_or_direct_invoke_names_a_database() -> None:
    assert parse_event(scheduled_event("r", {"database": "sprint_reports_v2"})).database == "sprint_reports_v2"
    assert parse_event({"database": "sprint_reports_v2"}).database == "sprint_reports_v2"


@pytest.mark.parametrize(
    ("event", "message"),
    [({"db": "x"}, "db: Extra inputs are not permitted"), ("x", "invalid health event"), ({"database": 5}, "database")],
)
def test_wrong_event_shape_is_a_clear_validation_error(event: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_event(event)
