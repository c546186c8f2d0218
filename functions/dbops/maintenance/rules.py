"""Retention and archive rules checked against the database before anything runs.

Every rule of a run is checked first and all problems are reported together; nothing is changed unless every
rule passes. Table and columns are looked up in the catalogs and always reach SQL as quoted identifiers
(psycopg.sql.Identifier); the age is a bound parameter cast to interval.

The keep condition is the one piece of SQL text an operator writes. It is operator configuration, trusted
like the database credentials themselves, and it is checked so that it can only ever be one boolean
expression over the rule's table:
  1. lexically, outside string literals and quoted identifiers: no ';', no comments, parentheses balanced
     and never closing more than they open (so it cannot close our `NOT (` and add `OR true`);
  2. by the server's parser: `EXPLAIN SELECT 1 FROM <table> WHERE <ts> < $1 AND NOT (<keep>)` in a READ ONLY
     transaction that is rolled back: unknown columns, syntax errors and non-boolean expressions fail there,
     and nothing is executed (EXPLAIN without ANALYZE only plans).
Every statement that carries it is sent with bound parameters, i.e. through the extended query protocol,
which refuses more than one statement.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from dbops.config.maintenance import RetentionRule
from dbops.errors import ConfigError, DatabaseError, RuleRefused
from dbops.maintenance.objects import (
    Column,
    ForeignKey,
    TableRef,
    columns,
    find_relation,
    has_leading_index,
    primary_key,
    referencing_keys,
)
from dbops.postgres.connection import describe_error

ARCHIVE_SUFFIX = "_archive"
MAX_IDENTIFIER_BYTES = 63
DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$")


@dataclass
class MoveNode:
    """A table whose rows move to its archive table: the rule's table, or one referencing it (via)."""

    table: TableRef
    columns: tuple[str, ...]
    archive: TableRef
    archive_exists: bool
    primary_key: tuple[str, ...]
    via: ForeignKey | None = None
    children: list[MoveNode] = field(default_factory=list)

    def postorder(self) -> Iterator[MoveNode]:
        """Referencing rows before the rows they reference: the order a batch moves them in."""
        for child in self.children:
            yield from child.postorder()
        yield self


@dataclass
class CheckedRule:
    rule: RetentionRule
    table: TableRef
    timestamp_indexed: bool
    referenced_by: list[ForeignKey]
    tree: MoveNode | None  # archive mode only


def keep_condition_problem(text: str) -> str | None:
    """Why `text` cannot be a single SQL expression spliced into `NOT (...)`, or None when it can."""
    depth, i, n = 0, 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "'":
            backslash_escapes = i > 0 and text[i - 1] in "eE" and (i == 1 or not _ident_char(text[i - 2]))
            i += 1
            while True:
                if i >= n:
                    return "unterminated string literal"
                if backslash_escapes and text[i] == "\\":
                    i += 2
                    continue
                if text[i] == "'":
                    if text.startswith("''", i):
                        i += 2
                        continue
                    break
                i += 1
        elif ch == '"':
            i += 1
            while True:
                end = text.find('"', i)
                if end < 0:
                    return "unterminated quoted identifier"
                if text.startswith('""', end):
                    i = end + 2
                    continue
                i = end
                break
        elif ch == "$" and (i == 0 or not _ident_char(text[i - 1])) and (tag := DOLLAR_TAG.match(text, i)):
            end = text.find(tag.group(0), tag.end())
            if end < 0:
                return "unterminated dollar-quoted string"
            i = end + len(tag.group(0)) - 1
        elif text.startswith("--", i) or text.startswith("/*", i):
            return "comments are not allowed"
        elif ch == ";":
            return "';' is not allowed: the keep condition is one expression"
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return "a ')' closes more than the condition opened: it must be one expression"
        i += 1
    if depth:
        return "unbalanced '(': the condition must be one expression"
    return None


def _ident_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_$"


def rule_predicate(rule: RetentionRule) -> sql.Composed:
    """Rows the rule names: older than the cutoff (a bound parameter) and not kept."""
    older = sql.SQL("{} < %(cutoff)s").format(sql.Identifier(rule.timestamp_column))
    if rule.keep is None:
        return sql.Composed([older])
    # the keep text was checked by check_rules (lexically and by the server's parser) before it gets here;
    # statements carrying it always have bound parameters, so a literal '%' is doubled for psycopg
    return sql.SQL("{} AND NOT (\n{}\n)").format(older, sql.SQL(rule.keep.replace("%", "%%")))


def check_rules(conn: psycopg.Connection[Any], rules: list[RetentionRule]) -> list[CheckedRule]:
    """Check every rule; one ConfigError naming every problem, before any change, if any rule is wrong."""
    checked, problems = [], []
    for rule in rules:
        try:
            checked.append(_check_rule(conn, rule))
        except RuleRefused as exc:
            problems.append(f"rule {rule.name!r}: {exc}")
    if problems:
        raise ConfigError("rules refused, nothing was changed: " + "; ".join(problems))
    return checked


def _check_rule(conn: psycopg.Connection[Any], rule: RetentionRule) -> CheckedRule:
    table = TableRef(rule.schema_name, rule.table)
    found = find_relation(conn, table)
    if found is None:
        raise RuleRefused(f"table {table.display} does not exist")
    oid, relkind = found
    if relkind == "p":
        raise RuleRefused(f"{table.display} is partitioned: detach or drop its old partitions instead")
    if relkind != "r":
        raise RuleRefused(f"{table.display} is not a table")
    cols = columns(conn, oid)
    ts = next((c for c in cols if c.name == rule.timestamp_column), None)
    if ts is None:
        raise RuleRefused(f"column {rule.timestamp_column!r} does not exist in {table.display}")
    if not ts.is_timestamp:
        raise RuleRefused(f"column {table.display}.{ts.name} is {ts.type}, not a date or timestamp")
    _check_age(conn, rule.age)
    if rule.keep is not None:
        _check_keep(conn, table, rule)
    tree = _move_tree(conn, table, oid, cols, None, frozenset({oid})) if rule.mode == "archive" else None
    return CheckedRule(
        rule=rule,
        table=table,
        timestamp_indexed=has_leading_index(conn, oid, ts.name),
        referenced_by=referencing_keys(conn, oid),
        tree=tree,
    )


def _check_age(conn: psycopg.Connection[Any], age: str) -> None:
    try:
        row = conn.execute("SELECT %s::interval > interval '0'", [age]).fetchone()
    except psycopg.DataError:
        raise RuleRefused(f"age {age!r} is not a PostgreSQL interval (e.g. '6 months')") from None
    if not (row and row[0]):
        raise RuleRefused(f"age {age!r} must be positive")


def _check_keep(conn: psycopg.Connection[Any], table: TableRef, rule: RetentionRule) -> None:
    assert rule.keep is not None
    problem = keep_condition_problem(rule.keep)
    if problem:
        raise RuleRefused(f"keep condition refused: {problem}")
    query = sql.SQL("EXPLAIN SELECT 1 FROM {} WHERE {}").format(table.ident, rule_predicate(rule))
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("SET TRANSACTION READ ONLY")
            conn.execute(query, {"cutoff": datetime.now(UTC)})
    except (pgerrors.LockNotAvailable, pgerrors.QueryCanceled) as exc:
        raise DatabaseError(
            f"could not check rule {rule.name!r}: {table.display} is locked by another session "
            f"({describe_error(exc)}); nothing was changed, try again later"
        ) from None
    except psycopg.Error as exc:
        problem = describe_error(exc)
        raise RuleRefused(f"keep condition is not a valid boolean expression on {table.display}: {problem}") from None


def _move_tree(
    conn: psycopg.Connection[Any],
    table: TableRef,
    oid: int,
    cols: list[Column],
    via: ForeignKey | None,
    path: frozenset[int],
) -> MoveNode:
    archive = TableRef(table.schema, table.name + ARCHIVE_SUFFIX)
    if len(archive.name.encode()) > MAX_IDENTIFIER_BYTES:
        raise RuleRefused(f"the archive table name for {table.display} would be longer than 63 bytes")
    existing = find_relation(conn, archive)
    if existing is not None:
        if existing[1] != "r":
            raise RuleRefused(f"{archive.display} exists and is not a table")
        have = {c.name: c.type for c in columns(conn, existing[0])}
        differ = [f"{c.name} {c.type}" for c in cols if have.get(c.name) != c.type]
        if differ:
            raise RuleRefused(
                f"{archive.display} exists but lacks columns of {table.display} ({', '.join(differ)}): "
                "add them to the archive table first"
            )
    node = MoveNode(
        table=table,
        columns=tuple(c.name for c in cols),
        archive=archive,
        archive_exists=existing is not None,
        primary_key=tuple(primary_key(conn, oid)),
        via=via,
    )
    for fk in referencing_keys(conn, oid):
        if fk.child_oid in path:
            raise RuleRefused(
                f"foreign key {fk.name} on {fk.child.display} leads back to a table already being archived: "
                "archive does not follow reference cycles"
            )
        child_cols = columns(conn, fk.child_oid)
        node.children.append(_move_tree(conn, fk.child, fk.child_oid, child_cols, fk, path | {fk.child_oid}))
    return node
