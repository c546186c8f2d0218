"""Text for people: sizes, ages and plain tables, shared by the CLI, reports and the demo."""

from __future__ import annotations


def human_bytes(n: float | None) -> str:
    """A size in decimal units (1 MB = 10^6 bytes), as S3 and the AWS console show it."""
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


# words whose plural is not the word and an s
_PLURALS = {"index": "indexes", "entry": "entries", "process": "processes", "class": "classes", "match": "matches"}


def plural(count: int, word: str) -> str:
    """A count with its noun in the right number: `1 table`, `2 tables`, `0 indexes`."""
    return f"{count} {word if count == 1 else _PLURALS.get(word, word + 's')}"


def human_age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def table_lines(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return lines
