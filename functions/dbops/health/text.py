"""Text for reports and logs: sizes, ages, and query texts with their literals hidden."""

from __future__ import annotations

import re

from dbops.text import human_age as age
from dbops.text import human_bytes as size

__all__ = ["age", "redact_query", "size"]

_LITERAL = re.compile(r"'(?:[^']|'')*'|\$([A-Za-z_]\w*|)\$.*?\$\1\$", re.S)
_SPACE = re.compile(r"\s+")


def redact_query(text: str | None, limit: int = 160) -> str:
    """A query's text fit for a report or a log: string literals hidden (they may hold secrets), one line."""
    if not text:
        return ""
    text = _SPACE.sub(" ", _LITERAL.sub("'…'", text)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
