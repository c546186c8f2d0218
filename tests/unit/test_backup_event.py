"""The backup handler accepts a scheduled event or a direct invoke, and refuses anything else clearly."""

from __future__ import annotations

import pytest

from handlers.backup import parse_event
from local_stack.lambda_runtime import scheduled_event


def test_scheduled_event_means_a_nightly_backup_of_every_database() -> None:
    invocation = parse_event(scheduled_event("dbops-nightly-backup"))
    assert invocation.kind == "nightly"
    assert invocation.database is None


def test_scheduled_event_detail_can_name_kind_and_database() -> None:
    invocation = parse_event(scheduled_event("r", {"kind": "predeploy", "database": "sprint_reports_v2"}))
    assert (invocation.kind, invocation.database) == ("predeploy", "sprint_reports_v2")


def test_direct_invoke_names_kind_and_database() -> None:
    invocation = parse_event({"kind": "predeploy", "database": "sprint_reports_v2"})
    assert invocation.kind == "predeploy"


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"kind": "weekly"}, "kind: Input should be 'nightly', 'predeploy', 'prerestore', 'manual' or 'pointintime'"),
        ({"knd": "nightly"}, "knd: Extra inputs are not permitted"),
        ("nightly", "invalid backup event"),
        ({"detail-type": "Object Created", "source": "aws.s3", "id": "1"}, "detail-type"),
    ],
)
def test_wrong_event_shape_is_a_clear_validation_error(event: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_event(event)
