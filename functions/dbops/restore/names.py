"""Table names as an operator writes them: `table`, `schema.table`, or psql-style quoted parts
(`'"Sales Ops"."Order Items"'`). PostgreSQL allows any identifier, so nothing here refuses a character: a
quoted part is taken exactly (`""` is one quote), an unquoted part as typed and also folded to lower case,
as psql and pg_dump fold it. Resolution against a backup's tables happens in the restore's Validate.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_IDENTIFIER = 63  # NAMEDATALEN - 1, in bytes


@dataclass(frozen=True)
class TableName:
    """A parsed name: `schema` is None when the operator gave none."""

    schema: str | None
    name: str
    schema_quoted: bool = False
    name_quoted: bool = False

    def spellings(self) -> list[tuple[str | None, str]]:
        """(schema, name) pairs this name can mean, the exact spelling first: an unquoted part may have been
        typed in the case it is stored in (`Sales Ops.Order Items`) or meant folded (`Public.Users`)."""
        schemas = _spellings(self.schema, self.schema_quoted) if self.schema is not None else [None]
        names = _spellings(self.name, self.name_quoted)
        return [(s, n) for s in schemas for n in names]


def _spellings(part: str, quoted: bool) -> list[str]:
    return [part] if quoted or part.lower() == part else [part, part.lower()]


def _parts(text: str) -> list[tuple[str, bool]]:
    """Split at dots outside double quotes; each part with whether it was quoted."""
    parts: list[tuple[str, bool]] = []
    i, n = 0, len(text)
    while True:
        if i < n and text[i] == '"':
            j, chars = i + 1, []
            while True:
                if j >= n:
                    raise ValueError(f"{text!r}: a double quote is not closed")
                if text[j] == '"':
                    if j + 1 < n and text[j + 1] == '"':
                        chars.append('"')
                        j += 2
                        continue
                    break
                chars.append(text[j])
                j += 1
            part, quoted, i = "".join(chars), True, j + 1
            if i < n and text[i] != ".":
                raise ValueError(f"{text!r}: a quoted name must be followed by a dot or end the name")
        else:
            j = text.find(".", i)
            j = n if j < 0 else j
            part, quoted = text[i:j], False
            if '"' in part:
                raise ValueError(f"{text!r}: a double quote may only open or close a whole name part")
            if part != part.strip():
                raise ValueError(f"{text!r}: a name part starts or ends with a space (quote it if it really does)")
            i = j
        if part == "":
            raise ValueError(f"{text!r}: an empty name part")
        if "\x00" in part:
            raise ValueError(f"{text!r}: a name cannot hold a NUL character")
        if not part.isprintable() and any(0xD800 <= ord(c) <= 0xDFFF for c in part):
            raise ValueError(f"{text!r}: a name part holds a character that is not Unicode text (a lone surrogate)")
        if len(part.encode()) > MAX_IDENTIFIER:
            raise ValueError(f"{text!r}: a name part is longer than PostgreSQL's {MAX_IDENTIFIER} bytes")
        parts.append((part, quoted))
        if i >= n:
            return parts
        i += 1  # the dot
        if i >= n:
            raise ValueError(f"{text!r}: the name ends with a dot")


def parse_table_name(text: str) -> TableName:
    """`table`, `schema.table`, with any part in double quotes; raises ValueError saying what is wrong."""
    if not text or not text.strip():
        raise ValueError("a table name is empty")
    parts = _parts(text)
    if len(parts) > 2:
        raise ValueError(f"{text!r}: too many dots; write schema.table, quoting a part that holds a dot")
    if len(parts) == 1:
        return TableName(None, parts[0][0], name_quoted=parts[0][1])
    (schema, schema_quoted), (name, name_quoted) = parts
    return TableName(schema, name, schema_quoted, name_quoted)


def quote_ident(part: str) -> str:
    """A part as psql would need it written: bare when it is a plain lower-case identifier."""
    plain = part[:1].isalpha() or part[:1] == "_"
    plain = plain and all(c.isascii() and (c.islower() or c.isdigit() or c in "_$") for c in part)
    return part if plain and part.isascii() else '"' + part.replace('"', '""') + '"'


def display(schema: str, name: str) -> str:
    """schema.table written so that parse_table_name reads it back exactly."""
    return f"{quote_ident(schema)}.{quote_ident(name)}"
