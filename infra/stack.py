"""The dbops stack: one construct per concern, composed here.

Storage      KMS key, backup bucket (lifecycle per backup kind), access-log bucket; LogsKey encrypts every log group
Layers       pgtools (pg_dump/pg_restore/psql 18, TLS libpq), python (dependencies), certificates (CA bundles)
Functions    Backup, Health, Maintenance (+ restore steps), each with its own role and log group
Backup       the backup state machine (infra/backup_workflow.py): a Map over the databases, each backed up by the
             Backup function or, when too large for it, the Fargate task (RestoreStageTask, shared with restores)
Schedules    EventBridge rules (backup state machine, health, maintenance tasks, restore drill); their failed
             invokes land in ScheduledInvokeDlq (SQS)
Monitoring   SNS topic, alarms (ScheduledInvokeFailed on the dead-letter queue), dashboard
Restore      the restore state machine (infra/restore_workflow.py, issue 3) — see RESTORE WORKFLOW below
PointInTime  the RDS grants of point-in-time restores and readiness, the temporary copies' sweep
             (infra/point_in_time_access.py)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Annotations, ArnFormat, CfnOutput, Stack
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from dbops import contract
from infra.backup_workflow import BackupWorkflow
from infra.constants import LAYERS_BUILD_DIR
from infra.container_images import container_image
from infra.function_policies import app_hook_statements
from infra.function_specs import rehearsal_step_spec, restore_step_spec
from infra.functions import LOG_RETENTION, Functions
from infra.layers import stack_layers
from infra.monitoring import Monitoring
from infra.point_in_time_access import PointInTimeAccess
from infra.rehearsal_settings import rehearsal_secret_name
from infra.rehearsal_tasks import RehearsalTask
from infra.replication import ReplicaStack, Replication
from infra.restore_workflow import REHEARSAL_STEP_HANDLERS, STEP_HANDLERS, RestoreWorkflow, StageTask
from infra.restore_workflow import STATE_MACHINE_NAME as RESTORE_STATE_MACHINE_NAME
from infra.scanners import acknowledge_nag, nag_arn_prefix
from infra.schedules import Schedules, dead_letter_queue
from infra.settings import StackSettings
from infra.state_machines import acknowledge_image_pulls
from infra.storage import BackupStorage, logs_key

# ==== RESTORE WORKFLOW (issue 3) ==========================================================================
# The restore steps' handler names in functions/handlers/restore.py (e.g. "validate", "safety_backup", ...).
# Each becomes a function `handlers.restore.<name>` made by Functions.restore_steps (own role: read/write
# backups/*, the database secrets, the backup key; 2 GB, 15 min, 10 GB /tmp). While this is empty, the stack
# has no restore workflow; fill it in together with infra/restore_workflow.py (see DbopsStack._restore_workflow).
RESTORE_STEPS: tuple[str, ...] = tuple(handler.rsplit(".", 1)[1] for handler in STEP_HANDLERS.values())
# ==========================================================================================================


class DbopsStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: StackSettings,
        certs_dir: Path,
        layers_build_dir: Path = LAYERS_BUILD_DIR,
        restore_steps: tuple[str, ...] = RESTORE_STEPS,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("description", "dbops: PostgreSQL backups, restores, health and maintenance")
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        self.replica_stack: ReplicaStack | None = None  # the DR stack (infra/application.py sets it)
        self.storage = BackupStorage(self, "Storage", retention=settings.retention_days, lock=settings.backup_lock)
        self.logs_key = logs_key(self, "LogsKey")
        self.dead_letter_queue = dead_letter_queue(self, "ScheduledInvokeDlq")
        self.layers = stack_layers(self, settings, certs_dir=certs_dir, build_dir=layers_build_dir)
        self.functions = Functions(
            self,
            "Functions",
            settings=settings,
            bucket=self.storage.bucket,
            key=self.storage.key,
            layers=self.layers,
            logs_key=self.logs_key,
            dead_letter_queue=self.dead_letter_queue,
        )
        self.monitoring = Monitoring(self, "Monitoring", settings=settings, functions=self.functions.by_name)
        self.point_in_time = PointInTimeAccess(self, "PointInTime", databases=settings.databases)
        self.point_in_time.grant_readiness(self.functions.health)
        self.monitoring.watch_dead_letter_queue("ScheduledInvokes", self.dead_letter_queue)
        self.replication = self._replication()
        # the Fargate task for work beyond Lambda's limits: large restores' stage step and large databases' backups
        self.fargate_task = self._fargate_task()
        self.backup_workflow = BackupWorkflow(
            self,
            "Backup",
            function=self.functions.backup,
            databases=[db.name for db in settings.databases],
            task=self.fargate_task,
            max_concurrency=settings.backup.max_concurrency,
            logs_retention=LOG_RETENTION[settings.retention_days.logs],
            logs_key=self.logs_key,
        )
        self.schedules = Schedules(
            self,
            "Schedules",
            schedules=settings.schedules,
            backup=self.backup_workflow.state_machine,
            health=self.functions.health,
            maintenance=self.functions.maintenance,
            backup_schedules=settings.backup_schedules(),
            dead_letter_queue=self.dead_letter_queue,
        )
        self.monitoring.watch_state_machine("Backup", self.backup_workflow.state_machine, kind="BackupWorkflowFailed")
        self.restore_functions: dict[str, lambda_.Function] = {}
        self.restore_workflow: Any = None
        self.rehearsal_tasks: list[RehearsalTask] = []
        self.rehearsal_functions: dict[str, lambda_.Function] = {}
        self.expired_copies_function: lambda_.Function | None = None
        if restore_steps:
            self._restore_workflow(restore_steps)
        self.monitoring.add_alarm_overview()
        self._outputs()

    def _restore_workflow(self, steps: tuple[str, ...]) -> None:
        """The restore state machine over one function per step, its drill schedule, alarms and output."""
        self.restore_functions = self.functions.restore_steps(
            steps, environment={contract.ENV_TOPIC_ARN: self.monitoring.topic.topic_arn, contract.ENV_WORK_DIR: "/tmp"}
        )
        for name, function in self.restore_functions.items():
            self.monitoring.watch_function(f"Restore-{name}", function)
            self.monitoring.grant_publish(function)
        self._grant_app_hooks()
        by_step = {step: self.restore_functions[handler.rsplit(".", 1)[1]] for step, handler in STEP_HANDLERS.items()}
        stage_task = self.fargate_task
        self.rehearsal_tasks = self._rehearsal_tasks()
        self.rehearsal_functions = self._rehearsal_functions() if self.rehearsal_tasks else {}
        by_step.update(self.rehearsal_functions)
        self.restore_workflow = RestoreWorkflow(
            self,
            "Restore",
            functions=by_step,
            stage_task=stage_task,
            logs_key=self.logs_key,
            rehearsal_tasks=self.rehearsal_tasks,
        )
        state_machine = self.restore_workflow.state_machine
        self.schedules.add_restore_drill(state_machine, [db.name for db in self.settings.databases])
        self._expired_copies_cleanup()
        self._grant_execution_reads()
        self.temporary_instance_sweep: lambda_.Function | None = None
        if any(db.on_rds for db in self.settings.databases):
            self._temporary_instance_sweep(state_machine)
        self.monitoring.watch_state_machine("Restore", state_machine)
        CfnOutput(self, "RestoreStateMachineArn", value=state_machine.state_machine_arn)

    def _replication(self) -> Replication | None:
        """The backups' second copy in the DR stack's bucket (cdk.json `replication`), and its two alarms."""
        if self.settings.replication is None:
            return None
        replication = Replication(
            self,
            "Replication",
            settings=self.settings.replication,
            stack_name=self.settings.stack_name,
            bucket=self.storage.bucket,
            key=self.storage.key,
            locked=self.settings.backup_lock is not None,
        )
        self.monitoring.watch_replication(
            source_bucket=self.storage.bucket.bucket_name,
            destination_bucket=replication.destination_bucket_name,
            rule_id=replication.rule_id,
            lag_minutes=self.settings.replication.lag_alarm_minutes,
        )
        return replication

    def _rehearsal_tasks(self) -> list[RehearsalTask]:
        """Each rehearsed database's task (its migration image beside dbops' watcher) and secret."""
        rehearsed = self.settings.rehearsed()
        if not rehearsed or self.fargate_task is None:
            return []
        task = self.fargate_task
        cluster = task.cluster
        found = []
        for i, db in enumerate(rehearsed):
            assert db.rehearsal is not None
            rehearsal = RehearsalTask(
                self,
                f"Rehearsal{i}",
                database=db.name,
                settings=db.rehearsal,
                secret_name=rehearsal_secret_name(self.settings.stack_name, db.name),
                migration_image=container_image(self, db.rehearsal.image, f"MigrationImageRepository{i}"),
                watcher_image=task.image,
                watcher_environment=self.functions.environment(),
                cluster=cluster,
                bucket=self.storage.bucket,
                key=self.storage.key,
                cpu_architecture=ecs.CpuArchitecture.ARM64
                if self.settings.architecture == "arm64"
                else ecs.CpuArchitecture.X86_64,
                security_groups=task.security_groups,
                subnets=task.subnets,
                logs_key=self.logs_key,
            )
            found.append(rehearsal)
        return found

    def _rehearsal_functions(self) -> dict[str, lambda_.Function]:
        """The rehearsal steps' functions: what restore steps do, and writing the rehearsal secrets."""
        secrets = [t.secret.secret_arn for t in self.rehearsal_tasks]
        by_step: dict[str, lambda_.Function] = {}
        for step, handler in REHEARSAL_STEP_HANDLERS.items():
            function = self.functions.add(rehearsal_step_spec(handler.rsplit(".", 1)[1]))
            function.add_environment(contract.ENV_TOPIC_ARN, self.monitoring.topic.topic_arn)
            function.add_to_role_policy(
                iam.PolicyStatement(
                    sid="WriteRehearsalSecrets", actions=["secretsmanager:PutSecretValue"], resources=secrets
                )
            )
            function.add_to_role_policy(
                iam.PolicyStatement(
                    sid="EncryptRehearsalSecrets", actions=["kms:GenerateDataKey"], resources=[self.storage.key.key_arn]
                )
            )
            self.monitoring.grant_publish(function)
            self.monitoring.watch_function(f"Rehearsal-{step}", function)
            by_step[step] = function
        return by_step

    def _grant_execution_reads(self) -> None:
        """A rehearsal's scratch database lives while its execution runs: whoever sweeps scratch databases (the
        rehearsal steps, the daily drop of expired copies) may ask Step Functions whether it does."""
        # by its name, not its token: the rehearsal steps are the state machine's own functions (no cycle)
        executions = Stack.of(self).format_arn(
            service="states",
            resource="execution",
            resource_name=f"{RESTORE_STATE_MACHINE_NAME}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        for function in [self.expired_copies_function, *self.rehearsal_functions.values()]:
            if function is None:
                continue
            function.add_to_role_policy(
                iam.PolicyStatement(
                    sid="ReadRestoreExecutions", actions=["states:DescribeExecution"], resources=[executions]
                )
            )
            acknowledge_nag(
                function.role,
                {
                    f"AwsSolutions-IAM5[Resource::{nag_arn_prefix(self, 'states')}:execution:"
                    f"{RESTORE_STATE_MACHINE_NAME}:*]": "Any execution of the restore state machine: a scratch "
                    "database's marker names its own, made at run time."
                },
            )

    def _fargate_task(self) -> StageTask | None:
        """The task (restore_task_image, in the databases' VPC) that stages large restores and backs up large
        databases with the functions' code; None without an image or a VPC: everything runs in Lambda."""
        if not self.settings.restore_task_image:
            return None
        if self.functions.vpc is None:
            Annotations.of(self).add_warning_v2(
                "dbops:restore-task-vpc",
                "restore_task_image is set but the databases have no VPC placement: restores and backups run in "
                "Lambda only",
            )
            return None
        task = StageTask(
            self,
            "RestoreStageTask",
            image=container_image(self, self.settings.restore_task_image),
            environment={**self.functions.environment(), contract.ENV_TOPIC_ARN: self.monitoring.topic.topic_arn},
            vpc=self.functions.vpc,
            security_groups=self.functions.security_groups,
            subnets=self.functions.subnets,
            logs_key=self.logs_key,
        )
        task_role = task.task_definition.task_role
        self.functions.grant_restore_access(task_role)
        self.functions.grant_backup_access(task_role)
        acknowledge_image_pulls(task.task_definition)
        return task

    def _expired_copies_cleanup(self) -> None:
        """The previous databases a restore keeps are dropped when their time is up by the next restore, and daily
        by this function (the restore steps' access: the restore records and the databases)."""
        function = self.functions.add(
            restore_step_spec(
                "drop_expired_copies",
                description="dbops: drop the databases kept after restores once their time is up",
                scheduled=True,
            )
        )
        self.expired_copies_function = function
        self.monitoring.watch_function("Restore-drop_expired_copies", function)
        self.schedules.add_expired_copies_cleanup(function)

    def _temporary_instance_sweep(self, state_machine: sfn.StateMachine) -> None:
        """Restores as of a moment: the steps' RDS grants, and the sweep that deletes what an execution left."""
        delete = self.point_in_time.grant_restores(self.restore_functions)
        sweep = self.point_in_time.add_sweep(self.functions, state_machine, delete)
        self.temporary_instance_sweep = sweep
        self.monitoring.watch_function("TemporaryInstanceSweep", sweep)
        self.schedules.add_temporary_instance_sweep(sweep, state_machine)

    def _grant_app_hooks(self) -> None:
        """The steps that stop and start the application may write exactly the configured parameter or bus."""
        for step in ("stop_application", "start_application", "rollback"):
            for statement in app_hook_statements(Stack.of(self), self.settings.databases):
                self.restore_functions[step].add_to_role_policy(statement)

    def _outputs(self) -> None:
        CfnOutput(self, "BackupBucketName", value=self.storage.bucket.bucket_name)
        CfnOutput(self, "BackupStateMachineArn", value=self.backup_workflow.state_machine.state_machine_arn)
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)
        assert self.monitoring.dashboard is not None
        CfnOutput(self, "DashboardName", value=self.monitoring.dashboard.dashboard_name)
        CfnOutput(self, "ScheduledInvokeDlqUrl", value=self.dead_letter_queue.queue_url)
        for name, function in self.functions.by_name.items():
            CfnOutput(self, f"{name}FunctionName", value=function.function_name)
