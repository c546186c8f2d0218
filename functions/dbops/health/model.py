"""What a health run returns: one typed result per probe, and the report that ranks them.

A probe's values become CloudWatch metrics one for one: the value `connections_used_percent` is the metric
`ConnectionsUsedPercent`, its unit read from the key's suffix. Keys are unique across probes.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field, computed_field

from dbops import contract


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    CRITICAL = "critical"
    ERROR = "error"  # the probe could not run: its query failed or timed out
    UNKNOWN = "unknown"  # the probe does not apply: no bucket, extension not installed, no connection

    @property
    def rank(self) -> int:
        """Worst first: critical, error, warn, unknown, ok."""
        return {"critical": 4, "error": 3, "warn": 2, "unknown": 1, "ok": 0}[self.value]


Value = int | float | None
MetricUnitName = Literal["Count", "Percent", "Seconds", "Milliseconds", "Bytes", "None"]

_UNIT_SUFFIXES: tuple[tuple[str, MetricUnitName], ...] = (
    ("_percent", "Percent"),
    ("_seconds", "Seconds"),
    ("_ms", "Milliseconds"),
    ("_bytes", "Bytes"),
    ("_hours", "None"),
)

# HealthStatus in the metric contract: the worst probe as 0 ok, 1 warn, 2 critical
STATUS_LEVEL = {Status.OK: 0, Status.UNKNOWN: 0, Status.ERROR: 0, Status.WARN: 1, Status.CRITICAL: 2}


def metric_name(key: str) -> str:
    """`connections_used_percent` -> `ConnectionsUsedPercent`."""
    return "".join(part[:1].upper() + part[1:] for part in key.split("_"))


def metric_unit(key: str) -> MetricUnitName:
    for suffix, unit in _UNIT_SUFFIXES:
        if key.endswith(suffix):
            return unit
    return "Count"


class Finding(BaseModel):
    """What a probe function returns; the runner adds the probe's name and timing."""

    status: Status
    message: str
    values: dict[str, Value] = Field(default_factory=dict)
    details: list[str] = Field(default_factory=list)


class ProbeResult(Finding):
    name: str
    seconds: float = 0.0


class MetricPoint(BaseModel):
    name: str
    value: float
    unit: MetricUnitName


_KEY = re.compile(r"^[a-z][a-z0-9_]*$")


class HealthReport(BaseModel):
    database: str
    server_version: str | None = None
    checked_at: datetime
    seconds: float
    probes: list[ProbeResult] = Field(description="worst first")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def status(self) -> Status:
        """The worst of ok / warn / critical; probe errors are counted apart (`probe_errors`)."""
        graded = [p.status for p in self.probes if p.status in (Status.OK, Status.WARN, Status.CRITICAL)]
        return max(graded, key=lambda s: s.rank, default=Status.OK)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def probe_errors(self) -> int:
        return sum(1 for p in self.probes if p.status is Status.ERROR)

    @property
    def exit_code(self) -> int:
        """Monitoring-plugin convention: 2 critical, else 3 when a probe failed to run, else 1 warn, else 0.

        A failed probe may hide a problem, so it outranks a warning; a critical finding is certain and
        outranks everything. `unknown` (a probe that does not apply) changes nothing.
        """
        if self.status is Status.CRITICAL:
            return 2
        if self.probe_errors:
            return 3
        return 1 if self.status is Status.WARN else 0

    def probe(self, name: str) -> ProbeResult:
        for p in self.probes:
            if p.name == name:
                return p
        raise KeyError(f"no probe named {name!r} in the report")

    def metrics(self) -> list[MetricPoint]:
        """HealthStatus, HealthProbeErrors, then one metric per numeric probe value."""
        points = [
            MetricPoint(name=contract.HEALTH_STATUS, value=STATUS_LEVEL[self.status], unit="None"),
            MetricPoint(name=contract.HEALTH_PROBE_ERRORS, value=self.probe_errors, unit="Count"),
        ]
        seen: set[str] = set()
        for probe in self.probes:
            for key, value in probe.values.items():
                if not _KEY.match(key) or key in seen:
                    raise ValueError(f"probe {probe.name}: value key {key!r} is not a unique snake_case name")
                seen.add(key)
                if value is not None:
                    points.append(MetricPoint(name=metric_name(key), value=float(value), unit=metric_unit(key)))
        return points
