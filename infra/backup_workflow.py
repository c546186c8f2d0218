"""The backup state machine: one execution per request, a Map over the databases, one Backup invoke each.

Input: {"kind": "nightly" | "predeploy" | "manual", "databases": [...]} — `databases` is optional (absent: every
configured database) and every name in it must be configured: a request that is not so ends refused, before any
backup (the Succeed state BackupRefused, output {"status": "refused", "reason", "error"}; no alarm counts it).
Each database is backed up by its own invoke of the Backup function ({"kind": ..., "database": ...}), with its own
Retry (Lambda's transient service errors only: a backup that failed is not repeated behind the operator's back) and
its own Catch, which records the failure and lets the other databases go on. The handler emits BackupFailed for that
database and raises. After the Map, the execution fails naming every database whose backup failed, or
succeeds with each backup's id.

With a Fargate task (the restore stage task's cluster, task definition and image, infra/restore_workflow.StageTask),
each database's branch first asks the Backup function where its backup runs ({"plan": true}: its configured
runner, else its last committed backup against the function's timeout, dbops.backup.placement), then runs it in the
function or as that task with the command `python -m handlers.backup_task` (ecs:runTask.sync), the database and
kind in its environment. Both write the same manifest; both branches keep the database's own Retry and Catch.

Within one execution each database is backed up once; across executions (the nightly one and a manual one
at the same moment) the backup itself refuses to overlap another backup of the same database (a PostgreSQL
advisory lock, dbops.backup.run).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from aws_cdk import Duration
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from dbops import contract
from infra.restore_workflow import StageTask
from infra.state_machines import (
    acknowledge,
    invoke_grant_reasons,
    log_group,
    override,
    run_task_grant_reasons,
    run_to_completion,
)

# the kinds a request may ask for (prerestore backups are the restore workflow's own)
REQUEST_KINDS = contract.REQUESTED_KINDS
# Lambda's own transient failures, retried; not Lambda.ClientExecutionTimeoutException (the function may still be
# running: a second invoke would start a second backup of the database) and not the backup's failure
LAMBDA_TRANSIENT_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]
# ECS's own failures to start a task (capacity, throttling), retried; not States.TaskFailed (the task ran and its
# backup failed: it wrote nothing, and is not repeated behind the operator's back)
ECS_TRANSIENT_ERRORS = ["ECS.AmazonECSException", "ECS.ServerException"]
DEFAULT_MAX_CONCURRENCY = 4
BACKUP_TASK_COMMAND = ["python", "-m", "handlers.backup_task"]


T = TypeVar("T", bound=sfn.TaskStateBase)


def _guarded(state: T, transient: list[str], on_failure: sfn.Pass, retry_interval_s: int, retry_attempts: int) -> T:
    """Retried on `transient` errors only; any failure recorded as this database's, never the whole run's."""
    state.add_retry(
        errors=transient,
        interval=Duration.seconds(retry_interval_s),
        max_attempts=retry_attempts,
        backoff_rate=2,
    )
    state.add_catch(on_failure, errors=["States.ALL"], result_path="$.error")
    return state


class BackupWorkflow(Construct):
    """`state_machine` (input {"kind", "databases"?}) and its `log_group`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function: lambda_.IFunction,
        databases: Sequence[str],
        task: StageTask | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        retry_interval_s: int = 2,
        retry_attempts: int = 6,
        timeout_hours: int = 6,
        state_machine_name: str | None = "dbops-backup",
        logs_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS,
        logs_key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if not databases:
            raise ValueError("BackupWorkflow needs at least one configured database")
        self.databases = list(databases)
        self.task = task
        each = self._backup_each(function, max_concurrency, retry_interval_s, retry_attempts, timeout_hours)
        each.next(self._outcome())
        self.log_group = log_group(self, "Logs", logs_retention, logs_key)
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=state_machine_name,
            definition_body=sfn.DefinitionBody.from_chainable(self._request(each)),
            timeout=Duration.hours(timeout_hours),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
        )
        reasons = invoke_grant_reasons([function])
        if task is not None:
            reasons.update(run_task_grant_reasons(task.task_definition))
        acknowledge(self.state_machine, reasons)

    def _request(self, each: sfn.Map) -> sfn.Choice:
        """The request checked, then which databases: the configured ones (known at synth) or the request's,
        each of them checked to be configured, before any backup starts. A request that fails these checks ends
        refused (the Succeed state BackupRefused, output {"status": "refused", "reason", "error"}): nothing was
        backed up or broken, so no alarm counts it (BackupWorkflowFailed watches failed executions)."""
        configured = ", ".join(self.databases)
        refused = sfn.Succeed(self, "BackupRefused")
        invalid = sfn.Pass(
            self,
            "InvalidRequest",
            parameters={
                "status": contract.REFUSED_STATUS,
                "error": "InvalidRequest",
                "reason": f'a backup request is {{"kind": {" | ".join(REQUEST_KINDS)}, "databases": [...]}} '
                f"(databases optional: absent, every configured database: {configured})",
            },
        )
        invalid.next(refused)
        every = sfn.Pass(
            self,
            "EveryDatabase",
            parameters={"kind": sfn.JsonPath.string_at("$.kind"), "databases": self.databases},
        )
        every.next(each)
        known = [sfn.Condition.string_equals("$.name", name) for name in self.databases]
        check = sfn.Map(
            self,
            "CheckDatabases",
            items_path="$.databases",
            item_selector={"name": sfn.JsonPath.string_at("$$.Map.Item.Value")},
            result_path="$.checked",
        )
        name = sfn.JsonPath.string_at("$.name")
        check.item_processor(
            sfn.Choice(self, "Configured")
            .when(
                known[0] if len(known) == 1 else sfn.Condition.or_(*known),
                sfn.Pass(self, "Known", parameters={"name": name, "known": True}),
            )
            .otherwise(sfn.Pass(self, "Unknown", parameters={"name": name, "known": False}))
        )
        unknown = sfn.Pass(
            self,
            "UnknownDatabase",
            parameters={
                "status": contract.REFUSED_STATUS,
                "error": "UnknownDatabase",
                "unknown": sfn.JsonPath.list_at("$.unknown"),
                "reason": sfn.JsonPath.format(
                    f"not a configured database: {{}} (configured: {configured})",
                    sfn.JsonPath.json_to_string(sfn.JsonPath.list_at("$.unknown")),
                ),
            },
        )
        unknown.next(refused)
        # a JSONPath filter that matches nothing is an error in the engine: ask first whether any is unknown
        find_unknown = sfn.Pass(
            self,
            "FindUnknown",
            parameters={
                "kind": sfn.JsonPath.string_at("$.kind"),
                "databases": sfn.JsonPath.list_at("$.databases"),
                "checked": sfn.JsonPath.list_at("$.checked"),
                "any_unknown.$": "States.ArrayContains($.checked[*].known, false)",
            },
        )
        list_unknown = sfn.Pass(
            self,
            "ListUnknown",
            parameters={"unknown": sfn.JsonPath.list_at("$.checked[?(@.known == false)].name")},
        )
        list_unknown.next(unknown)
        check.next(find_unknown)
        find_unknown.next(
            sfn.Choice(self, "AllConfigured")
            .when(sfn.Condition.boolean_equals("$.any_unknown", True), list_unknown)
            .otherwise(each)
        )
        requested = sfn.Pass(
            self,
            "Requested",
            parameters={
                "kind": sfn.JsonPath.string_at("$.kind"),
                "databases": sfn.JsonPath.array_unique(sfn.JsonPath.list_at("$.databases")),
                "count": sfn.JsonPath.array_length(sfn.JsonPath.list_at("$.databases")),
            },
        )
        requested.next(
            sfn.Choice(self, "AnyRequested").when(sfn.Condition.number_equals("$.count", 0), invalid).otherwise(check)
        )
        which = (
            sfn.Choice(self, "WhichDatabases").when(sfn.Condition.is_present("$.databases"), requested).otherwise(every)
        )
        start = sfn.Choice(self, "Request").when(sfn.Condition.is_not_present("$.kind"), invalid)
        for kind in REQUEST_KINDS:
            start.when(sfn.Condition.string_equals("$.kind", kind), which)
        return start.otherwise(invalid)

    def _backup_each(
        self,
        function: lambda_.IFunction,
        max_concurrency: int,
        retry_interval_s: int,
        retry_attempts: int,
        timeout_hours: int,
    ) -> sfn.Map:
        """Each database: its own invoke (or plan, then invoke or Fargate task), Retry on transient errors, a Catch
        that records the failure."""
        backup = tasks.LambdaInvoke(
            self,
            "Backup",
            lambda_function=function,
            payload=sfn.TaskInput.from_object(
                {"kind": sfn.JsonPath.string_at("$.kind"), "database": sfn.JsonPath.string_at("$.database")}
            ),
            payload_response_only=True,
            retry_on_service_exceptions=False,
            output_path="$.results[0]",  # the handler's {"results": [<this database's result>]}
        )
        record_failure = sfn.Pass(
            self,
            "RecordFailure",
            parameters={
                "database": sfn.JsonPath.string_at("$.database"),
                "kind": sfn.JsonPath.string_at("$.kind"),
                "ok": False,
                "error": sfn.JsonPath.string_at("$.error.Error"),
                "cause": sfn.JsonPath.string_at("$.error.Cause"),
                "summary": sfn.JsonPath.format(
                    "{} ({})", sfn.JsonPath.string_at("$.database"), sfn.JsonPath.string_at("$.error.Error")
                ),
            },
        )

        _guarded(backup, LAMBDA_TRANSIENT_ERRORS, record_failure, retry_interval_s, retry_attempts)
        first: sfn.IChainable = backup
        if self.task is not None:
            first = self._plan(function, backup, record_failure, retry_interval_s, retry_attempts, timeout_hours)
        each = sfn.Map(
            self,
            "BackupEach",
            items_path="$.databases",
            item_selector={
                "kind": sfn.JsonPath.string_at("$.kind"),
                "database": sfn.JsonPath.string_at("$$.Map.Item.Value"),
            },
            max_concurrency=max_concurrency,
            result_path="$.results",
        )
        each.item_processor(first)
        return each

    def _plan(
        self,
        function: lambda_.IFunction,
        backup: tasks.LambdaInvoke,
        record_failure: sfn.Pass,
        retry_interval_s: int,
        retry_attempts: int,
        timeout_hours: int,
    ) -> tasks.LambdaInvoke:
        """Plan (the Backup function says where this database's backup runs) → Lambda or the Fargate task."""
        assert self.task is not None
        task = self.task
        plan = tasks.LambdaInvoke(
            self,
            "Plan",
            lambda_function=function,
            payload=sfn.TaskInput.from_object(
                {
                    "kind": sfn.JsonPath.string_at("$.kind"),
                    "database": sfn.JsonPath.string_at("$.database"),
                    "plan": True,
                }
            ),
            payload_response_only=True,
            retry_on_service_exceptions=False,
        )  # its output: {"database", "kind", "runner", "reason"}
        _guarded(plan, LAMBDA_TRANSIENT_ERRORS, record_failure, retry_interval_s, retry_attempts)
        environment = {
            contract.ENV_BACKUP_DATABASE: sfn.JsonPath.string_at("$.database"),
            contract.ENV_BACKUP_KIND: sfn.JsonPath.string_at("$.kind"),
        }
        on_fargate = run_to_completion(
            self,
            "BackupOnFargate",
            task,
            [override(task.container, environment, BACKUP_TASK_COMMAND)],
            timeout=sfn.Timeout.duration(Duration.hours(timeout_hours)),
        )
        _guarded(on_fargate, ECS_TRANSIENT_ERRORS, record_failure, retry_interval_s, retry_attempts)
        # the task's result as the Backup function's (the backup's id and size are in the task's log and the catalog)
        on_fargate.next(
            sfn.Pass(
                self,
                "BackedUpOnFargate",
                parameters={
                    "database": sfn.JsonPath.string_at("$.database"),
                    "kind": sfn.JsonPath.string_at("$.kind"),
                    "ok": True,
                    "runner": "fargate",
                },
            )
        )
        plan.next(
            sfn.Choice(self, "WhereToBackUp")
            .when(sfn.Condition.string_equals("$.runner", "fargate"), on_fargate)
            .otherwise(backup)
        )
        return plan

    def _outcome(self) -> sfn.Pass:
        """After the Map: fail naming every database whose backup failed, else succeed with the results."""
        failed = sfn.Fail(
            self,
            "BackupsFailed",
            error="BackupsFailed",
            cause_path=sfn.JsonPath.format(
                "{} of {} backups failed: {}; each error is in the Backup function log group",
                sfn.JsonPath.array_length(sfn.JsonPath.list_at("$.failed")),
                sfn.JsonPath.array_length(sfn.JsonPath.list_at("$.results")),
                sfn.JsonPath.json_to_string(sfn.JsonPath.list_at("$.failed")),
            ),
        )
        list_failures = sfn.Pass(
            self,
            "ListFailures",
            parameters={
                "failed": sfn.JsonPath.list_at("$.results[?(@.ok == false)].summary"),
                "results": sfn.JsonPath.list_at("$.results"),
            },
        )
        list_failures.next(failed)
        summarize = sfn.Pass(
            self,
            "Summarize",
            parameters={
                "kind": sfn.JsonPath.string_at("$.kind"),
                "results": sfn.JsonPath.list_at("$.results"),
                # (CDK renders no boolean literal in an intrinsic: the intrinsic as written)
                "any_failed.$": "States.ArrayContains($.results[*].ok, false)",
            },
        )
        summarize.next(
            sfn.Choice(self, "AnyFailed")
            .when(sfn.Condition.boolean_equals("$.any_failed", True), list_failures)
            .otherwise(sfn.Succeed(self, "BackedUp"))
        )
        return summarize
