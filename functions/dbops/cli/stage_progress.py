"""`dbops restore`'s view of the Stage step: while the execution is in it, the progress Stage publishes in the
bucket (dbops.restore.progress_file) read every second and shown with ProgressPrinter."""

from __future__ import annotations

import time
from collections.abc import Callable

from dbops.cli.progress import ProgressPrinter
from dbops.restore.progress_file import read_progress

STAGE_STATES = frozenset({"Stage", "StageOnFargate"})
READ_EVERY_S = 1.0


class StageProgress:
    """`on_state` and `on_poll` for stepfunctions.follow: a state entered passes through to `print_state`."""

    def __init__(
        self,
        bucket: str | None,
        execution: str,
        print_state: Callable[[str, str], None],
    ) -> None:
        self.bucket, self.execution, self.print_state = bucket, execution, print_state
        self.printer: ProgressPrinter | None = None
        self._read_at = float("-inf")

    def on_state(self, kind: str, name: str) -> None:
        """For follow(..., exits=True): Stage runs beside the safety backup, so only its own exit (or a failure)
        ends its figures; a state left is not printed."""
        if self.printer is not None and (kind == "failed" or (kind == "exited" and name in STAGE_STATES)):
            self._show()  # Stage's last figures, then the next line
            self.printer.done()
            self.printer = None
        if kind != "exited":
            self.print_state(kind, name)
        if kind == "entered" and name in STAGE_STATES and self.bucket:
            self.printer = ProgressPrinter()

    def on_poll(self) -> None:
        if self.printer is not None and time.monotonic() - self._read_at >= READ_EVERY_S:
            self._show()

    def _show(self) -> None:
        assert self.printer is not None and self.bucket is not None
        self._read_at = time.monotonic()
        found = read_progress(self.bucket, self.execution)
        if not found or not isinstance(found.get("bytes"), int):
            return
        total = found.get("total")
        self.printer.total = total if isinstance(total, int) else None
        self.printer(str(found.get("what", "restore")), found["bytes"])
