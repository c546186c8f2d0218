"""How a parallel backup splits its tables: few, large ranges, two a worker, the largest first."""

from __future__ import annotations

from dbops.backup.parallel.plan import (
    MAX_RANGE_BYTES,
    MIN_RANGE_BYTES,
    SMALL_TABLE_BYTES,
    SourceTable,
    in_archive,
    plan_jobs,
    range_bytes_for,
)

MB = 1024 * 1024


def _table(oid: int, size: int, pages: int | None = None) -> SourceTable:
    return SourceTable(
        oid=oid, schema_name="s", name=f"t{oid}", bytes=size, pages=pages or size // 8192, columns=("a",)
    )


def test_two_ranges_a_worker_the_largest_first() -> None:
    tables = [_table(1, 640 * MB), _table(2, 230 * MB), _table(3, 2 * MB)]
    range_bytes = range_bytes_for(tables, workers=2)
    assert range_bytes == (872 * MB) // 4
    jobs = plan_jobs(tables, range_bytes)
    # 640 MB: three ranges of 213; 230 MB: whole (the nearest count of ranges is one), and first
    assert [(j.table.oid, j.first_page, j.end_page) for j in jobs] == [
        (2, None, None),
        (1, None, 27307),
        (1, 27307, 54614),
        (1, 54614, None),  # the last range runs to the end, whatever the pages read at planning
        (3, None, None),
    ]


def test_one_worker_splits_no_table_under_the_largest_range() -> None:
    tables = [_table(1, 900 * MB), _table(2, 100 * MB)]
    assert range_bytes_for(tables, workers=1) == MAX_RANGE_BYTES
    assert [(j.table.oid, j.first_page, j.end_page) for j in plan_jobs(tables, MAX_RANGE_BYTES)] == [
        (1, None, None),
        (2, None, None),
    ]
    assert len(plan_jobs([_table(1, 3 * MAX_RANGE_BYTES)], MAX_RANGE_BYTES)) == 3


def test_ranges_stay_between_their_bounds() -> None:
    assert range_bytes_for([_table(1, 100 * MB)], workers=6) == MIN_RANGE_BYTES  # small: no 8 MB ranges
    assert range_bytes_for([_table(1, 500 * 1024 * MB)], workers=6) == MAX_RANGE_BYTES  # 500 GB: 1 GiB objects


def test_a_table_mostly_toast_is_split_by_its_bytes() -> None:
    toasted = _table(1, 2 * MAX_RANGE_BYTES, pages=10)  # 10 heap pages, 2 GiB with TOAST
    jobs = plan_jobs([toasted], MAX_RANGE_BYTES)
    assert [(j.first_page, j.end_page) for j in jobs] == [(None, 5), (5, None)]


def test_small_tables_go_to_the_archive_the_smallest_first_up_to_the_budget() -> None:
    tables = [_table(1, 3 * MB), _table(2, 1 * MB), _table(3, 7 * MB), _table(4, 8 * MB), _table(5, 0)]
    assert in_archive(tables, SMALL_TABLE_BYTES, budget=64 * MB) == {1, 2, 3, 5}  # 8 MB: not under the threshold
    assert in_archive(tables, SMALL_TABLE_BYTES, budget=5 * MB) == {5, 2, 1}  # 0 + 1 + 3 MB; 7 more would pass 5
    assert in_archive(tables, 0, budget=64 * MB) == set()  # small_bytes 0: every table a COPY job, empty ones too
