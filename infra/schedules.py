"""EventBridge schedules: the nightly backup (an execution of the backup state machine), health every 5 minutes,
maintenance tasks, the weekly restore drill and the daily drop of expired pre-restore copies.

Every expression comes from cdk.json (`schedules`), with the guide's rhythm as the default; "off" turns one off.

Scheduled invokes that fail land in one dead-letter queue (SQS, encrypted, TLS-only), which raises the
ScheduledInvokeFailed alarm (infra/monitoring.py): events EventBridge could not deliver after its retries (the
rule's target), and invokes of the scheduled functions that failed after Lambda's asynchronous retries (the
function's own dead-letter queue, infra/functions.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aws_cdk import Acknowledgment, Duration, Validations
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.scanners import acknowledge_checkov
from infra.schedule_settings import BackupSchedule
from infra.schedule_settings import Schedules as ScheduleSettings

DrillInput = Callable[[str], dict[str, Any]]
# EventBridge's own retries of a target it could not invoke (throttling, a service error), within an hour
TARGET_RETRY_ATTEMPTS = 4
TARGET_MAX_EVENT_AGE = Duration.hours(1)


def dead_letter_queue(scope: Construct, construct_id: str) -> sqs.Queue:
    """Where failed scheduled invokes wait (14 days, SQS's longest) for the operator: runbook ScheduledInvokeFailed."""
    queue = sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(14),
    )
    Validations.of(queue).acknowledge(
        Acknowledgment(
            id="AwsSolutions-SQS3",
            reason="This queue is itself the dead-letter queue of the schedules' targets and scheduled functions; "
            "its messages are read by the operator (runbook ScheduledInvokeFailed), not redriven.",
        )
    )
    acknowledge_checkov(
        queue,
        {
            "CKV_AWS_27": "Encrypted at rest by SQS-managed SSE (SqsManagedSseEnabled), which this check does not "
            "recognise; a customer key would have to be opened to EventBridge and every scheduled function for "
            "messages that hold only the scheduled events.",
        },
    )
    return queue


def default_drill_input(database: str) -> dict[str, Any]:
    """The restore request a drill starts: the latest backup of the database, restored aside and checked."""
    return {"backup": "latest", "database": database, "mode": "drill"}


def disaster_drill_input(database: str) -> dict[str, Any]:
    """The DR stack's drill: the newest replicated verified backup, restored aside in the DR region and checked."""
    return {"backup": "latest", "database": database, "mode": "drill", "disaster": True}


class Schedules(Construct):
    """`rules` by name: Backup (starts the backup state machine), Health, Maintenance<Task>; RestoreDrill<i> and
    ExpiredCopies once the restore workflow adds them."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        schedules: ScheduleSettings,
        backup: sfn.IStateMachine | None,
        health: lambda_.IFunction | None,
        maintenance: lambda_.IFunction | None,
        backup_schedules: Sequence[BackupSchedule] | None = None,
        dead_letter_queue: sqs.IQueue | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.schedules = schedules
        self.dead_letter_queue = dead_letter_queue
        self.rules: dict[str, events.Rule] = {}
        if backup is None or health is None or maintenance is None:
            return  # the DR stack: restores only (add_restore_drill)
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
                targets.SfnStateMachine(backup, input=events.RuleTargetInput.from_object(request), **self._delivery()),
            )
        # health gets the plain scheduled event: it checks every configured database
        self._rule(
            "Health", schedules.health, "dbops: health probes", targets.LambdaFunction(health, **self._delivery())
        )
        for task, expression in schedules.maintenance().items():
            self._rule(
                f"Maintenance{task.capitalize()}",
                expression,
                f"dbops: maintenance task {task}",
                targets.LambdaFunction(
                    maintenance, event=events.RuleTargetInput.from_object({"task": task}), **self._delivery()
                ),
            )

    def add_restore_drill(
        self,
        state_machine: sfn.IStateMachine,
        databases: Sequence[str],
        drill_input: DrillInput = default_drill_input,
    ) -> list[events.Rule]:
        """One weekly drill per database: start the restore state machine in drill mode."""
        rules = []
        what = "disaster drill in the DR region" if drill_input is disaster_drill_input else "restore drill"
        for i, database in enumerate(databases):
            rule = self._rule(
                f"RestoreDrill{i}",
                self.schedules.restore_drill,
                f"dbops: weekly {what} of {database}",
                targets.SfnStateMachine(
                    state_machine,
                    input=events.RuleTargetInput.from_object(drill_input(database)),
                    **self._delivery(),
                ),
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
            targets.LambdaFunction(function, **self._delivery()),
        )

    def add_temporary_instance_sweep(self, function: lambda_.IFunction, restore: sfn.IStateMachine) -> None:
        """Point-in-time restores' temporary instances: deleted as soon as a restore execution ends other than by
        its own steps (aborted, timed out; failed, where Rollback did not get to it), and swept daily."""
        events.Rule(
            self,
            "RestoreEnded",
            description="dbops: a restore execution ended abnormally: delete its temporary instance",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={"stateMachineArn": [restore.state_machine_arn], "status": ["ABORTED", "TIMED_OUT", "FAILED"]},
            ),
            targets=[targets.LambdaFunction(function, **self._delivery())],
        )
        self._rule(
            "TemporaryInstances",
            self.schedules.temporary_instances,
            "dbops: delete point-in-time restores' temporary instances no running restore needs",
            targets.LambdaFunction(function, **self._delivery()),
        )

    def _delivery(self) -> dict[str, Any]:
        """A target's retries and, with the queue, its dead-letter queue."""
        if self.dead_letter_queue is None:
            return {}
        return {
            "dead_letter_queue": self.dead_letter_queue,
            "retry_attempts": TARGET_RETRY_ATTEMPTS,
            "max_event_age": TARGET_MAX_EVENT_AGE,
        }

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
