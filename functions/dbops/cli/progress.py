"""Progress of long work for a person: bytes done, the rate and an estimate of what is left against a size known
in advance. On a terminal one line rewritten in place (at most 5 times a second); into a file or a pipe (a log) a
plain line at most every 10 seconds, and the last one always."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from dbops.text import human_age, human_bytes

TERMINAL_EVERY_S, LOG_EVERY_S = 0.2, 10.0


class ProgressPrinter:
    """A backup's or a verify's `progress(what, done_bytes)` callback. `total`: the size known before the work
    starts (a database's pg_database_size before a dump, an object's size before a verify), or None; `of` says
    what that total is (a dump is smaller than the database it reads, so its estimate is an upper bound)."""

    def __init__(
        self,
        total: int | None = None,
        *,
        of: str = "",
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.of = total, of
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty()
        self.clock = clock
        self.started = clock()
        self._shown_at: float | None = None
        self._width = 0
        self._pending: str | None = None

    def start(self, total: int | None, of: str = "") -> None:
        """Work whose size is known only now (a rehearsal's copy, once its backup is chosen): from here."""
        self.total, self.of = total, of
        self.started = self.clock()
        self._shown_at, self._pending = None, None

    def line(self, what: str, done: int) -> str:
        elapsed = max(self.clock() - self.started, 1e-6)
        rate = done / elapsed
        text = f"{what}: {human_bytes(done)}"
        if self.total:
            text += f" of {'~' if self.of else ''}{human_bytes(self.total)}{f' ({self.of})' if self.of else ''}"
        text += f", {human_bytes(rate)}/s"
        if self.total and rate > 0 and done < self.total:
            text += f", about {human_age((self.total - done) / rate)} left"
        return text

    def __call__(self, what: str, done: int) -> None:
        now = self.clock()
        every = TERMINAL_EVERY_S if self.terminal else LOG_EVERY_S
        text = self.line(what, done)
        if self._shown_at is not None and now - self._shown_at < every:
            self._pending = text
            return
        self._show(text)
        self._shown_at = now

    def _show(self, text: str) -> None:
        self._pending = None
        if self.terminal:
            self.stream.write("\r  " + text.ljust(self._width))
            self._width = len(text)
        else:
            self.stream.write(f"  {text}\n")
        self.stream.flush()

    def done(self) -> None:
        """The last figures (a line withheld by the rate limit), and the terminal's line ended."""
        if self._pending is not None:
            self._show(self._pending)
        if self.terminal and self._width:
            self.stream.write("\n")
            self.stream.flush()
