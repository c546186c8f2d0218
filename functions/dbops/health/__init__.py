"""Health probes that catch trouble early: one read-only session, one typed result per probe, each against
named thresholds (defaults from check_postgres and PgHero), as a readable report, JSON, or CloudWatch metrics.

    report = run_health(spec, HealthSettings(bucket="my-backups"))
    print(format_report(report)); sys.exit(report.exit_code)
"""

from dbops.health.model import Finding, HealthReport, MetricPoint, ProbeResult, Status
from dbops.health.report import format_report
from dbops.health.runner import run_health
from dbops.health.settings import HealthEnvironment, HealthSettings
from dbops.health.thresholds import Thresholds

__all__ = [
    "Finding",
    "HealthEnvironment",
    "HealthReport",
    "HealthSettings",
    "MetricPoint",
    "ProbeResult",
    "Status",
    "Thresholds",
    "format_report",
    "run_health",
]
