"""The dbops dashboard: per database, its backups against the RPO, restores against the RTO, health and retention."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from constructs import Construct

from dbops import contract
from infra.alarm_rules import RPO_HOURS, dbops_metric
from infra.settings import StackSettings

RTO_SECONDS = 4 * 3600  # the guide's recovery time objective


def build_dashboard(scope: Construct, settings: StackSettings) -> cw.Dashboard:
    """The dashboard `Dashboard` in scope; the alarm-status row is added once every alarm exists."""
    databases = [db.name for db in settings.databases]
    on_rds = {db.name for db in settings.databases if db.on_rds}
    dashboard = cw.Dashboard(scope, "Dashboard", dashboard_name=f"{settings.stack_name}-dbops")
    day = Duration.days(1)
    for database in databases:
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
                    cw.HorizontalAnnotation(value=settings.alarm_thresholds(database).backup_age_hours, label="alarm"),
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
        if database in on_rds:
            dashboard.add_widgets(
                _graph(
                    "RPO with point-in-time restore: latest restorable time's age (s)",
                    [dbops_metric(contract.RESTORABLE_LAG_SECONDS, database)],
                    [
                        cw.HorizontalAnnotation(
                            value=settings.alarm_thresholds(database).restorable_lag_minutes * 60,
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


def _graph(
    title: str,
    metrics: Sequence[cw.IMetric],
    annotations: Sequence[cw.HorizontalAnnotation] = (),
    width: int = 6,
) -> cw.GraphWidget:
    return cw.GraphWidget(
        title=title, left=list(metrics), left_annotations=list(annotations) or None, width=width, height=6
    )
