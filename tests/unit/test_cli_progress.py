"""Progress of a backup or a verify: bytes, rate and what is left, in place on a terminal, plain lines in a log."""

from __future__ import annotations

import io

from dbops.cli.progress import ProgressPrinter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_plain_lines_with_rate_and_what_is_left_at_most_every_ten_seconds() -> None:
    clock, log = Clock(), io.StringIO()
    progress = ProgressPrinter(1_000_000_000, of="database size", stream=log, clock=clock)
    for second in range(1, 31):  # 10 MB a second
        clock.now = float(second)
        progress("pg_dump", second * 10_000_000)
    progress.done()
    lines = log.getvalue().splitlines()
    assert lines[0] == "  pg_dump: 10.0 MB of ~1.0 GB (database size), 10.0 MB/s, about 99s left"
    assert lines[1] == "  pg_dump: 110.0 MB of ~1.0 GB (database size), 10.0 MB/s, about 89s left"
    assert lines[-1] == "  pg_dump: 300.0 MB of ~1.0 GB (database size), 10.0 MB/s, about 70s left"  # the last
    assert len(lines) == 4 and "\r" not in log.getvalue()


def test_a_terminal_gets_one_line_rewritten_in_place_and_ended() -> None:
    clock, tty = Clock(), Terminal()
    progress = ProgressPrinter(170_000_000, stream=tty, clock=clock)
    clock.now = 1.0
    progress("verify", 85_000_000)
    clock.now = 2.0
    progress("verify", 170_000_000)
    progress.done()
    text = tty.getvalue()
    assert text.startswith("\r  verify: 85.0 MB of 170.0 MB, 85.0 MB/s, about 1s left")
    last = text.rsplit("\r", 1)[1]
    assert last.rstrip() == "  verify: 170.0 MB of 170.0 MB, 85.0 MB/s"  # padded over the longer line before it
    assert text.count("\n") == 1


def test_without_a_size_known_in_advance_no_estimate() -> None:
    clock, log = Clock(), io.StringIO()
    progress = ProgressPrinter(stream=log, clock=clock)
    clock.now = 2.0
    progress("pg_dump --schema-only", 4_000)
    assert log.getvalue() == "  pg_dump --schema-only: 4.0 kB, 2.0 kB/s\n"


def test_a_size_known_only_once_the_work_starts_counts_from_then() -> None:
    clock, log = Clock(), io.StringIO()
    progress = ProgressPrinter(stream=log, clock=clock)  # a rehearsal's copy: its backup not chosen yet
    clock.now = 100.0
    progress.start(40_000_000)
    clock.now = 102.0
    progress("restore", 40_000_000)
    progress.done()
    assert log.getvalue() == "  restore: 40.0 MB of 40.0 MB, 20.0 MB/s\n"
