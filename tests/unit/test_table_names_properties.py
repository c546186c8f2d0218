"""Table names, for any name PostgreSQL allows: what display() writes, parse_table_name() reads back exactly; any
other text is either a name or a ValueError saying what is wrong, never another exception; and a restore request
takes exactly the names the parser takes."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from dbops.restore.models import RestoreRequest
from dbops.restore.names import MAX_IDENTIFIER, display, parse_table_name, quote_ident

# the characters that make names hard, drawn often; then any other (UTF-8) character but NUL
TRICKY = list("\". \t\n'$_-AZaz09éÉßİ🦆\u00a0")
CHARS = st.one_of(st.sampled_from(TRICKY), st.characters(codec="utf-8", exclude_characters="\x00"))


def _fits(part: str) -> bool:
    return 1 <= len(part.encode()) <= MAX_IDENTIFIER


# any identifier PostgreSQL can store: 1..63 bytes of UTF-8 without NUL
IDENTIFIERS = st.text(CHARS, min_size=1, max_size=MAX_IDENTIFIER).filter(_fits)


@given(schema=IDENTIFIERS, name=IDENTIFIERS)
@example(schema="Sales Ops", name="Order Items")
@example(schema="public", name='a"."b')
@example(schema="a.b", name="c")
@example(schema=" padded ", name="x" * MAX_IDENTIFIER)
@example(schema="é" * 31, name="Users")
def test_a_displayed_name_reads_back_exactly_as_its_first_spelling(schema: str, name: str) -> None:
    parsed = parse_table_name(display(schema, name))
    assert (parsed.schema, parsed.name) == (schema, name)
    assert parsed.spellings()[0] == (schema, name)


@given(name=IDENTIFIERS)
def test_a_displayed_bare_name_reads_back_without_a_schema(name: str) -> None:
    parsed = parse_table_name(quote_ident(name))
    assert parsed.spellings()[0] == (None, name)


@given(text=st.text(st.one_of(st.sampled_from(TRICKY), st.characters()), max_size=80))
@example(text="")
@example(text="a.b.c")
@example(text='"unclosed')
@example(text='"a"b')
@example(text="a.")
@example(text=".a")
@example(text="a..b")
@example(text=" a")
@example(text="a\x00b")
@example(text="x" * (MAX_IDENTIFIER + 1))
@example(text="\ud800")  # a lone surrogate: JSON can carry one (as "\ud800") into an event
def test_any_text_is_a_name_or_a_value_error_saying_what_is_wrong(text: str) -> None:
    try:
        parsed = parse_table_name(text)
    except ValueError as exc:
        message = str(exc)
        assert message.strip() and "\n" not in message
        return
    parts = [parsed.name] if parsed.schema is None else [parsed.schema, parsed.name]
    assert all(_fits(part) and "\x00" not in part for part in parts)
    # what was accepted is a name the parser itself can write down and read back
    again = parse_table_name(quote_ident(parsed.name) if parsed.schema is None else display(parsed.schema, parsed.name))
    assert (again.schema, again.name) == (parsed.schema, parsed.name)


@given(parts=st.lists(IDENTIFIERS, min_size=3, max_size=5), quoted=st.booleans())
def test_three_or_more_parts_are_never_accepted(parts: list[str], quoted: bool) -> None:
    text = ".".join(quote_ident(p) if not quoted else '"' + p.replace('"', '""') + '"' for p in parts)
    with pytest.raises(ValueError, match="too many dots"):
        parse_table_name(text)


@given(text=st.text(CHARS, max_size=80))
@example(text='"Sales Ops"."Order Items"')
@example(text="a.b.c")
def test_a_restore_request_takes_exactly_the_names_the_parser_takes(text: str) -> None:
    try:
        parse_table_name(text)
        well_formed = True
    except ValueError:
        well_formed = False
    if well_formed:
        assert RestoreRequest(tables=[text]).tables == [text]
    else:
        with pytest.raises(ValidationError) as info:
            RestoreRequest(tables=[text])
        assert [e["loc"][0] for e in info.value.errors()] == ["tables"]
