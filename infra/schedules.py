"""EventBridge schedules: the nightly backup (an execution of the backup state machine), health every 5 minutes,
maintenance tasks, the weekly restore drill and the daily drop of expired pre-restore copies.

Every expression comes from cdk.json (`schedules`), with the guide's rhythm as the default; "off" turns one off.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.settings import BackupSchedule
from infra.settings import Schedules as ScheduleSettings

DrillInput = Callable[[str], dict[str, Any]]


def default_drill_input(database: str) -> dict[str, Any]:
    """The restore request a drill starts: the latest backup of the database, restored aside and checked."""
    return {"backup": "latest", "database": database, "mode": "drill"}


class Schedules(Construct):
    """`rules` by name: Backup (starts the backup state machine), Health, Maintenance<Task>; RestoreDrill<i> and
    ExpiredCopies once the restore workflow adds them."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        schedules: ScheduleSettings,
        backup: sfn.IStateMachine,
        health: lambda_.IFunction,
        maintenance: lambda_.IFunction,
        backup_schedules: Sequence[BackupSchedule] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.schedules = schedules
        self.rules: dict[str, events.Rule] = {}
        if backup_schedules is None:  # every database on the stack's schedule
            backup_schedules = (
                [BackupSchedule(name="Backup", expression=schedules.backup)] if schedules.backup is not None else []
            )
        for scheduled in backup_schedules:
            request: dict[str, Any] = {"kind": "nightly"}
            if scheduled.databases is not None:
                request["databases"] = list(scheduled.databases)
            self._rule(
                scheduled.name,
                scheduled.expression,
                "dbops: nightly backup of "
                + ("every database" if scheduled.databases is None else ", ".join(scheduled.databases))
                + " (one execution of the backup state machine)",
                targets.SfnStateMachine(backup, input=events.RuleTargetInput.from_object(request)),
            )
        # health gets the plain scheduled event: it checks every configured database
        self._rule("Health", schedules.health, "dbops: health probes", targets.LambdaFunction(health))
        for task, expression in schedules.maintenance().items():
            self._rule(
                f"Maintenance{task.capitalize()}",
                expression,
                f"dbops: maintenance task {task}",
                targets.LambdaFunction(maintenance, event=events.RuleTargetInput.from_object({"task": task})),
            )

    def add_restore_drill(
        self,
        state_machine: sfn.IStateMachine,
        databases: Sequence[str],
        drill_input: DrillInput = default_drill_input,
    ) -> list[events.Rule]:
        """One weekly drill per database: start the restore state machine in drill mode."""
        rules = []
        for i, database in enumerate(databases):
            rule = self._rule(
                f"RestoreDrill{i}",
                self.schedules.restore_drill,
                f"dbops: weekly restore drill of {database}",
                targets.SfnStateMachine(state_machine, input=events.RuleTargetInput.from_object(drill_input(database))),
            )
            if rule is not None:
                rules.append(rule)
        return rules

    def add_expired_copies_cleanup(self, function: lambda_.IFunction) -> events.Rule | None:
        """Daily: the databases kept after restores are dropped once their time is up (every database)."""
        return self._rule(
            "ExpiredCopies",
            self.schedules.expired_copies,
            "dbops: drop the databases kept after restores once their time is up",
            targets.LambdaFunction(function),
        )

    def _rule(
        self, name: str, expression: str | None, description: str, target: events.IRuleTarget
    ) -> events.Rule | None:
        if expression is None:
            return None
        rule = events.Rule(
            self, name, description=description, schedule=events.Schedule.expression(expression), targets=[target]
        )
        self.rules[name] = rule
        return rule
