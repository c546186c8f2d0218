"""Text for reports and logs: sizes, ages, and query texts with their literals hidden."""

from __future__ import annotations

from dbops.postgres.sql_text import one_line
from dbops.text import human_age as age
from dbops.text import human_bytes as size

__all__ = ["age", "redact_query", "size"]


def redact_query(text: str | None, limit: int = 160) -> str:
    """A query's text fit for a report or a log: string literals hidden (they may hold secrets), one line."""
    return one_line(text, limit) if text else ""
