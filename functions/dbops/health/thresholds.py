"""Grading a probe's value against its warning and critical thresholds (dbops.config.thresholds)."""

from __future__ import annotations

from dbops.health.model import Status


def grade(value: float | None, warn: float, critical: float) -> Status:
    """Higher is worse."""
    if value is None:
        return Status.OK
    if value >= critical:
        return Status.CRITICAL
    return Status.WARN if value >= warn else Status.OK


def grade_low(value: float | None, warn: float, critical: float) -> Status:
    """Lower is worse (cache hit ratio)."""
    if value is None:
        return Status.OK
    if value < critical:
        return Status.CRITICAL
    return Status.WARN if value < warn else Status.OK
