"""Maintenance configuration: the shipped rules and schedules, the keep-condition screen, the handler's events."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dbops.maintenance import DEFAULT_RULES, DEFAULT_SCHEDULES, TASKS, MaintenanceConfig, RetentionRule
from dbops.maintenance.rules import keep_condition_problem
from handlers.maintenance import parse_event
from local_stack.lambda_runtime import scheduled_event


def test_shipped_rules_are_the_guides_cleanup_and_archive() -> None:
    cleanup, archive = DEFAULT_RULES
    assert (cleanup.table, cleanup.timestamp_column, cleanup.age, cleanup.keep, cleanup.mode) == (
        "report_snapshots",
        "created_at",
        "6 months",
        "is_baseline",
        "delete",
    )
    assert (archive.table, archive.timestamp_column, archive.age, archive.mode) == (
        "sprints",
        "ends_on",
        "2 years",
        "archive",
    )
    config = MaintenanceConfig()
    assert config.rules_for("cleanup") == [cleanup] and config.rules_for("archive") == [archive]
    assert config.rules_for("vacuum") == []


def test_every_task_has_a_default_schedule_expression() -> None:
    assert set(DEFAULT_SCHEDULES) == set(TASKS)
    assert all(expr.startswith("cron(") and expr.count(" ") == 5 for expr in DEFAULT_SCHEDULES.values())


def test_rule_names_must_be_unique_and_fields_known() -> None:
    rule = DEFAULT_RULES[0]
    with pytest.raises(ValidationError, match="rule names must be unique"):
        MaintenanceConfig(rules=[rule, rule])
    with pytest.raises(ValidationError, match="Extra inputs"):
        RetentionRule.model_validate({**rule.model_dump(), "where": "true"})
    with pytest.raises(ValidationError, match="batch_size"):
        rule.model_validate({**rule.model_dump(), "batch_size": 0})


@pytest.mark.parametrize(
    "keep",
    [
        "is_baseline",
        "is_baseline OR (payload ->> 'pinned')::boolean",
        "note = 'it''s (not) a paren; or -- a comment'",
        "note = E'back\\\\slash \\' (quote'",
        '"odd ""name"" (" IS NOT NULL',
        "note = $q$ ) ; -- $q$",
        "name LIKE 'x%'",
    ],
)
def test_keep_conditions_that_are_one_expression_pass_the_screen(keep: str) -> None:
    assert keep_condition_problem(keep) is None


@pytest.mark.parametrize(
    ("keep", "problem"),
    [
        ("is_baseline) OR (true", "closes more than the condition opened"),
        ("(is_baseline", "unbalanced '('"),
        ("true; DELETE FROM teams", "';' is not allowed"),
        ("true -- and then", "comments are not allowed"),
        ("true /* hidden */", "comments are not allowed"),
        ("note = 'open", "unterminated string literal"),
        ('"open = 1', "unterminated quoted identifier"),
        ("note = $$ never closed", "unterminated dollar-quoted string"),
    ],
)
def test_keep_conditions_that_could_escape_their_parentheses_are_refused(keep: str, problem: str) -> None:
    assert problem in (keep_condition_problem(keep) or "")


def test_scheduled_event_detail_names_the_task() -> None:
    invocation = parse_event(scheduled_event("dbops-maintenance-vacuum", {"task": "vacuum"}))
    assert (invocation.task, invocation.database, invocation.dry_run) == ("vacuum", None, False)


def test_direct_invoke_names_task_database_and_dry_run() -> None:
    invocation = parse_event({"task": "archive", "database": "sprint_reports_v2", "dry_run": True})
    assert (invocation.task, invocation.database, invocation.dry_run) == ("archive", "sprint_reports_v2", True)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"task": "defrag"}, "task: Input should be 'analyze', 'vacuum', 'reindex', 'cleanup' or 'archive'"),
        ({}, "task: Field required"),
        (scheduled_event("r"), "invalid scheduled event detail: task: Field required"),
        ({"task": "vacuum", "force": True}, "force: Extra inputs are not permitted"),
    ],
)
def test_wrong_event_is_a_clear_validation_error(event: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_event(event)
