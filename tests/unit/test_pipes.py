"""pipes.fill against a real child process writing the way pg_dump does: 4 kB at a time."""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import sys
import threading
from pathlib import Path

from dbops.postgres import pipes

# writes `total` bytes of a known pattern, 4 kB per write, pausing now and then like a dump waiting on the server
WRITER = """
import os, sys, time
total = int(sys.argv[1])
block = bytes(range(256)) * 16
sent = 0
while sent < total:
    piece = block[: min(len(block), total - sent)]
    os.write(1, piece)
    sent += len(piece)
    if sent % (512 * 1024) == 0:
        time.sleep(0.003)
"""


def _expected(total: int) -> bytes:
    return (bytes(range(256)) * 16 * (total // 4096 + 1))[:total]


def _read_all(total: int, chunk: int) -> list[bytes]:
    with subprocess.Popen([sys.executable, "-c", WRITER, str(total)], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        pipes.widen(proc.stdout)
        buffer = memoryview(bytearray(chunk))
        chunks = []
        while size := pipes.fill(proc.stdout.fileno(), buffer):
            chunks.append(bytes(buffer[:size]))
    assert proc.returncode == 0
    return chunks


def test_every_byte_arrives_in_order_in_whole_chunks() -> None:
    total = 5 * 1024 * 1024 + 12_345  # not a multiple of the chunk: the last one is short
    chunks = _read_all(total, chunk=1024 * 1024)
    assert hashlib.sha256(b"".join(chunks)).digest() == hashlib.sha256(_expected(total)).digest()
    assert [len(c) for c in chunks] == [1024 * 1024] * 5 + [12_345]


def test_an_empty_stream_reads_nothing() -> None:
    assert _read_all(0, chunk=64 * 1024) == []


def test_the_pipe_is_widened() -> None:
    with subprocess.Popen([sys.executable, "-c", "pass"], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        pipes.widen(proc.stdout)
        assert fcntl.fcntl(proc.stdout.fileno(), fcntl.F_GETPIPE_SZ) == pipes.PIPE_SIZE


def _read_syscalls() -> int:
    """This thread's read system calls so far (not the process's: another thread of the test run, a moto server
    say, reads sockets meanwhile)."""
    for line in Path(f"/proc/self/task/{threading.get_native_id()}/io").read_text().splitlines():
        if line.startswith("syscr:"):
            return int(line.split()[1])
    raise AssertionError("no syscr in /proc/self/io")


def test_a_slow_writer_is_read_in_few_large_reads() -> None:
    """A writer slower than the reader, as pg_dump is: 4 kB every ~0.1 ms. Waking for each write would take one
    read per write; napping on short reads lets each read take many writes at once."""
    writes = 1000
    slow = f"import os, time\nfor _ in range({writes}):\n    os.write(1, b'x' * 4096)\n    time.sleep(0.0001)\n"
    with subprocess.Popen([sys.executable, "-c", slow], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        buffer = memoryview(bytearray(1024 * 1024))
        before = _read_syscalls()
        received = 0
        while size := pipes.fill(proc.stdout.fileno(), buffer):
            received += size
        reads = _read_syscalls() - before
    assert proc.returncode == 0
    assert received == writes * 4096
    # woken by each write it would take ~1,000 reads; on the 2-core host under the suite's load (the writer runs
    # slower, so fewer writes pile up in each nap) it took 175-214
    assert reads < writes / 3, f"{reads} reads for {writes} writes"
