"""The alarm rules on the dbops metrics (namespace "dbops", dimension "database"): each kind, threshold and meaning."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw

from dbops import contract
from dbops.contract import METRICS_NAMESPACE
from infra.alarm_settings import AlarmThresholds

GT = cw.ComparisonOperator.GREATER_THAN_THRESHOLD
GE = cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
LT = cw.ComparisonOperator.LESS_THAN_THRESHOLD
BREACHING = cw.TreatMissingData.BREACHING
NOT_BREACHING = cw.TreatMissingData.NOT_BREACHING

FIVE_MINUTES = Duration.minutes(5)
ONE_DAY = Duration.days(1)
RPO_HOURS = 24  # the guide's recovery point objective


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


def disaster_rules(rpo_hours: float, drill_scheduled: bool) -> list[AlarmRule]:
    """The DR stack's alarms on a database's disaster drill: it failed (no replicated verified backup, or the restore
    failed), the replicated backup it restored was older than `rpo_hours` (the DR recovery point), and, while it is
    scheduled, that none ran for 7 days (CloudWatch's longest window; a day without data counts as breaching)."""
    missing = AlarmRule(
        "DisasterDrillMissing",
        contract.DISASTER_RECOVERY_POINT_AGE_SECONDS,
        "SampleCount",
        ONE_DAY,
        LT,
        1,
        7,
        BREACHING,
        "no disaster drill reported its recovery point for 7 days",
    )
    return [
        *([missing] if drill_scheduled else []),
        AlarmRule(
            "DisasterDrillFailed",
            contract.DISASTER_DRILL_FAILED,
            "Sum",
            ONE_DAY,
            GE,
            1,
            1,
            NOT_BREACHING,
            "the disaster drill in the DR region failed",
        ),
        AlarmRule(
            "DisasterRecoveryPointOld",
            contract.DISASTER_RECOVERY_POINT_AGE_SECONDS,
            "Maximum",
            ONE_DAY,
            GT,
            rpo_hours * 3600,
            1,
            NOT_BREACHING,
            f"the newest replicated verified backup was more than {rpo_hours:g} hours old at the disaster drill "
            "(the DR recovery point)",
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
