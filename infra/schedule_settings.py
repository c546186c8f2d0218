"""cdk.json `schedules` and each database's backup schedules: EventBridge expressions, checked before any construct."""

from __future__ import annotations

import re

from pydantic import field_validator

from dbops.contract import MAINTENANCE_TASKS
from infra.settings_model import SettingsModel

_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_CRON = re.compile(r"cron\(([^()]+)\)")


def check_schedule(expression: str) -> str:
    """An EventBridge schedule expression: rate(N unit) or cron(6 fields, one day field '?')."""
    rate = _RATE.fullmatch(expression)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2)
        if value < 1:
            raise ValueError(f"{expression!r}: the rate must be at least 1")
        if (value == 1) != (not unit.endswith("s")):
            raise ValueError(f"{expression!r}: EventBridge wants 'rate(1 {unit.rstrip('s')})' or 'rate(N {unit}s)'")
        return expression
    cron = _CRON.fullmatch(expression)
    if cron:
        fields = cron.group(1).split()
        if len(fields) != 6:
            raise ValueError(
                f"{expression!r}: an EventBridge cron has 6 fields (minutes hours day-of-month month "
                f"day-of-week year), not {len(fields)}"
            )
        if "?" not in (fields[2], fields[4]):
            raise ValueError(f"{expression!r}: day-of-month or day-of-week must be '?'")
        return expression
    raise ValueError(f"{expression!r} is not an EventBridge schedule: use rate(5 minutes) or cron(0 2 * * ? *)")


def rate_hours(expression: str) -> float | None:
    """The interval of a rate() schedule in hours; None for a cron (its gaps vary)."""
    rate = _RATE.fullmatch(expression)
    if rate is None:
        return None
    per_unit = {"minute": 1 / 60, "hour": 1.0, "day": 24.0}
    return int(rate.group(1)) * per_unit[rate.group(2).rstrip("s")]


class Schedules(SettingsModel):
    """EventBridge schedule expressions (UTC); "off" turns a schedule off (CDK context drops JSON nulls)."""

    backup: str | None = "cron(0 2 * * ? *)"  # nightly, 02:00
    health: str | None = "rate(5 minutes)"
    analyze: str | None = "cron(0 4 ? * SUN *)"  # weekly (the guide)
    vacuum: str | None = "cron(30 3 * * ? *)"  # nightly, acts only where dead tuples pass the threshold
    reindex: str | None = "cron(0 5 1 * ? *)"  # monthly, concurrently
    cleanup: str | None = "cron(0 4 ? * SAT *)"  # weekly retention cleanup
    archive: str | None = "cron(30 4 ? * SAT *)"  # weekly archive of old sprint data
    restore_drill: str | None = "cron(0 6 ? * SUN *)"  # weekly proof that the latest backup restores
    expired_copies: str | None = "cron(0 7 * * ? *)"  # daily: drop databases kept after restores once their time is up
    # daily: delete point-in-time restores' temporary instances an aborted or timed-out execution left
    temporary_instances: str | None = "cron(15 7 * * ? *)"

    @field_validator("*")
    @classmethod
    def _expression(cls, value: str | None) -> str | None:
        return None if value is None or value == "off" else check_schedule(value)

    def maintenance(self) -> dict[str, str | None]:
        return {task: getattr(self, task) for task in MAINTENANCE_TASKS}


class BackupSchedule(SettingsModel):
    """One EventBridge rule starting the backup state machine: `databases` absent means every database."""

    name: str
    expression: str
    databases: tuple[str, ...] | None = None
