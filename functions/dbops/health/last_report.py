"""The health function's last report of each database, kept under health/reports/ for `dbops status` to read."""

from __future__ import annotations

from urllib.parse import quote

from dbops.aws import s3stream
from dbops.contract import HEALTH_PREFIX
from dbops.health.model import HealthReport


def report_key(database: str) -> str:
    return f"{HEALTH_PREFIX}reports/{quote(database, safe='')}.json"


def save_report(bucket: str, report: HealthReport) -> None:
    s3stream.put_json(bucket, report_key(report.database), report.model_dump_json())


def load_report(bucket: str, database: str) -> HealthReport | None:
    text = s3stream.get_text(bucket, report_key(database))
    return None if text is None else HealthReport.model_validate_json(text)
