"""Statement texts for reports and logs: string literals hidden (a query or a migration may hold secrets), one line.

Used by the health probes (the queries of sessions and of pg_stat_statements) and the rehearsal (the migration's
statements): one scanner for both, so a quoted name holding an apostrophe or a comment holding one never makes a
literal's secret show.
"""

from __future__ import annotations

import re

# One pass over the statement, left to right, as PostgreSQL's scanner reads it: a double-quoted identifier is a name
# whatever it holds (an apostrophe, `--`, `$$`), a comment may hold an apostrophe, and only what is left of those
# can open a string literal ('...', E'...' with backslash escapes, $tag$...$tag$).
_TOKEN = re.compile(
    r'(?P<name>"(?:[^"]|"")*")'
    r"|(?P<comment>--[^\n]*|/\*.*?\*/)"
    r"|(?P<literal>(?<![\w$])[Ee]'(?:[^'\\]|\\.|'')*'|'(?:[^']|'')*'|(?<![\w$])\$(?P<tag>[A-Za-z_]\w*|)\$.*?\$(?P=tag)\$)",
    re.S,
)
_SPACE = re.compile(r"\s+")


def replace_literals(statement: str, literal: str, comment: str | None) -> str:
    """The statement with each string literal replaced by `literal`, each comment by `comment` (None: kept), its
    quoted names kept as they are."""

    def one(match: re.Match[str]) -> str:
        if match.group("literal") is not None:
            return literal
        if match.group("comment") is not None and comment is not None:
            return comment
        return match.group(0)

    return _TOKEN.sub(one, statement)


def normalized(statement: str) -> str:
    """Upper case, comments and string literals removed, whitespace collapsed."""
    return _SPACE.sub(" ", replace_literals(statement, "''", " ")).strip().upper()


def one_line(statement: str, limit: int = 300) -> str:
    """A statement for a report: one line, string literals hidden (a migration may write secrets), at most `limit`."""
    text = _SPACE.sub(" ", replace_literals(statement, "'…'", None)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def redact_query(text: str | None, limit: int = 160) -> str:
    """A query's text fit for a report or a log: string literals hidden (they may hold secrets), one line."""
    return one_line(text, limit) if text else ""
