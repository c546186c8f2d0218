"""Alarms on the dbops metrics and on the functions, queues and state machines; one SNS topic; the dashboard.

Each alarm's description names its runbook section in README.md ("Runbook: <AlarmKind>"); the rules per database
are in infra/alarm_rules.py, the dashboard in infra/dashboard.py.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import RemovalPolicy
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from dbops import contract
from dbops.contract import MAINTENANCE_TASKS
from infra.alarm_rules import (
    FIVE_MINUTES,
    GE,
    GT,
    NOT_BREACHING,
    AlarmRule,
    database_rules,
    dbops_metric,
    disaster_rules,
)
from infra.alarm_settings import AlarmSettings
from infra.dashboard import build_dashboard
from infra.settings import StackSettings


class Monitoring(Construct):
    """`topic` (KMS-encrypted unless an existing one is given), `alarms` by name, `dashboard`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: StackSettings,
        functions: Mapping[str, lambda_.IFunction],
        watch_databases: bool = True,
    ) -> None:
        """`watch_databases`: each database's alarms (health, backups, maintenance) and the dashboard; the DR stack,
        which only restores, has neither."""
        super().__init__(scope, construct_id)
        self.settings = settings
        self.alarms: dict[str, cw.Alarm] = {}
        self.topic_key: kms.Key | None = None
        self.topic = self._topic(settings.alarms)
        self.action = cw_actions.SnsAction(self.topic)
        self.databases = [db.name for db in settings.databases]
        self.on_rds = {db.name for db in settings.databases if db.on_rds}
        health_scheduled = settings.schedules.health is not None
        backups_scheduled = settings.scheduled_backups()
        for database in self.databases if watch_databases else []:
            thresholds = settings.alarm_thresholds(database)
            on_rds = database in self.on_rds
            for rule in database_rules(thresholds, health_scheduled, database in backups_scheduled, on_rds):
                self._database_alarm(rule, database)
            for task in MAINTENANCE_TASKS:
                self._add(
                    f"MaintenanceFailed-{task}-{database}",
                    kind="MaintenanceFailed",
                    metric=dbops_metric(contract.MAINTENANCE_FAILED, database, statistic="Sum", task=task),
                    comparison=GE,
                    threshold=1,
                    evaluation_periods=1,
                    missing=NOT_BREACHING,
                    meaning=f"maintenance task {task} failed on database {database}",
                )
        for name, function in functions.items():
            self.watch_function(name, function)
        self.dashboard = build_dashboard(self, settings) if watch_databases else None

    def _topic(self, alarms: AlarmSettings) -> sns.ITopic:
        if alarms.topic_arn:
            return sns.Topic.from_topic_arn(self, "ExistingTopic", alarms.topic_arn)
        self.topic_key = kms.Key(
            self,
            "TopicKey",
            description="dbops: encrypts the alarm topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # CloudWatch alarms publish to an encrypted topic only when the key lets them
        self.topic_key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )
        topic = sns.Topic(self, "AlarmTopic", display_name="dbops alarms", master_key=self.topic_key, enforce_ssl=True)
        if alarms.email:
            topic.add_subscription(subscriptions.EmailSubscription(alarms.email))
        return topic

    def grant_publish(self, grantee: iam.IGrantable) -> None:
        """sns:Publish on the alarm topic and exactly the key actions publishing needs (no kms wildcard)."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(sid="PublishAlarms", actions=["sns:Publish"], resources=[self.topic.topic_arn])
        )
        if self.topic_key is not None:
            grantee.grant_principal.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="EncryptAlarms",
                    actions=["kms:GenerateDataKey", "kms:Decrypt"],
                    resources=[self.topic_key.key_arn],
                )
            )

    def _database_alarm(self, rule: AlarmRule, database: str) -> cw.Alarm:
        return self._add(
            f"{rule.kind}-{database}",
            kind=rule.kind,
            metric=dbops_metric(rule.metric, database, statistic=rule.statistic, period=rule.period),
            comparison=rule.comparison,
            threshold=rule.threshold,
            evaluation_periods=rule.evaluation_periods,
            missing=rule.missing,
            meaning=f"{rule.meaning} (database {database})",
        )

    def watch_function(self, name: str, function: lambda_.IFunction) -> cw.Alarm:
        """Lambda Errors ≥ 1 in 5 minutes: the handler raised (bad event, crash, timeout)."""
        return self._add(
            f"FunctionErrors-{name}",
            kind="FunctionErrors",
            metric=function.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
            comparison=GE,
            threshold=1,
            evaluation_periods=1,
            missing=NOT_BREACHING,
            meaning=f"the {name} function failed (Lambda Errors)",
        )

    def watch_dead_letter_queue(self, name: str, queue: sqs.IQueue) -> cw.Alarm:
        """Any message visible in the dead-letter queue: a scheduled invoke failed (it stays in alarm until the
        operator has read and deleted the messages)."""
        return self._add(
            f"DeadLetters-{name}",
            kind="ScheduledInvokeFailed",
            metric=queue.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES, statistic="Maximum"),
            comparison=GT,
            threshold=0,
            evaluation_periods=1,
            missing=NOT_BREACHING,
            meaning="a scheduled invoke failed: its event is in the dead-letter queue",
        )

    def watch_replication(
        self, *, source_bucket: str, destination_bucket: str, rule_id: str, lag_minutes: int
    ) -> list[cw.Alarm]:
        """S3 replication's metrics on the backup bucket's rule: any failed replication, and objects waiting
        longer than `lag_minutes` to reach the DR region."""
        dimensions = {"SourceBucket": source_bucket, "DestinationBucket": destination_bucket, "RuleId": rule_id}

        def metric(name: str, statistic: str) -> cw.Metric:
            return cw.Metric(
                namespace="AWS/S3",
                metric_name=name,
                dimensions_map=dimensions,
                statistic=statistic,
                period=FIVE_MINUTES,
            )

        return [
            self._add(
                "ReplicationFailed",
                kind="ReplicationFailed",
                metric=metric("OperationsFailedReplication", "Sum"),
                comparison=GT,
                threshold=0,
                evaluation_periods=1,
                missing=NOT_BREACHING,
                meaning="S3 failed to replicate a backup object to the DR region",
            ),
            self._add(
                "ReplicationLag",
                kind="ReplicationLag",
                metric=metric("ReplicationLatency", "Maximum"),
                comparison=GT,
                threshold=lag_minutes * 60,
                evaluation_periods=1,
                missing=NOT_BREACHING,
                meaning=f"backups are reaching the DR region more than {lag_minutes} minutes after they were written",
            ),
        ]

    def watch_disaster_drill(self, database: str, rpo_hours: float, *, scheduled: bool = True) -> list[cw.Alarm]:
        """The DR stack's disaster drill of a database (alarm_rules.disaster_rules)."""
        return [self._database_alarm(rule, database) for rule in disaster_rules(rpo_hours, scheduled)]

    def watch_state_machine(
        self, name: str, state_machine: sfn.IStateMachine, kind: str = "RestoreFailed"
    ) -> list[cw.Alarm]:
        """Executions that failed, timed out or were aborted; `kind` is the runbook section."""
        checks = {
            "Failed": state_machine.metric_failed(period=FIVE_MINUTES, statistic="Sum"),
            "TimedOut": state_machine.metric_timed_out(period=FIVE_MINUTES, statistic="Sum"),
            "Aborted": state_machine.metric_aborted(period=FIVE_MINUTES, statistic="Sum"),
        }
        return [
            self._add(
                f"Executions{what}-{name}",
                kind=kind,
                metric=metric,
                comparison=GE,
                threshold=1,
                evaluation_periods=1,
                missing=NOT_BREACHING,
                meaning=f"a {name} execution {what.lower()}",
            )
            for what, metric in checks.items()
        ]

    def _add(
        self,
        construct_id: str,
        *,
        kind: str,
        metric: cw.IMetric,
        comparison: cw.ComparisonOperator,
        threshold: float,
        evaluation_periods: int,
        missing: cw.TreatMissingData,
        meaning: str,
    ) -> cw.Alarm:
        alarm = cw.Alarm(
            self,
            construct_id,
            alarm_name=f"{self.settings.stack_name}-{construct_id}",
            alarm_description=f"{meaning}. Runbook: README.md, section 'Runbook' -> {kind}.",
            metric=metric,
            comparison_operator=comparison,
            threshold=threshold,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=evaluation_periods,
            treat_missing_data=missing,
        )
        alarm.add_alarm_action(self.action)
        alarm.add_ok_action(self.action)
        self.alarms[construct_id] = alarm
        return alarm

    def add_alarm_overview(self) -> None:
        """The dashboard's alarm-status row; call it once every alarm exists (the stack does, last)."""
        if self.dashboard is None:
            return
        self.dashboard.add_widgets(
            cw.AlarmStatusWidget(title="dbops alarms", alarms=list(self.alarms.values()), width=24, height=6)
        )
