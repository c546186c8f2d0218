"""Text for people: sizes in the decimal units S3 and the AWS console use, counts with their noun's number."""

import pytest

from dbops.text import human_bytes, plural


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (None, "?"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (170_000_000, "170.0 MB"),  # S3 lists this object as 170 MB: no longer 162.1 MB
        (162_100_000, "162.1 MB"),
        (2_500_000_000, "2.5 GB"),
        (3 * 10**15, "3000.0 TB"),
    ],
)
def test_sizes_are_decimal(size: int | None, text: str) -> None:
    assert human_bytes(size) == text


@pytest.mark.parametrize(
    ("count", "word", "text"),
    [
        (1, "table", "1 table"),
        (2, "table", "2 tables"),
        (0, "table", "0 tables"),
        (1, "index", "1 index"),
        (3, "index", "3 indexes"),
        (2, "entry", "2 entries"),
    ],
)
def test_counts_read_as_counts(count: int, word: str, text: str) -> None:
    assert plural(count, word) == text
