"""Every handler's event parsing, for any JSON-like event: a model, or one clear exception (ValueError or a
DbopsError, on one line, naming the problem) — never a TypeError, KeyError or AttributeError from deep inside,
and never pydantic's own multi-line ValidationError. Lambda shows the exception's type and message; that is
the operator's one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from dbops.errors import DbopsError
from dbops.restore.models import RestoreState
from handlers import backup, health, maintenance, rehearsal, restore, restore_task
from handlers.events import ScheduledEvent

# arbitrary JSON: what a direct invoke or a state machine can hand a function
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    # values the real fields take, right or wrong for the key they land on
    st.sampled_from(["nightly", "weekly", "analyze", "latest", "drill", "users", "a.b.c", "", "Scheduled Event"]),
)
JSON = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def shaped(keys: list[str], values: st.SearchStrategy[Any] = JSON) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts with the real keys (some of them) holding any values, plus now and then a key nobody knows."""
    real = st.dictionaries(st.sampled_from(keys), values, max_size=len(keys))
    return st.one_of(real, st.builds(lambda d, extra: {**d, **extra}, real, st.dictionaries(st.text(), values)))


def scheduled(detail: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """An EventBridge event, well or badly formed, whose detail is `detail`."""
    envelope = shaped(["detail-type", "source", "id", "time", "resources"])
    right = st.fixed_dictionaries(
        {"detail-type": st.just("Scheduled Event"), "source": st.just("aws.events"), "id": st.just("1")}
    )
    return st.builds(lambda env, d, det: {**env, **d, "detail": det}, envelope, st.one_of(right, st.just({})), detail)


def events_for(keys: list[str]) -> st.SearchStrategy[Any]:
    direct = shaped(keys)
    return st.one_of(JSON, direct, scheduled(st.one_of(direct, JSON)))


REQUEST_KEYS = ["backup", "kind", "database", "tables", "target", "mode", "dry_run"]
STATE_KEYS = ["request", "restore_id", "error", "rollback_error", "tables", "database", "backup_id", "work_db"]
REQUESTS = st.one_of(
    JSON, shaped(REQUEST_KEYS), shaped(REQUEST_KEYS, st.one_of(JSON, st.lists(st.sampled_from(["users", "a.b.c", ""]))))
)
STATES = st.one_of(
    JSON,
    REQUESTS,
    shaped(STATE_KEYS, st.one_of(JSON, REQUESTS)),
    st.builds(lambda s, r: {**s, "request": r}, shaped(STATE_KEYS), REQUESTS),
)


def assert_model_or_one_clear_error(parse: Callable[[Any], BaseModel], event: Any, model: type[BaseModel]) -> None:
    try:
        result = parse(event)
    except (ValueError, DbopsError) as exc:
        assert not isinstance(exc, ValidationError), f"pydantic's own error escaped: {exc}"
        message = str(exc)
        assert message.strip(), "an error with no message"
        assert "\n" not in message, f"more than one line: {message!r}"
        return
    assert isinstance(result, model)


@given(event=events_for(["kind", "database"]))
@example(event={})
@example(event=None)
@example(event=[])
@example(event="nightly")
@example(event={"kind": "weekly"})
def test_backup_events(event: Any) -> None:
    assert_model_or_one_clear_error(backup.parse_event, event, backup.BackupInvocation)


@given(event=events_for(["database"]))
@example(event={"database": 5})
def test_health_events(event: Any) -> None:
    assert_model_or_one_clear_error(health.parse_event, event, health.HealthInvocation)


@given(event=events_for(["task", "database", "dry_run"]))
@example(event={})
@example(event={"task": "weekly"})
def test_maintenance_events(event: Any) -> None:
    assert_model_or_one_clear_error(maintenance.parse_event, event, maintenance.MaintenanceInvocation)


@given(event=events_for(["database"]))
def test_expired_copies_events(event: Any) -> None:
    assert_model_or_one_clear_error(restore.parse_expired_copies_event, event, restore.ExpiredCopiesInvocation)


@given(event=STATES)
@example(event={"request": 5})
@example(event={"restore_id": "x"})
@example(event={"request": {}, "error": 5})
@example(event={"request": {"tables": ["a.b.c"]}})
def test_restore_step_states(event: Any) -> None:
    assert_model_or_one_clear_error(restore.parse_state, event, RestoreState)


@given(text=st.one_of(STATES.map(json.dumps), st.text(max_size=40), st.none()))
@example(text=None)
@example(text="")
@example(text="{")
def test_restore_task_states(text: str | None) -> None:
    assert_model_or_one_clear_error(restore_task.parse_task_state, text, RestoreState)


# the messages themselves: each names what is wrong


@pytest.mark.parametrize(
    ("parse", "event", "message"),
    [
        (backup.parse_event, {"kind": "weekly"}, "invalid backup event: kind: Input should be 'nightly'"),
        (backup.parse_event, None, r"invalid backup event: \(root\): Input should be a valid dictionary"),
        (health.parse_event, {"kind": "nightly"}, "invalid health event: kind: Extra inputs are not permitted"),
        (maintenance.parse_event, {}, "invalid maintenance event: task: Field required"),
        (maintenance.parse_event, {"task": "weekly"}, "invalid maintenance event: task: Input should be 'analyze'"),
        (restore.parse_expired_copies_event, [], "invalid expired copies event: \\(root\\)"),
        (restore.parse_state, {"request": 5}, r"invalid restore request: \(root\): Input should be a valid dictionary"),
        (restore.parse_state, {"restore_id": "x"}, "invalid restore state: request: Field required"),
        (restore.parse_state, {"request": {"tables": ["a.b.c"]}}, "invalid restore request: tables: .*too many dots"),
        (
            restore.parse_state,
            {"request": {}, "junk": 1},
            "invalid restore state: junk: Extra inputs are not permitted",
        ),
        (restore_task.parse_task_state, None, "DBOPS_RESTORE_STATE is not set"),
        (restore_task.parse_task_state, "{", "invalid restore state in DBOPS_RESTORE_STATE: .*Invalid JSON"),
        (restore_task.parse_task_state, '{"request": {}}', None),
        (restore_task.parse_rehearsal_state, '{"request": {"mode": "restore"}}', "request.mode: Input should be"),
        (rehearsal.parse_state, {"request": {"mode": "rehearse", "max_lock": "soon"}}, "cannot read duration|max_lock"),
        (rehearsal.parse_state, {"request": {"mode": "rehearse", "command": []}}, "command: List should have at least"),
        (rehearsal.parse_state, {"rehearsal_id": "x"}, "invalid rehearsal state: request: Field required"),
        (rehearsal.parse_state, {"request": {"mode": "rehearse"}}, None),
        (
            restore.parse_state,
            {"request": {"as_of": "2026-11-29 14:04:00"}},
            "as_of: Value error, give the moment with",
        ),
        (
            restore.parse_state,
            {"request": {"as_of": "2026-11-29 14:04:00+00", "backup": "20261129T020000Z-abcdef"}},
            "as_of restores from the RDS instance's point-in-time recovery: give no backup or kind",
        ),
    ],
)
def test_each_refusal_names_the_problem(parse: Callable[[Any], Any], event: Any, message: str | None) -> None:
    if message is None:
        assert parse(event) is not None
        return
    with pytest.raises(ValueError, match=message):
        parse(event)


def test_a_scheduled_event_with_a_bad_envelope_names_the_envelope() -> None:
    with pytest.raises(ValueError, match="invalid scheduled event: detail: Input should be a valid dictionary"):
        backup.parse_event({"detail-type": "Scheduled Event", "source": "aws.events", "id": "1", "detail": []})
    assert ScheduledEvent.model_fields["detail_type"].alias == "detail-type"


def test_a_failed_validate_and_rollback_reach_notify_failure_whole() -> None:
    """Validate failed, then Rollback too: the state that reaches NotifyFailure is the request plus both errors,
    and both are kept (they were dropped before), so the failure notice can tell of the rollback's error."""
    state = restore.parse_state(
        {
            "request": {"tables": ["users"]},
            "error": {"Error": "ConfigError", "Cause": "no such table"},
            "rollback_error": {"Error": "DatabaseError", "Cause": "server closed the connection"},
        }
    )
    assert state.request.tables == ["users"]
    assert state.error is not None and state.error.cause == "no such table"
    assert state.rollback_error is not None and state.rollback_error.error == "DatabaseError"


@pytest.mark.parametrize("state", [None, '{"restore_id": "x"}'])
def test_the_restore_task_ends_with_one_line_and_exit_1_on_a_bad_state(state: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k != restore_task.STATE_VARIABLE}
    if state is not None:
        env[restore_task.STATE_VARIABLE] = state
    done = subprocess.run([sys.executable, "-m", "handlers.restore_task"], env=env, capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("dbops restore task: error: ") and "DBOPS_RESTORE_STATE" in done.stderr


def test_the_restore_task_refuses_an_unknown_step_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DBOPS_RESTORE_STATE", '{"request": {}}')
    monkeypatch.setenv("DBOPS_RESTORE_STEP", "swap")
    assert restore_task.main() == 1
    err = capsys.readouterr().err
    expected = "give one of stage, dump_point_in_time, fill_rehearsal"
    assert err == f"dbops restore task: error: DBOPS_RESTORE_STEP is 'swap': {expected}\n"
