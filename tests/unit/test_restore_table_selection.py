"""Which of a backup's tables an operator's --table names mean (Validate's resolution against the manifest)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from dbops.backup.catalog import IDENTITY_FORMAT, BackupManifest, RelKind, StoredObject, TableStat
from dbops.errors import RestoreRefused
from dbops.restore.table_choice import resolve_tables


def _table(oid: int, schema: str, name: str, relkind: RelKind = "r", parents: tuple[int, ...] = ()) -> TableStat:
    return TableStat(schema_name=schema, name=name, rows=1, bytes=8192, oid=oid, relkind=relkind, parents=list(parents))


MANIFEST = BackupManifest(
    format_version=IDENTITY_FORMAT,
    id="20261129T000000Z-abcdef",
    database="shop",
    kind="nightly",
    dump=StoredObject(key="k", size=1, sha256="0" * 64, raw_size=1),
    pg_dump_version="18.1",
    server_version="18.1",
    server_version_num=180001,
    started_at=datetime(2026, 11, 29, tzinfo=UTC),
    finished_at=datetime(2026, 11, 29, tzinfo=UTC),
    duration_seconds=1,
    tables=[
        _table(1, "public", "users"),
        _table(2, "billing", "users"),
        _table(3, "billing", "invoices"),
        _table(4, "Sales Ops", "Order Items"),
        _table(5, "public", "events", "p"),
        _table(6, "public", "events_2024", "p", (5,)),
        _table(7, "public", "events_2024_q1", "r", (6,)),
        _table(8, "public", "events_rest", "r", (5,)),
        _table(9, "public", "event_counts", "m"),
        _table(10, "public", "Users"),
    ],
)


def _names(requested: list[str]) -> list[str]:
    return [f"{p.schema_name}.{p.name}" for p in resolve_tables(requested, MANIFEST)]


@pytest.mark.parametrize(
    ("requested", "meant"),
    [
        ("users", "public.users"),  # no schema: public's table first
        ("invoices", "billing.invoices"),  # no schema, not in public: the only table of that name
        ('"Sales Ops"."Order Items"', "Sales Ops.Order Items"),
        ("Sales Ops.Order Items", "Sales Ops.Order Items"),  # as typed, with the case it is stored in
        ("BILLING.Invoices", "billing.invoices"),  # unquoted parts fold to lower case, as in psql
        ('"Users"', "public.Users"),  # quoted: exactly this spelling
        ("Users", "public.Users"),  # the exact spelling exists, so it wins over the folded one
    ],
)
def test_a_name_means_the_table_psql_would_find(requested: str, meant: str) -> None:
    assert _names([requested]) == [meant]


def test_a_partitioned_table_brings_every_partition_at_every_level_and_a_partition_only_its_own() -> None:
    assert _names(["events"]) == [
        "public.events",
        "public.events_2024",
        "public.events_rest",
        "public.events_2024_q1",
    ]
    assert _names(["events_2024_q1"]) == ["public.events_2024_q1"]
    assert _names(["events", "events_rest"]) == _names(["events"])  # named twice, restored once


@pytest.mark.parametrize(
    ("requested", "reason"),
    [
        ("orders", "'orders' is not a table in backup"),
        ("order items", "did you mean"),
        ('"billing"', "'\"billing\"' is not a table"),
        ("event_counts", "public.event_counts is a materialized view"),
    ],
)
def test_a_name_that_is_not_a_table_is_refused_with_the_reason(requested: str, reason: str) -> None:
    with pytest.raises(RestoreRefused, match=re.escape(reason)):
        resolve_tables([requested], MANIFEST)


def test_a_name_in_two_schemas_but_not_public_is_ambiguous() -> None:
    manifest = MANIFEST.model_copy(update={"tables": [_table(1, "a", "t"), _table(2, "b", "t")]})
    with pytest.raises(RestoreRefused, match=r"'t' is ambiguous .*: name the schema, one of a\.t, b\.t"):
        resolve_tables(["t"], manifest)


SALES = MANIFEST.model_copy(
    update={
        "tables": [
            _table(1, "Sales Ops", "Order Items"),
            _table(2, "Sales Ops", "Returns Log"),
            _table(3, "archive", "Order Items"),
            _table(4, "public", "Order Items"),
            _table(5, "audit", "Order Itemss"),
        ]
    }
)


@pytest.mark.parametrize(
    ("requested", "suggested"),
    [
        # the table part ranks first: a shared schema no longer brings "Returns Log" along
        # the same table name in three schemas: the schema typed ranks them, and three at most are shown
        ('"Sales Ops"."Order Itemz"', '"Sales Ops"."Order Items", archive."Order Items", public."Order Items"?'),
        ("Order Itemz", 'public."Order Items", "Sales Ops"."Order Items", archive."Order Items"?'),  # public first
        ("Returns Lg", '"Sales Ops"."Returns Log"?'),
    ],
)
def test_did_you_mean_ranks_by_the_table_typed_then_the_schema_at_most_three(requested: str, suggested: str) -> None:
    with pytest.raises(RestoreRefused) as refused:
        resolve_tables([requested], SALES)
    assert str(refused.value).endswith(f"; did you mean {suggested}")


def test_a_name_like_no_table_says_how_many_there_are() -> None:
    one = MANIFEST.model_copy(update={"tables": [_table(1, "public", "users")]})
    with pytest.raises(
        RestoreRefused, match=re.escape("'zzz' is not a table in backup 20261129T000000Z-abcdef (1 table in it)")
    ):
        resolve_tables(["zzz"], one)
