"""The restore state machine: validate → safety backup → stop app → stage → check → swap → start app → finish.

A request refused by validation ends in the Succeed state RestoreRefused (output {"status": "refused", "reason"}):
no alarm counts it. Any failure before the swap is caught and goes to rollback (the target exactly as it was) →
notify → Fail, with the cause in the execution's error. Transient errors (database or S3 unreachable) are retried.
Archives too large for Lambda are staged by an ECS Fargate task running the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from aws_cdk import Acknowledgment, Duration, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from dbops import contract
from infra.rehearsal_tasks import RehearsalTask
from infra.state_machines import (
    acknowledge,
    invoke_grant_reasons,
    log_group,
    override,
    run_task_grant_reasons,
    run_to_completion,
)

# Step name in the state machine -> handler in functions/handlers/restore.py
STEP_HANDLERS: dict[str, str] = {
    "Validate": "handlers.restore.validate",
    "RestoreToPointInTime": "handlers.restore.restore_to_point_in_time",
    "WaitForInstance": "handlers.restore.wait_for_instance",
    "DumpPointInTime": "handlers.restore.dump_point_in_time",
    "SafetyBackup": "handlers.restore.safety_backup",
    "StopApplication": "handlers.restore.stop_application",
    "Stage": "handlers.restore.stage",
    "Check": "handlers.restore.check",
    "Swap": "handlers.restore.swap",
    "StartApplication": "handlers.restore.start_application",
    "Finish": "handlers.restore.finish",
    "Rollback": "handlers.restore.rollback",
    "NotifyFailure": "handlers.restore.notify_failure",
}
# mode rehearse: step name -> handler in functions/handlers/rehearsal.py
REHEARSAL_STEP_HANDLERS: dict[str, str] = {
    "PrepareRehearsal": "handlers.rehearsal.prepare",
    "SurveyScratch": "handlers.rehearsal.survey",
    "AfterRun": "handlers.rehearsal.after_run",
    "JudgeRehearsal": "handlers.rehearsal.judge",
    "RehearsalCleanup": "handlers.rehearsal.clean_up",
}
STATE_MACHINE_NAME = "dbops-restore"
T = TypeVar("T", bound=sfn.TaskStateBase | sfn.Parallel)


def restore_task_step(scope: Construct, construct_id: str, task: StageTask, step: str) -> tasks.EcsRunTask:
    """A step of the restore state machine run by the stage task (`python -m handlers.restore_task`): the execution
    state and the step in its environment, up to 3 hours."""
    environment = {
        contract.ENV_RESTORE_STATE: sfn.JsonPath.json_to_string(sfn.JsonPath.object_at("$")),
        contract.ENV_RESTORE_STEP: step,
    }
    timeout = sfn.Timeout.duration(Duration.hours(3))
    return run_to_completion(scope, construct_id, task, [override(task.container, environment)], timeout=timeout)


class StageTask(Construct):
    """The Fargate task for work beyond Lambda's limits (same image and code): the restore's stage step
    (`python -m handlers.restore_task`), and backups (the backup state machine overrides the command with
    `python -m handlers.backup_task`)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        image: ecs.ContainerImage,
        environment: Mapping[str, str],
        vpc: ec2.IVpc | None = None,
        security_groups: Sequence[ec2.ISecurityGroup] | None = None,
        subnets: ec2.SubnetSelection | None = None,
        cpu: int = 2048,
        memory_mib: int = 8192,
        ephemeral_storage_gib: int = 200,
        logs_key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.image = image
        self.cluster = ecs.Cluster(self, "Cluster", vpc=vpc, container_insights_v2=ecs.ContainerInsights.ENABLED)
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            cpu=cpu,
            memory_limit_mib=memory_mib,
            ephemeral_storage_gib=ephemeral_storage_gib,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.ARM64, operating_system_family=ecs.OperatingSystemFamily.LINUX
            ),
        )
        self.container = self.task_definition.add_container(
            "stage",
            image=image,
            command=["python", "-m", "handlers.restore_task"],
            # the task's vCPUs, which a backup in it sizes its COPY streams by (the host's CPU count is not the task's)
            environment={**environment, contract.ENV_TASK_CPU_UNITS: str(cpu)},
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix="restore-stage",
                log_group=logs.LogGroup(self, "Logs", retention=logs.RetentionDays.ONE_MONTH, encryption_key=logs_key),
            ),
        )
        Validations.of(self.task_definition).acknowledge(
            Acknowledgment(
                id="AwsSolutions-ECS2",
                reason="The environment holds names and ARNs (bucket, secret ARN, topic), never a secret: credentials "
                "are read from Secrets Manager at run time.",
            )
        )
        self.security_groups = list(security_groups or [])
        self.subnets = subnets


class RestoreWorkflow(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: Mapping[str, lambda_.IFunction],
        stage_task: StageTask | None = None,
        retry_interval_s: int = 20,
        retry_attempts: int = 3,
        timeout_hours: int = 4,
        instance_poll_s: int = 30,
        state_machine_name: str | None = STATE_MACHINE_NAME,
        logs_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS,
        logs_key: kms.IKey | None = None,
        rehearsal_tasks: Sequence[RehearsalTask] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        needed = {*STEP_HANDLERS, *(REHEARSAL_STEP_HANDLERS if rehearsal_tasks else ())}
        missing = sorted(needed - set(functions))
        if missing:
            raise ValueError(f"RestoreWorkflow needs a function for every step; missing: {', '.join(missing)}")

        def invoke(name: str, *, retry: bool = True) -> tasks.LambdaInvoke:
            task = tasks.LambdaInvoke(
                self,
                name,
                lambda_function=functions[name],
                payload_response_only=True,
                retry_on_service_exceptions=True,
            )
            if retry:
                task.add_retry(
                    errors=list(contract.RETRIED_STEP_ERRORS),
                    interval=Duration.seconds(retry_interval_s),
                    max_attempts=retry_attempts,
                    backoff_rate=2,
                )
            return task

        failed = sfn.Fail(self, "RestoreFailed", error_path="$.error.Error", cause_path="$.outcome")
        notify_failure = invoke("NotifyFailure")
        notify_failure.add_catch(
            sfn.Fail(
                self, "NotifyFailed", error="NotificationFailed", cause="the restore failed and so did its notification"
            ),
            result_path="$.notify_error",
        )
        notify_failure.next(failed)
        rollback = invoke("Rollback")
        rollback.add_catch(notify_failure, result_path="$.rollback_error")
        rollback.next(notify_failure)

        def guarded(task: T, on_error: sfn.IChainable) -> T:
            task.add_catch(on_error, result_path="$.error")
            return task

        finish = invoke("Finish")
        finish.add_catch(notify_failure, result_path="$.error")
        finish.next(sfn.Succeed(self, "Restored"))
        start_app = guarded(invoke("StartApplication"), notify_failure)
        start_app.next(finish)
        swap = guarded(invoke("Swap"), rollback)
        swap.next(
            sfn.Choice(self, "ApplicationStopped")
            .when(sfn.Condition.boolean_equals("$.app_stopped", True), start_app)
            .otherwise(finish)
        )
        # the application is stopped for the swap alone, not while the copy is staged and checked; a database
        # without an application hook (Validate's app_hook) goes straight to the swap
        stop_app = guarded(invoke("StopApplication"), rollback)
        stop_app.next(swap)
        check = guarded(invoke("Check"), rollback)
        check.next(
            sfn.Choice(self, "DrillOrSwap")
            .when(sfn.Condition.string_equals("$.request.mode", "drill"), finish)
            .when(sfn.Condition.boolean_equals("$.app_hook", True), stop_app)
            .otherwise(swap)
        )
        # the safety backup (of the target) and the stage (of the backup, into the work database: the target is not
        # touched) run side by side; the execution goes on with the safety backup's state (Stage returns its input),
        # and a failure of either (after its retries) goes to Rollback
        stage_lambda = invoke("Stage")
        # without a task every stage runs in Lambda: straight to Stage (a Choice without choices is invalid ASL)
        where: sfn.IChainable = stage_lambda
        if stage_task is not None:
            stage_fargate = restore_task_step(self, "StageOnFargate", stage_task, "stage")
            where = (
                sfn.Choice(self, "StageWhere")
                .when(sfn.Condition.boolean_equals("$.use_fargate", True), stage_fargate)
                .otherwise(stage_lambda)
            )
        prepare = sfn.Parallel(self, "SafetyBackupAndStage", output_path="$[0]")
        prepare.branch(invoke("SafetyBackup"))
        prepare.branch(where)
        guarded(prepare, rollback)
        prepare.next(check)
        # a request refused by validation (Validate or, as of a moment, DumpPointInTime returns {"refusal": ...}):
        # nothing was touched, so the execution succeeds, with {"status": "refused", "reason": ...} as its output;
        # no Fail state (ExecutionsFailed counts every one), no NotifyFailure, no RestoreFailed metric
        refused = sfn.Condition.is_present("$.refusal")
        self.refused = sfn.Succeed(self, "RestoreRefused", output_path="$.refusal")
        what_next = (
            sfn.Choice(self, "WhatNext")
            .when(refused, self.refused)
            .when(sfn.Condition.boolean_equals("$.request.dry_run", True), finish)
            .otherwise(prepare)  # a drill's SafetyBackup takes none
        )
        validate = guarded(invoke("Validate"), rollback)
        validate.next(
            sfn.Choice(self, "FromWhere")
            .when(refused, self.refused)
            .when(
                sfn.Condition.and_(
                    sfn.Condition.is_not_null("$.temporary_instance"),
                    sfn.Condition.boolean_equals("$.request.dry_run", False),
                ),
                self._point_in_time(invoke, guarded, rollback, what_next, instance_poll_s, stage_task),
            )
            .otherwise(what_next)
        )
        # the execution's ARN tags the temporary instance of a point-in-time restore (the sweep finds it by it)
        start = sfn.Pass(self, "Request", parameters={"request.$": "$", "execution.$": "$$.Execution.Id"})
        if rehearsal_tasks:
            start.next(
                sfn.Choice(self, "RestoreOrRehearse")
                .when(
                    sfn.Condition.string_equals("$.request.mode", "rehearse"),
                    self._rehearsal(invoke, rehearsal_tasks, stage_task),
                )
                .otherwise(validate)
            )
        else:
            start.next(validate)

        self.log_group = log_group(self, "Logs", logs_retention, logs_key)
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=state_machine_name,
            definition_body=sfn.DefinitionBody.from_chainable(start),
            timeout=Duration.hours(timeout_hours),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
        )
        self._acknowledge(functions, stage_task, rehearsal_tasks)

    def _point_in_time(
        self,
        invoke: Callable[[str], tasks.LambdaInvoke],
        guarded: Callable[[Any, sfn.IChainable], Any],
        rollback: sfn.IChainable,
        then: sfn.IChainable,
        poll_s: int,
        stage_task: StageTask | None,
    ) -> sfn.IChainable:
        """as_of: the temporary copy restored to the moment, polled until available (WaitForInstance fails after
        DBOPS_POINT_IN_TIME_WAIT_MINUTES), dumped (on Fargate when the database's backups would be) and deleted;
        any failure goes to Rollback, which deletes it."""
        dump = guarded(invoke("DumpPointInTime"), rollback)
        dump.next(then)
        ready: sfn.IChainable = dump
        if stage_task is not None:
            on_fargate = restore_task_step(self, "DumpOnFargate", stage_task, "dump_point_in_time")
            guarded(on_fargate, rollback)
            on_fargate.next(dump)  # finds the task's dump in the bucket, deletes the copy, validates
            ready = (
                sfn.Choice(self, "DumpWhere")
                .when(sfn.Condition.boolean_equals("$.dump_on_fargate", True), on_fargate)
                .otherwise(dump)
            )
        wait = sfn.Wait(self, "InstanceNotReady", time=sfn.WaitTime.duration(Duration.seconds(poll_s)))
        poll = guarded(invoke("WaitForInstance"), rollback)
        wait.next(poll)
        poll.next(
            sfn.Choice(self, "InstanceReady")
            .when(sfn.Condition.is_not_null("$.instance_endpoint"), ready)
            .otherwise(wait)
        )
        restore = guarded(invoke("RestoreToPointInTime"), rollback)
        restore.next(wait)
        return restore

    def _rehearsal(
        self,
        invoke: Callable[..., tasks.LambdaInvoke],
        rehearsal_tasks: Sequence[RehearsalTask],
        stage_task: StageTask | None,
    ) -> sfn.IChainable:
        """mode rehearse (dbops.rehearsal.deployed): PrepareRehearsal → [FillOnFargate] → SurveyScratch →
        WhichMigration → RunMigration<database>
        (the task, upgrade then downgrade) → AfterRun → NextRun → ... → JudgeRehearsal → Verdict; an error in a step
        → RehearsalCleanup → RehearsalError. A run that fails or times out is no error: AfterRun reads it, and the
        verdict (in the output) says so."""
        error = sfn.Fail(self, "RehearsalError", error_path="$.error.Error", cause_path="$.outcome")
        cleanup = invoke("RehearsalCleanup")
        cleanup.add_catch(
            sfn.Fail(self, "RehearsalCleanupFailed", error="RehearsalCleanupFailed", cause="see the execution"),
            result_path="$.cleanup_error",
        )
        cleanup.next(error)
        # a migration found unsafe is a rehearsal that did its job: the execution succeeds with verdict fail in its
        # output (the pipeline reads it); only a rehearsal that could not be completed fails the execution, which
        # is what the restore state machine's failure alarm is for
        verdict = (
            sfn.Choice(self, "Verdict")
            .when(sfn.Condition.string_equals("$.verdict", "pass"), sfn.Succeed(self, "RehearsalPassed"))
            .otherwise(sfn.Succeed(self, "RehearsalFailed"))
        )
        judge = invoke("JudgeRehearsal")
        judge.add_catch(cleanup, result_path="$.error")
        judge.next(verdict)
        after = invoke("AfterRun")
        after.add_catch(cleanup, result_path="$.error")
        which = sfn.Choice(self, "WhichMigration")
        after.next(
            sfn.Choice(self, "NextRun").when(sfn.Condition.string_equals("$.next", "run"), which).otherwise(judge)
        )
        for task in rehearsal_tasks:
            run = run_to_completion(
                self,
                f"RunMigration-{task.node.id}",
                task,
                [
                    override(task.migration, command=sfn.JsonPath.list_at("$.run_command")),
                    override(task.watcher, {contract.ENV_REHEARSAL_WATCH: sfn.JsonPath.string_at("$.watch")}),
                ],
                timeout=sfn.Timeout.at("$.run_timeout_s"),
                result_path="$.task",
            )
            run.add_catch(after, result_path="$.task_error")
            run.next(after)
            which.when(sfn.Condition.string_equals("$.rehearsal.database", task.database), run)
        which.otherwise(sfn.Fail(self, "NoRehearsalTask", error="NoRehearsalTask", cause="no task for the database"))
        survey = invoke("SurveyScratch")
        survey.add_catch(cleanup, result_path="$.error")
        survey.next(which)
        prepare = invoke("PrepareRehearsal")
        prepare.add_catch(cleanup, result_path="$.error")
        # refused before anything was made ({"refusal": ...}): a successful execution, as a failed verdict is
        fill_where = sfn.Choice(self, "FillWhere").when(
            sfn.Condition.is_present("$.refusal"), sfn.Succeed(self, "RehearsalRefused", output_path="$.refusal")
        )
        prepare.next(fill_where)
        if stage_task is not None:
            on_fargate = restore_task_step(self, "FillOnFargate", stage_task, "fill_rehearsal")
            on_fargate.add_catch(cleanup, result_path="$.error")
            on_fargate.next(survey)
            fill_where.when(sfn.Condition.boolean_equals("$.fill_on_fargate", True), on_fargate)
        fill_where.otherwise(survey)
        return prepare

    def _acknowledge(
        self,
        functions: Mapping[str, lambda_.IFunction],
        stage_task: StageTask | None,
        rehearsal_tasks: Sequence[RehearsalTask],
    ) -> None:
        """cdk-nag: the wildcards in Step Functions' generated policy, each named with its reason."""
        reasons = invoke_grant_reasons(functions.values())
        for task_definition in [
            *([stage_task.task_definition] if stage_task else []),
            *(t.task_definition for t in rehearsal_tasks),
        ]:
            reasons.update(run_task_grant_reasons(task_definition))
        acknowledge(self.state_machine, reasons)
