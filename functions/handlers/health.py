"""Health function: an EventBridge schedule (every 5 minutes) or a direct invoke naming a database.

Per database: run every probe, emit one EMF metric per probe value (plus HealthStatus and HealthProbeErrors),
log the report, keep it as the database's last under health/reports/ (`dbops status` reads it), and return
the reports. A critical finding is a result, not a failure: the function only
fails on bad input, so alarms (not Lambda errors) carry the health signal.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from dbops.errors import DbopsError
from dbops.health import HealthReport, run_health
from dbops.health.counters import S3TempFileState
from dbops.health.last_report import save_report
from dbops.settings import FunctionSettings, HealthEnvironment
from handlers.events import databases_to_run, deadline_for, parse_invocation
from handlers.observability import emit, logger, tracer


class HealthInvocation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    database: str | None = Field(default=None, description="omit to check every configured database")


class HealthResponse(BaseModel):
    reports: list[HealthReport]


def parse_event(event: Any) -> HealthInvocation:
    return parse_invocation(HealthInvocation, event, "health event")


def publish(report: HealthReport) -> None:
    for point in report.metrics():
        emit(point.name, point.value, MetricUnit(point.unit), report.database)
    logger.info(
        "health report",
        extra={
            "database": report.database,
            "status": report.status.value,
            "probe_errors": report.probe_errors,
            "report": report.model_dump(mode="json"),
        },
    )


@logger.inject_lambda_context(correlation_id_path="id", clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = FunctionSettings()
    health = HealthEnvironment()
    invocation = parse_event(event)
    configs = databases_to_run(settings.databases, invocation.database)
    deadline = deadline_for(context, settings.deadline_margin_s)
    reports = []
    counters = S3TempFileState(settings.bucket)  # the temp_files probe's previous counters: a rate, not a total
    for config in configs:
        options = health.for_database(config.name, settings.bucket, config.rds_source())
        report = run_health(config, options, deadline=deadline, temp_file_state=counters)
        publish(report)
        try:
            save_report(settings.bucket, report)  # the last one, for `dbops status`
        except DbopsError as exc:
            logger.error("health report not kept", extra={"database": report.database, "error": str(exc)})
        reports.append(report)
    return HealthResponse(reports=reports).model_dump(mode="json")
