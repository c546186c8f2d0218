"""When an EventBridge schedule expression next fires: cron() field by field (UTC), rate() has no fixed moment."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

from dbops.errors import ConfigError

_CRON = re.compile(r"cron\(([^()]+)\)")
_RATE = re.compile(r"rate\((\d+) (minutes?|hours?|days?)\)")
MONTHS = {
    m: i for i, m in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1)
}
WEEKDAYS = {
    d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], 1)
}  # EventBridge: 1 is Sunday
SEARCH_DAYS = 5 * 366


def _number(text: str, names: dict[str, int]) -> int:
    return names[text.upper()] if text.upper() in names else int(text)


def _field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int] | None:
    """The values a cron field allows; None for * and ? (any). Refuses L, W and # (not modelled here)."""
    if text in ("*", "?"):
        return None
    found: set[int] = set()
    for part in text.split(","):
        span, _, step = part.partition("/")
        if span == "*":
            first, last = low, high
        else:
            start, _, end = span.partition("-")
            first = _number(start, names or {})
            last = _number(end, names or {}) if end else (high if step else first)
        found.update(range(first, last + 1, int(step) if step else 1))
    if not found or min(found) < low or max(found) > high:
        raise ValueError(text)
    return frozenset(found)


def _allows(allowed: frozenset[int] | None, value: int) -> bool:
    return allowed is None or value in allowed


def next_run(expression: str, now: datetime) -> datetime | None:
    """The first moment after `now` a cron() expression fires; None for a rate() (it counts from when the rule was
    made) and for "off". A ConfigError for anything else, or a cron using L, W or # (not modelled here)."""
    if expression == "off" or _RATE.fullmatch(expression):
        return None
    cron = _CRON.fullmatch(expression)
    fields = cron.group(1).split() if cron else []
    if len(fields) != 6:
        raise ConfigError(f"{expression!r} is not an EventBridge schedule: e.g. cron(0 2 * * ? *) or rate(1 day)")
    try:
        minutes = _field(fields[0], 0, 59) or frozenset(range(60))
        hours = _field(fields[1], 0, 23) or frozenset(range(24))
        days = _field(fields[2], 1, 31)
        months = _field(fields[3], 1, 12, MONTHS)
        weekdays = _field(fields[4], 1, 7, WEEKDAYS)
        years = _field(fields[5], 1970, 2199)
    except (ValueError, KeyError):
        raise ConfigError(f"{expression!r}: a cron field dbops cannot read (L, W and # are not modelled)") from None
    start = now.astimezone(UTC)
    for offset in range(SEARCH_DAYS):
        day: date = start.date() + timedelta(days=offset)
        weekday = (day.weekday() + 1) % 7 + 1
        if not (_allows(years, day.year) and _allows(months, day.month)):
            continue
        if not (_allows(days, day.day) and _allows(weekdays, weekday)):
            continue
        for hour in sorted(hours):
            for minute in sorted(minutes):
                moment = datetime.combine(day, time(hour, minute), tzinfo=UTC)
                if moment > start:
                    return moment
    return None
