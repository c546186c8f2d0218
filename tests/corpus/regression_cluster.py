"""The regression database built once per server version and machine, kept as a stopped cluster under `.cache/`.

Building it (regression.py: PostgreSQL's ~200 regression scripts run by psql) takes 20 to 35 s of both cores, and
under pytest-xdist every worker built its own for every version it ran a regression test on: up to four builds per
`make test`. The build is now done once into a cluster of its own (initdb, the scripts, stopped cleanly) kept under
`.cache/regression-clusters/<version>-<key>/`; each test process starts a private copy of that cluster's data folder
(a file copy, about a second), so no two processes share a server and the tests' isolation is what it was.

The key covers everything the cluster depends on: the server's binaries (`postgres --version` and their folder),
the regression sources' version, and the text of regression.py, of this file and of local_stack/postgres.py (initdb's
options and the server settings). A change to any of them builds a new cluster; delete `.cache/regression-clusters`
to force one. The copy's password is a new one, set over the local socket (trust) when it starts: none is stored.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

from dbops.postgres.connection import ConnectionSpec
from local_stack import postgres as local_postgres
from local_stack.postgres import LocalPostgres
from tests.corpus import regression
from tests.corpus.regression import build_regression_database, regression_sources

CLUSTERS_DIR = regression.REPO_ROOT / ".cache" / "regression-clusters"
DBNAME = "regression"
MARKER = "BUILT"  # written last, holding the build's statistics: a folder without it is incomplete


def _version(bin_dir: Path) -> str:
    """`postgres (PostgreSQL) 18.1`"""
    done = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _key(bin_dir: Path) -> str:
    parts = [
        _version(bin_dir),
        str(bin_dir.resolve()),
        regression_sources().version,
        *(Path(module.__file__ or "").read_text() for module in (regression, local_postgres)),
        Path(__file__).read_text(),
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def cached_cluster(bin_dir: Path) -> Path:
    """The folder holding the stopped cluster's `data/`, built first when missing (one builder at a time: a second
    process waits for the first and finds it built)."""
    major = _version(bin_dir).split()[-1].split(".")[0]
    folder = CLUSTERS_DIR / f"pg{major}-{_key(bin_dir)}"
    if not (folder / MARKER).exists():
        CLUSTERS_DIR.mkdir(parents=True, exist_ok=True)
        with (CLUSTERS_DIR / f"{folder.name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (folder / MARKER).exists():
                _build_into(bin_dir, folder)
    return folder


def _build_into(bin_dir: Path, folder: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="build-", dir=CLUSTERS_DIR))
    try:
        server = LocalPostgres(bin_dir, base_dir=work).start()
        try:
            stats = build_regression_database(ConnectionSpec.from_url(server.url()), DBNAME, server.bin_dir / "psql")
        finally:
            server.stop()  # a clean shutdown: the copies start without recovery
        (work / "server.log").unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)  # an incomplete earlier attempt
        shutil.rmtree(work / "run", ignore_errors=True)
        work.rename(folder)  # same file system: the cluster appears whole or not at all
        (folder / MARKER).write_text(json.dumps({k: v for k, v in stats.items() if k != "file_seconds"}) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for older in CLUSTERS_DIR.glob(f"{folder.name.split('-')[0]}-*"):  # this version's clusters of earlier keys
        if older != folder and older.is_dir():
            shutil.rmtree(older, ignore_errors=True)


def start_copy(bin_dir: Path) -> LocalPostgres:
    """A running server on a private copy of the cached cluster (which holds the regression database), with a
    password of its own."""
    cluster = cached_cluster(bin_dir)
    server = LocalPostgres(bin_dir)
    # cp -a keeps the files' owner and modes (the server refuses a data folder not its own, or open to others)
    subprocess.run(["cp", "-a", str(cluster / "data"), str(server.data_dir)], check=True)
    server.start()  # finds PG_VERSION: no initdb
    try:
        with psycopg.connect(
            host=str(server.socket_dir), port=server.port, user=server.user, dbname="postgres", autocommit=True
        ) as conn:
            password = sql.Literal(server.password)
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(server.user), password))
    except BaseException:
        server.destroy()
        raise
    return server
