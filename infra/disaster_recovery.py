"""Restores in the DR region (cdk.json `replication.restore`, README "Restoring in the DR region"), in the DR stack.

The main stack's constructs over the replica bucket and its key: the restore steps' functions (Functions, with the
DR databases' settings; they read the bucket's name from their environment, so the same code serves both stacks),
the restore state machine (RestoreWorkflow, every stage in Lambda), the weekly disaster drill (Schedules, a drill
request with `disaster`), and their alarms (Monitoring: the steps, the executions, DisasterDrillFailed and
DisasterRecoveryPointOld per database) on the DR stack's own topic. No backup, health or maintenance function, no
replication rule: the DR stack only restores what S3 replicated.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from dbops import contract
from infra.functions import LOG_RETENTION, Functions
from infra.layers import stack_layers
from infra.monitoring import Monitoring
from infra.restore_workflow import STEP_HANDLERS, RestoreWorkflow
from infra.schedules import Schedules, dead_letter_queue, disaster_drill_input
from infra.settings import StackSettings
from infra.storage import logs_key

RESTORE_STEPS = tuple(handler.rsplit(".", 1)[1] for handler in STEP_HANDLERS.values())


class DisasterRestore(Construct):
    """`functions` (the restore steps', by handler name), `workflow` (the restore state machine), `monitoring`,
    `schedules` (RestoreDrill<i>: the disaster drills)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: StackSettings,
        rpo_alarm_hours: float,
        bucket: s3.IBucket,
        key: kms.IKey,
        certs_dir: Path,
        layers_build_dir: Path,
    ) -> None:
        super().__init__(scope, construct_id)
        self.logs_key = logs_key(self, "LogsKey")
        queue = dead_letter_queue(self, "ScheduledInvokeDlq")
        layers = stack_layers(self, settings, certs_dir=certs_dir, build_dir=layers_build_dir)
        self.functions = Functions(
            self,
            "Functions",
            settings=settings,
            bucket=bucket,
            key=key,
            layers=layers,
            logs_key=self.logs_key,
            dead_letter_queue=queue,
            restores_only=True,
        )
        self.monitoring = Monitoring(self, "Monitoring", settings=settings, functions={}, watch_databases=False)
        self.monitoring.watch_dead_letter_queue("ScheduledInvokes", queue)
        self.restore_functions: dict[str, lambda_.Function] = self.functions.restore_steps(
            RESTORE_STEPS,
            environment={contract.ENV_TOPIC_ARN: self.monitoring.topic.topic_arn, contract.ENV_WORK_DIR: "/tmp"},
        )
        for name, function in self.restore_functions.items():
            self.monitoring.watch_function(f"Restore-{name}", function)
            self.monitoring.grant_publish(function)
        by_step = {step: self.restore_functions[handler.rsplit(".", 1)[1]] for step, handler in STEP_HANDLERS.items()}
        self.workflow = RestoreWorkflow(
            self,
            "Restore",
            functions=by_step,
            logs_retention=LOG_RETENTION[settings.retention_days.logs],
            logs_key=self.logs_key,
        )
        state_machine = self.workflow.state_machine
        self.schedules = Schedules(
            self,
            "Schedules",
            schedules=settings.schedules,
            backup=None,
            health=None,
            maintenance=None,
            dead_letter_queue=queue,
        )
        databases = [db.name for db in settings.databases]
        self.schedules.add_restore_drill(state_machine, databases, disaster_drill_input)
        for database in databases:
            self.monitoring.watch_disaster_drill(
                database, rpo_alarm_hours, scheduled=settings.schedules.restore_drill is not None
            )
        self.monitoring.watch_state_machine("Restore", state_machine)
        CfnOutput(self, "RestoreStateMachineArn", value=state_machine.state_machine_arn)
