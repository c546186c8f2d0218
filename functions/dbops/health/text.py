"""Text for reports and logs: sizes, ages, and query texts with their literals hidden."""

from __future__ import annotations

import re

_LITERAL = re.compile(r"'(?:[^']|'')*'|\$([A-Za-z_]\w*|)\$.*?\$\1\$", re.S)
_SPACE = re.compile(r"\s+")


def redact_query(text: str | None, limit: int = 160) -> str:
    """A query's text fit for a report or a log: string literals hidden (they may hold secrets), one line."""
    if not text:
        return ""
    text = _SPACE.sub(" ", _LITERAL.sub("'…'", text)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def size(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
