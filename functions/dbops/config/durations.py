"""Durations as operators write them on a command line (`500ms`, `5s`, `2m`, `1h`, `1.5s`) and as reports show
them. A bare number is refused: `5` could mean seconds or minutes, and a lock limit read in the wrong unit
passes migrations it should stop."""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|min|h)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in `text` (`500ms`, `5s`, `2m`, `1h`); ValueError saying what is accepted."""
    match = _DURATION.match(text or "")
    if not match:
        raise ValueError(f"{text!r} is not a duration: write it with its unit, e.g. 500ms, 5s, 2m or 1h")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not math.isfinite(seconds):
        raise ValueError(f"{text!r} is too long a duration")
    return seconds


def format_duration(seconds: float) -> str:
    """A duration for people: milliseconds under a second, seconds under two minutes, then minutes."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.2f}s"
    return f"{seconds / 60:.1f}m"
