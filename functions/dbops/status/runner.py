"""One status check: read the bucket, RDS and CloudWatch for each database, then grade it (dbops.status.rules)."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from dbops.aws import cloudwatch, rds, s3stream
from dbops.backup import catalog
from dbops.config.thresholds import Thresholds
from dbops.contract import DIMENSION_DATABASE, REHEARSALS_PREFIX
from dbops.errors import ConfigError, DbopsError
from dbops.health.last_report import load_report
from dbops.health.model import Status
from dbops.restore import records
from dbops.status import rules
from dbops.status.model import Aspect, DatabaseStatus, StatusReport, StatusTarget
from dbops.status.schedule import next_run

READ_ERRORS = (DbopsError, BotoCoreError, ClientError)
READERS = 4  # databases read at once


def _read(name: str, grade: Callable[[], Aspect]) -> Aspect:
    """An aspect graded from what it reads; `error` with the reason when the read failed."""
    try:
        return grade()
    except READ_ERRORS as exc:
        return Aspect(name=name, status=Status.ERROR, text=f"cannot read: {' '.join(str(exc).split())[:120]}")


def _window(source: tuple[Any, str] | None) -> tuple[datetime, datetime] | str | None:
    if source is None:
        return None
    found = rds.describe(source[0], source[1])
    if found is None:
        return f"RDS {source[0]} {source[1]} not found"
    try:
        window = rds.restore_window(found)
    except ConfigError as exc:  # no automated backups, or none done yet
        return str(exc)
    return window.earliest, window.latest


def _last_rehearsal(bucket: str, database: str) -> dict[str, Any] | None:
    results = [
        (at, key)
        for key, at in s3stream.list_objects(bucket, f"{REHEARSALS_PREFIX}{database}/")
        if key.endswith("/result.json")
    ]
    if not results:
        return None
    text = s3stream.get_text(bucket, max(results)[1])
    return None if text is None else dict(json.loads(text))


def _firing_for(database: str, firing: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The alarms on a metric of this database (its `database` dimension) or named for it (`<stack>-<Kind>-<db>`)."""
    return [
        a
        for a in firing
        if {"Name": DIMENSION_DATABASE, "Value": database} in a.get("Dimensions", [])
        or str(a.get("AlarmName", "")).endswith(f"-{database}")
    ]


def _database(
    bucket: str, target: StatusTarget, now: datetime, t: Thresholds, firing: list[dict[str, Any]] | str
) -> DatabaseStatus:
    name = target.name
    try:
        entries = catalog.list_backups(bucket, database=name)
        backup, retained = rules.backup(entries, now, t), rules.retained(entries, now, t)
    except READ_ERRORS as exc:
        backup = Aspect(name="backup", status=Status.ERROR, text=f"cannot read the catalog: {exc}")
        retained = Aspect(name="retained", status=Status.ERROR, text="cannot read the catalog")

    def upcoming() -> Aspect:
        when = next_run(target.schedule, now) if target.schedule else None
        return rules.next_backup(target.schedule, when, now)

    aspects = [
        backup,
        _read("next_backup", upcoming),
        retained,
        _read("point_in_time", lambda: rules.point_in_time(target.rds, _window(target.rds), now, t)),
        _read("drill", lambda: rules.drill(records.load_newest(bucket, "drill", name), now)),
        _read("health", lambda: rules.health(load_report(bucket, name), now)),
        _read("rehearsal", lambda: rules.rehearsal(_last_rehearsal(bucket, name))),
        rules.alarms(_firing_for(name, firing))
        if isinstance(firing, list)
        else Aspect(name="alarms", status=Status.ERROR, text=firing),
    ]
    return DatabaseStatus(database=name, aspects=aspects)


def check_status(
    bucket: str, targets: list[StatusTarget], *, now: datetime | None = None, thresholds: Thresholds | None = None
) -> StatusReport:
    """Every database's status at `now` (default: the present), the worst first."""
    at = now or datetime.now(UTC)
    t = thresholds or Thresholds()
    try:
        firing: list[dict[str, Any]] | str = cloudwatch.alarms_in_alarm()
    except READ_ERRORS as exc:
        firing = f"cannot read the alarms: {' '.join(str(exc).split())[:120]}"
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        found = list(pool.map(lambda target: _database(bucket, target, at, t, firing), targets))
    found.sort(key=lambda db: (-db.status.rank, db.database))
    return StatusReport(checked_at=at, bucket=bucket, databases=found)
