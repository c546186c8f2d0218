"""Query texts in reports hide literals; pg_stat_statements columns follow the server version."""

from __future__ import annotations

import pytest

from dbops.health.probes.statements import OLD, RENAMED_13, RENAMED_17, statement_columns
from dbops.postgres.sql_text import redact_query


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("ALTER ROLE app PASSWORD 's3cret'", "ALTER ROLE app PASSWORD '…'"),
        ("SELECT 'it''s'  ,\n  2", "SELECT '…' , 2"),
        ("SELECT $$x$$ || $tag$y$tag$", "SELECT '…' || '…'"),
        ("SELECT * FROM t WHERE id = $1", "SELECT * FROM t WHERE id = $1"),
        # a quoted name or a comment holding an apostrophe opens no literal: the secret after it is still hidden
        ("""UPDATE "it's" SET pw = 's3cret'""", """UPDATE "it's" SET pw = '…'"""),
        ("SELECT 1 -- don't\n, 's3cret'", "SELECT 1 -- don't , '…'"),
        ("SELECT E'a\\'s3cret'", "SELECT '…'"),
        (None, ""),
    ],
)
def test_query_text_hides_string_literals(text: str | None, shown: str) -> None:
    assert redact_query(text) == shown


def test_long_query_text_is_cut() -> None:
    assert redact_query("SELECT " + "x, " * 100, limit=20) == "SELECT x, x, x, x, …"


@pytest.mark.parametrize(
    ("version", "expected"),
    [(120000, OLD), (130000, RENAMED_13), (160004, RENAMED_13), (170000, RENAMED_17), (180001, RENAMED_17)],
)
def test_statement_columns_follow_server_version_num(version: int, expected: object) -> None:
    assert statement_columns(version) == expected


def test_an_extension_not_updated_after_an_upgrade_is_read_with_its_own_columns() -> None:
    old_view = {"query", "calls", "total_time", "mean_time", "blk_read_time"}
    assert statement_columns(170000, old_view) == OLD
    with pytest.raises(ValueError, match="none of the known timing columns"):
        statement_columns(170000, {"query", "calls"})
