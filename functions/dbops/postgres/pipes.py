"""Reading a child process's output pipe in large pieces with little CPU.

pg_dump writes 4 kB at a time (its stdio buffer). A reader blocked on the pipe is woken by almost every one
of those writes: ~150,000 wake-ups a GB, each a read and a context switch on both sides, and both processes
then spend more CPU switching than copying. `fill` reads what the pipe holds and, when that was little, naps
for a millisecond so the pipe fills up instead: a few thousand reads a GB. A pipe found full is read again at
once, so a fast writer is never held back (a 1 MB pipe holds a millisecond of 1 GB/s).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from typing import IO

PIPE_SIZE = 1024 * 1024
SHORT_READ = 64 * 1024  # a read this short means the reader is ahead of the writer
NAP_S = 0.001


def widen(stream: IO[bytes]) -> None:
    """A 1 MB pipe (Linux allows it) instead of the default 64 kB."""
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)


def fill(fd: int, buffer: memoryview) -> int:
    """Read from `fd` until `buffer` is full or the stream ends; returns the bytes read (fewer than the
    buffer's length only at the end of the stream, 0 once it has ended)."""
    filled = 0
    while filled < len(buffer):
        size = os.readv(fd, [buffer[filled:]])
        if size == 0:
            break
        filled += size
        if size < SHORT_READ and filled < len(buffer):
            time.sleep(NAP_S)
    return filled
