"""Health probes that catch trouble early: one read-only session, one typed result per probe, each against
named thresholds (defaults from check_postgres and PgHero), as a readable report, JSON, or CloudWatch metrics.

    report = run_health(spec, HealthSettings(bucket="my-backups"))
    print(format_report(report)); sys.exit(report.exit_code)
"""

from dbops.config.health import HealthSettings
from dbops.config.thresholds import Thresholds
from dbops.health.model import Finding, HealthReport, MetricPoint, ProbeResult, Status
from dbops.health.report import format_report
from dbops.health.runner import run_health

__all__ = [
    "Finding",
    "HealthReport",
    "HealthSettings",
    "MetricPoint",
    "ProbeResult",
    "Status",
    "Thresholds",
    "format_report",
    "run_health",
]
