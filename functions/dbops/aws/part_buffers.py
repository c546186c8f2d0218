"""Upload part buffers reused from one part, and one object, to the next (dbops.aws.s3stream's uploads)."""

from __future__ import annotations

import threading


class PartBuffers:
    """Part-sized buffers, reused: by the parts of one upload, and by uploads one after another when they share
    it (a parallel backup's many objects). A fresh 8 MB buffer is zero-filled and page-faulted in, 2,048 pages,
    about 3 ms of CPU; three for every object was a tenth of a second a GB. Never more buffers exist than were in
    use at one moment."""

    def __init__(self) -> None:
        self._idle: dict[int, list[bytearray]] = {}
        self._lock = threading.Lock()

    def take(self, size: int) -> bytearray:
        with self._lock:
            idle = self._idle.get(size)
            if idle:
                return idle.pop()
        return bytearray(size)

    def give(self, buffer: bytearray) -> None:
        with self._lock:
            self._idle.setdefault(len(buffer), []).append(buffer)
