"""Alarms on the dbops metrics (namespace "dbops", dimension "database"), one SNS topic, one dashboard.

Each alarm's description names its runbook section in README.md ("Runbook: <AlarmKind>").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
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
from dbops.contract import MAINTENANCE_TASKS, METRICS_NAMESPACE
from infra.settings import AlarmSettings, AlarmThresholds, StackSettings

GT = cw.ComparisonOperator.GREATER_THAN_THRESHOLD
GE = cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
LT = cw.ComparisonOperator.LESS_THAN_THRESHOLD
BREACHING = cw.TreatMissingData.BREACHING
NOT_BREACHING = cw.TreatMissingData.NOT_BREACHING

FIVE_MINUTES = Duration.minutes(5)
RPO_HOURS = 24  # the guide's recovery point objective
RTO_SECONDS = 4 * 3600  # the guide's recovery time objective


@dataclass(frozen=True)
class AlarmRule:
    """An alarm on one dbops metric of one database: `kind` is also the README runbook section."""

    kind: str
    metric: str
    statistic: str
    period: Duration
    comparison: cw.ComparisonOperator
    threshold: float
    evaluation_periods: int
    missing: cw.TreatMissingData
    meaning: str


def database_rules(
    t: AlarmThresholds, health_scheduled: bool, backup_scheduled: bool, on_rds: bool = False
) -> list[AlarmRule]:
    """A database's alarms; BackupMissing only when its backups run on a schedule (one whose schedule is "off" is
    backed up on request only, and no backup for a day is not a fault); PointInTimeLag only on RDS."""
    blocked_periods = max(1, t.blocked_minutes // 5)
    missing = AlarmRule(
        "BackupMissing",
        contract.BACKUP_SUCCEEDED,
        "Sum",
        Duration.minutes(round(t.backup_age_hours * 60)),
        LT,
        1,
        1,
        BREACHING,
        f"no backup succeeded in the last {t.backup_age_hours:g} hours (no data counts as missing)",
    )
    lag = AlarmRule(
        "PointInTimeLag",
        contract.RESTORABLE_LAG_SECONDS,
        "Maximum",
        FIVE_MINUTES,
        GT,
        t.restorable_lag_minutes * 60,
        2,
        NOT_BREACHING,
        f"the RDS instance's latest restorable time is over {t.restorable_lag_minutes:g} minutes old for 10 "
        "minutes: a restore as of now would lose that much",
    )
    return [
        AlarmRule(
            "BackupFailed", contract.BACKUP_FAILED, "Sum", FIVE_MINUTES, GE, 1, 1, NOT_BREACHING, "a backup failed"
        ),
        *([missing] if backup_scheduled else []),
        *([lag] if on_rds else []),
        AlarmRule(
            "RestoreFailed", contract.RESTORE_FAILED, "Sum", FIVE_MINUTES, GE, 1, 1, NOT_BREACHING, "a restore failed"
        ),
        AlarmRule(
            "DrillFailed", contract.DRILL_FAILED, "Sum", FIVE_MINUTES, GE, 1, 1, NOT_BREACHING, "a restore drill failed"
        ),
        AlarmRule(
            "HealthCritical",
            contract.HEALTH_STATUS,
            "Maximum",
            FIVE_MINUTES,
            GE,
            2,
            2,
            BREACHING if health_scheduled else NOT_BREACHING,
            "a health probe is critical (or the health function stopped reporting) for 10 minutes",
        ),
        AlarmRule(
            "HealthProbeErrors",
            contract.HEALTH_PROBE_ERRORS,
            "Sum",
            FIVE_MINUTES,
            GE,
            1,
            2,
            NOT_BREACHING,
            "health probes failed to run in two consecutive runs",
        ),
        AlarmRule(
            "BackupStale",
            contract.BACKUP_AGE_HOURS,
            "Maximum",
            FIVE_MINUTES,
            GT,
            t.backup_age_hours,
            3,
            NOT_BREACHING,
            f"the newest verified backup is older than {t.backup_age_hours:g} hours (RPO {RPO_HOURS} h)",
        ),
        AlarmRule(
            "ConnectionsHigh",
            contract.CONNECTIONS_USED_PERCENT,
            "Maximum",
            FIVE_MINUTES,
            GE,
            t.connections_used_percent,
            2,
            NOT_BREACHING,
            f"connections at {t.connections_used_percent:g}% of max_connections or more for 10 minutes",
        ),
        AlarmRule(
            "QueriesBlocked",
            contract.BLOCKED_QUERIES,
            "Minimum",
            FIVE_MINUTES,
            GE,
            t.blocked_queries,
            blocked_periods,
            NOT_BREACHING,
            f"{t.blocked_queries} or more queries blocked by locks for {blocked_periods * 5} minutes",
        ),
        AlarmRule(
            "XidWraparound",
            contract.XID_WRAPAROUND_AGE,
            "Maximum",
            FIVE_MINUTES,
            GT,
            t.xid_wraparound_age,
            1,
            NOT_BREACHING,
            f"transaction ID age above {t.xid_wraparound_age:,}: wraparound protection is approaching",
        ),
    ]


def dbops_metric(
    name: str, database: str, *, statistic: str = "Maximum", period: Duration = FIVE_MINUTES, task: str | None = None
) -> cw.Metric:
    dimensions = {contract.DIMENSION_DATABASE: database}
    if task is not None:
        dimensions[contract.DIMENSION_TASK] = task
    return cw.Metric(
        namespace=METRICS_NAMESPACE, metric_name=name, dimensions_map=dimensions, statistic=statistic, period=period
    )


class Monitoring(Construct):
    """`topic` (KMS-encrypted unless an existing one is given), `alarms` by name, `dashboard`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: StackSettings,
        functions: Mapping[str, lambda_.IFunction],
    ) -> None:
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
        for database in self.databases:
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
        self.dashboard = self._dashboard()

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

    def _dashboard(self) -> cw.Dashboard:
        dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=f"{self.settings.stack_name}-dbops")
        day = Duration.days(1)
        for database in self.databases:
            dashboard.add_widgets(
                cw.TextWidget(markdown=f"## {database}", width=24, height=1),
            )
            dashboard.add_widgets(
                _graph("Backup size (bytes)", [dbops_metric(contract.BACKUP_BYTES, database, period=day)]),
                _graph("Backup duration (s)", [dbops_metric(contract.BACKUP_DURATION_SECONDS, database, period=day)]),
                _graph(
                    "RPO: age of the newest verified backup (h)",
                    [dbops_metric(contract.BACKUP_AGE_HOURS, database)],
                    [
                        cw.HorizontalAnnotation(value=RPO_HOURS, label="RPO 24 h"),
                        cw.HorizontalAnnotation(
                            value=self.settings.alarm_thresholds(database).backup_age_hours, label="alarm"
                        ),
                    ],
                ),
                _graph(
                    "Measured RTO: restore and drill time (s)",
                    [dbops_metric(contract.RESTORE_SECONDS, database, period=day)],
                    [cw.HorizontalAnnotation(value=RTO_SECONDS, label="RTO 4 h")],
                ),
            )
            dashboard.add_widgets(
                _graph("Health status (0 ok, 1 warn, 2 critical)", [dbops_metric(contract.HEALTH_STATUS, database)]),
                _graph(
                    "Connections used (% of max_connections)",
                    [dbops_metric(contract.CONNECTIONS_USED_PERCENT, database)],
                ),
                _graph(
                    "Blocked queries / probe errors",
                    [
                        dbops_metric(contract.BLOCKED_QUERIES, database),
                        dbops_metric(contract.HEALTH_PROBE_ERRORS, database, statistic="Sum"),
                    ],
                ),
                _graph("Transaction ID age", [dbops_metric(contract.XID_WRAPAROUND_AGE, database)]),
            )
            if database in self.on_rds:
                dashboard.add_widgets(
                    _graph(
                        "RPO with point-in-time restore: latest restorable time's age (s)",
                        [dbops_metric(contract.RESTORABLE_LAG_SECONDS, database)],
                        [
                            cw.HorizontalAnnotation(
                                value=self.settings.alarm_thresholds(database).restorable_lag_minutes * 60,
                                label="alarm",
                            )
                        ],
                    ),
                )
            dashboard.add_widgets(
                _graph(
                    "Backups, restores and drills (count per day)",
                    [
                        dbops_metric(name, database, statistic="Sum", period=day)
                        for name in (
                            contract.BACKUP_SUCCEEDED,
                            contract.BACKUP_FAILED,
                            contract.RESTORE_SUCCEEDED,
                            contract.RESTORE_FAILED,
                            contract.DRILL_SUCCEEDED,
                            contract.DRILL_FAILED,
                        )
                    ],
                    width=12,
                ),
                _graph(
                    "Retention: rows deleted / archived per day",
                    [
                        dbops_metric(contract.ROWS_DELETED, database, statistic="Sum", period=day, task="cleanup"),
                        dbops_metric(contract.ROWS_ARCHIVED, database, statistic="Sum", period=day, task="archive"),
                    ],
                    width=12,
                ),
            )
        return dashboard

    def add_alarm_overview(self) -> None:
        """The dashboard's alarm-status row; call it once every alarm exists (the stack does, last)."""
        self.dashboard.add_widgets(
            cw.AlarmStatusWidget(title="dbops alarms", alarms=list(self.alarms.values()), width=24, height=6)
        )


def _graph(
    title: str,
    metrics: Sequence[cw.IMetric],
    annotations: Sequence[cw.HorizontalAnnotation] = (),
    width: int = 6,
) -> cw.GraphWidget:
    return cw.GraphWidget(
        title=title, left=list(metrics), left_annotations=list(annotations) or None, width=width, height=6
    )
