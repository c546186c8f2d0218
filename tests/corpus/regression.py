"""PostgreSQL's own regression database as a test corpus: the database pg_upgrade's tests dump and restore.

The core regression SQL (`src/test/regress/sql/*.sql`, its `data/` files and `parallel_schedule`) comes from
Debian's `postgresql-15` source package, fetched once with apt through a private sources list and state
folder (no system file is touched) and cached under `.cache/pg-regress-15/` in the repository, so later runs
are offline. PostgreSQL 15 has no `input/*.source` files any more: its scripts read pg_regress's environment
variables (PG_ABS_SRCDIR, PG_ABS_BUILDDIR, PG_LIBDIR, PG_DLSUFFIX) with `\\getenv`, so the build sets those.

`build_regression_database` then runs the scripts in schedule order into one database with psql, errors
allowed, as `make installcheck` builds the `regression` database that pg_upgrade's test dumps, and adds a few
tables with names that need quoting (the scripts leave none). pg_dump 18 dumps the result as it is: nothing has
to be dropped for it (tests/corpus/test_regression_database.py checks that on both servers).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg import sql

from dbops.postgres.connection import ConnectionSpec, connect
from dbops.postgres.tools import find_tool

SOURCE_PACKAGE = "postgresql-15"
REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / ".cache" / "pg-regress-15"
SOURCE_MARKER = "SOURCE"  # written last: a cache folder without it is incomplete
APT_TIMEOUT_S = 600

# Files of the schedule left out, and why. Everything else runs, errors allowed: the whole schedule takes well
# under a minute here, so nothing is left out for speed. Files that only read the catalogs (opr_sanity...) or only
# touch server-wide objects (create_role, database) stay in: they are part of what pg_upgrade's test runs.
SKIPPED: dict[str, str] = {
    # needs a directory the server may create a tablespace in; it drops the tablespace at its end anyway, so
    # nothing of it would be left for a dump
    "tablespace": "creates a tablespace in a server-side directory; leaves nothing behind",
    # CREATE SUBSCRIPTION (connect = false) to connection strings of other hosts: a restore of a dump holding one
    # would try to reach them
    "subscription": "creates subscriptions to other hosts",
}


class RegressionSourceError(RuntimeError):
    """The regression SQL could not be fetched: the corpus cannot be built (tests must fail, not skip)."""


@dataclass(frozen=True)
class RegressionSources:
    root: Path  # holds sql/, data/ and parallel_schedule
    version: str  # the Debian source version they came from

    @property
    def schedule(self) -> list[list[str]]:
        return read_schedule(self.root / "parallel_schedule")


def read_schedule(path: Path) -> list[list[str]]:
    """The groups of `test:` lines in order; the files of one group may run side by side (as pg_regress runs them).
    `ignore:` lines only say a file's result is not compared: the file itself is in a `test:` line too."""
    groups = []
    for line in path.read_text().splitlines():
        if line.startswith("test:"):
            groups.append(line.removeprefix("test:").split())
    return groups


def regression_sources(cache_dir: Path = CACHE_DIR) -> RegressionSources:
    """The cached regression SQL, fetched from Debian's source package on first use."""
    marker = cache_dir / SOURCE_MARKER
    if not marker.exists():
        cache_dir.parent.mkdir(parents=True, exist_ok=True)
        # two test sessions starting at once: one fetches, the other waits for it and finds the cache
        with (cache_dir.parent / f"{cache_dir.name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not marker.exists():
                _fetch_into(cache_dir)
    return RegressionSources(root=cache_dir, version=marker.read_text().strip())


def _fetch_into(cache_dir: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="apt-", dir=cache_dir.parent) as work:
        tarball, version = _download_orig_tarball(Path(work))
        staging = Path(work) / "regress"
        _extract_regress(tarball, staging)
        (staging / SOURCE_MARKER).write_text(f"{SOURCE_PACKAGE} {version}\n")
        shutil.rmtree(cache_dir, ignore_errors=True)  # an incomplete earlier attempt
        staging.rename(cache_dir)  # same file system: the cache appears whole or not at all


# --- apt, with a private sources list, state and cache: no system file changes -------------------------------


def _os_codename() -> str:
    fields = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    codename = fields.get("VERSION_CODENAME", "").strip('"')
    if not codename:
        raise RegressionSourceError("cannot tell the Debian release from /etc/os-release (no VERSION_CODENAME)")
    return codename


_ONE_LINE_DEB = re.compile(r"^deb\s+(\[[^\]]*\]\s+)?\S+\s+(\S+)\s")  # deb [options] uri suite components


def _deb_src_one_line(path: Path, codename: str) -> list[str]:
    """`deb ...` lines of a one-line-style list for this release, turned into `deb-src` lines."""
    out = []
    for line in path.read_text().splitlines():
        match = _ONE_LINE_DEB.match(line.strip())
        if match and match[2].startswith(codename):
            out.append("deb-src" + line.strip()[3:])
    return out


def _deb_src_deb822(path: Path, codename: str) -> list[str]:
    """Stanzas of a deb822 `.sources` file for this release with `Types: deb-src` (Signed-By kept as is)."""
    out = []
    for stanza in re.split(r"\n\s*\n", path.read_text()):
        fields = {m[1].lower(): m[2].strip() for m in re.finditer(r"^([\w-]+):(.*)$", stanza, re.M)}
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        suites = [s for s in fields.get("suites", "").split() if s.startswith(codename)]
        if suites:
            kept = re.sub(r"^Types:.*$", "Types: deb-src", stanza.strip(), flags=re.M | re.I)
            out.append(re.sub(r"^Suites:.*$", "Suites: " + " ".join(suites), kept, flags=re.M | re.I))
    return out


def _write_private_sources(apt_dir: Path) -> Path:
    """deb-src entries derived from the machine's own deb entries (same mirrors, same keys), this release only."""
    codename = _os_codename()
    parts = apt_dir / "sources.list.d"
    parts.mkdir(parents=True)
    etc = Path("/etc/apt")
    one_line = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]
    lines = [ln for p in one_line if p.is_file() for ln in _deb_src_one_line(p, codename)]
    stanzas = [s for p in sorted((etc / "sources.list.d").glob("*.sources")) for s in _deb_src_deb822(p, codename)]
    if not lines and not stanzas:
        raise RegressionSourceError(f"no Debian '{codename}' deb entry in /etc/apt to derive a deb-src entry from")
    (parts / "private.list").write_text("\n".join(lines) + "\n")
    (parts / "private.sources").write_text("\n\n".join(stanzas) + "\n")
    return parts


def _apt_options(apt_dir: Path, parts: Path) -> list[str]:
    for sub in ("lists/partial", "cache/archives/partial"):
        (apt_dir / sub).mkdir(parents=True, exist_ok=True)
    options = {
        "Dir::Etc::SourceList": "/dev/null",
        "Dir::Etc::SourceParts": str(parts),
        "Dir::State::Lists": str(apt_dir / "lists"),
        "Dir::Cache": str(apt_dir / "cache"),
    }
    if os.geteuid() == 0:  # root's apt downloads as _apt, which may not enter the private folders
        options["APT::Sandbox::User"] = "root"
    return [arg for key, value in options.items() for arg in ("-o", f"{key}={value}")]


def _run_apt(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=APT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RegressionSourceError(f"cannot run {argv[0]}: {exc}") from None


def _source_versions(options: list[str], work: Path) -> list[str]:
    """Versions of the source package the archive offers, the installed server's own version first."""
    shown = _run_apt(["apt-cache", *options, "showsrc", SOURCE_PACKAGE], work)
    versions = re.findall(r"^Version: (\S+)$", shown.stdout, re.M)
    installed = _run_apt(["dpkg-query", "-W", "-f=${Version}", SOURCE_PACKAGE], work).stdout.strip()
    if installed in versions:
        versions.remove(installed)
        versions.insert(0, installed)
    return versions


def _download_orig_tarball(work: Path) -> tuple[Path, str]:
    """apt-get update + apt-get source --download-only into `work`; the upstream tarball and its version."""
    if shutil.which("apt-get") is None:
        raise RegressionSourceError("apt-get not found: the regression SQL comes from Debian's source package")
    apt_dir = work / "apt"
    options = _apt_options(apt_dir, _write_private_sources(apt_dir))
    update = _run_apt(["apt-get", *options, "-q", "update"], work)
    versions = _source_versions(options, work)
    if not versions:
        raise RegressionSourceError(
            f"no {SOURCE_PACKAGE} source package in the machine's Debian archive (apt-get update: "
            f"{update.stderr.strip()[-500:] or 'ok'})"
        )
    errors = []
    for version in versions:  # a mirror may list a version whose files it lacks: try the next one
        got = _run_apt(["apt-get", *options, "-q", "source", "--download-only", f"{SOURCE_PACKAGE}={version}"], work)
        tarballs = sorted(work.glob(f"{SOURCE_PACKAGE}_*.orig.tar.*"))
        if got.returncode == 0 and tarballs:
            return tarballs[0], version
        errors.append(f"{version}: {got.stderr.strip()[-300:]}")
    raise RegressionSourceError(f"cannot download the {SOURCE_PACKAGE} source package: {'; '.join(errors)}")


def _extract_regress(tarball: Path, dest: Path) -> None:
    """Only src/test/regress/{sql,data}/ and parallel_schedule, read member by member (no path from the
    archive is trusted: names are rebuilt from their checked parts)."""
    wanted = re.compile(r"^[^/]+/src/test/regress/((?:sql|data)/[\w.-]+|parallel_schedule)$")
    found = 0
    with tarfile.open(tarball, "r:*") as archive:
        for member in archive:
            match = wanted.match(member.name)
            source = archive.extractfile(member) if match and member.isfile() else None
            if match is None or source is None:
                continue
            target = dest / match[1]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read())
            found += 1
    if not (dest / "parallel_schedule").is_file() or found < 100:
        raise RegressionSourceError(f"{tarball.name} holds no src/test/regress folder as expected")


# --- the build -------------------------------------------------------------------------------------------------


@dataclass
class _Build:
    """What every psql run of one build shares."""

    spec: ConnectionSpec
    psql: Path
    sql_dir: Path
    build_dir: Path
    file_timeout_s: float

    def env(self, name: str) -> dict[str, str]:
        return {
            **os.environ,
            **self.spec.libpq_env(),
            "PGAPPNAME": f"regress/{name}",  # to find its session if the file times out
            # what pg_regress sets: the expected outputs (and some data) assume these
            "PGTZ": "PST8PDT",
            "PGDATESTYLE": "Postgres, MDY",
            "PG_ABS_SRCDIR": str(self.build_dir),
            "PG_ABS_BUILDDIR": str(self.build_dir),
            # the server's own library folder: autoinc and refint (contrib) load from there; regress.so, which
            # only a source build has, does not exist, so the few functions and types needing it fail
            "PG_LIBDIR": "$libdir",
            "PG_DLSUFFIX": ".so",
            # Debian's servers ship LLVM JIT: compiling the big test queries doubles the build's time, and JIT
            # changes no object the scripts create (a file that sets jit itself still can)
            "PGOPTIONS": "-c jit=off",
        }

    def run_file(self, name: str) -> bool:
        """One script through psql, errors allowed and output discarded; False if it timed out."""
        argv = [str(self.psql), "-X", "-q", "-v", "ON_ERROR_STOP=0", "-f", str(self.sql_dir / f"{name}.sql")]
        try:
            subprocess.run(
                argv,
                env=self.env(name),
                cwd=self.build_dir,  # psql.sql writes files with \o and \w: keep them in the scratch folder
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=self.file_timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            self._end_session(name)
            return False
        return True

    def _end_session(self, name: str) -> None:
        """psql is gone, but its backend may still be running the statement: end it."""
        with connect(self.spec.for_database("postgres")) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                (f"regress/{name}",),
            )


# A one-line `COPY ... FROM stdin;` followed by no data is meant to fail (a bad option, a dropped column, no
# privilege...) before any data is read. Recent psql releases (measured: psql 18.6; 15.18 does not) skip the
# in-line data after a failed COPY FROM stdin up to the next `\.` line, which these scripts do not have there:
# the rest of the file would be skipped. A `\.` after such a COPY ends that skip at once; an older psql reports
# it as an invalid command and goes on, and a COPY that succeeds anyway reads no rows.
_COPY_FROM_STDIN = re.compile(r"^\s*copy\b.*\bfrom\s+stdin\b[^\\]*;\s*(--.*)?$", re.I)
_SQL_START = (
    "copy|set|reset|grant|revoke|select|insert|update|delete|create|drop|alter|begin|commit|rollback|end|abort|"
    "truncate|table|values|with|explain|analyze|vacuum|savepoint|release|prepare|execute|deallocate|do|call|lock|"
    "comment|refresh|reindex|cluster|discard|show|declare|fetch|close"
)
# what cannot be a data line: a blank line, a comment, the start of a statement, a psql command other than `\.`
_NOT_DATA = re.compile(rf"^\s*($|--|({_SQL_START})( |;|\(|$)|\\[^.])", re.I)


def terminate_dataless_copies(script: str) -> str:
    """The script with a `\\.` line after each one-line COPY FROM stdin that has no data after it."""
    lines = script.splitlines()
    out = []
    for line, following in zip(lines, [*lines[1:], ""], strict=True):
        out.append(line)
        if _COPY_FROM_STDIN.match(line) and _NOT_DATA.match(following):
            out.append("\\.")
    return "\n".join(out) + "\n"


def _prepare_build_dir(build_dir: Path, sources: RegressionSources) -> None:
    """The scripts' abs_srcdir and abs_builddir: the server itself reads data/ (COPY FROM a file) and writes
    into results/ (COPY TO, lo_export), and it may run as another user (postgres, when the tests run as root)."""
    shutil.copytree(sources.root / "data", build_dir / "data")
    (build_dir / "sql").mkdir()
    for script in (sources.root / "sql").glob("*.sql"):
        text = script.read_text(encoding="utf-8", errors="surrogateescape")
        (build_dir / "sql" / script.name).write_text(
            terminate_dataless_copies(text), encoding="utf-8", errors="surrogateescape"
        )
    (build_dir / "results").mkdir()
    build_dir.chmod(0o755)
    (build_dir / "data").chmod(0o755)
    for path in (build_dir / "data").iterdir():
        path.chmod(0o644)
    (build_dir / "results").chmod(0o777)


def _create_database(admin: ConnectionSpec, dbname: str) -> None:
    """As pg_regress creates it: from template0, with the settings its expected outputs assume."""
    name = sql.Identifier(dbname)
    with connect(admin) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(name))
        for setting, value in (
            ("lc_messages", "C"),
            ("lc_monetary", "C"),
            ("lc_numeric", "C"),
            ("lc_time", "C"),
            ("bytea_output", "hex"),
            ("timezone_abbreviations", "Default"),
        ):
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET {} TO {}").format(name, sql.Identifier(setting), sql.Literal(value))
            )


def user_table_count(spec: ConnectionSpec) -> int:
    """Tables (plain and partitioned) outside the system schemas."""
    with connect(spec) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'"
        ).fetchone()
    return int(row[0]) if row else 0


# The regression scripts drop every table whose name needs quoting (measured: none of the ~615 tables left has
# one; only a few keyword column names such as "time"). Backups and selective restores must cope with such names,
# so a few tables with mixed-case, spaced, dotted, quoted and non-ASCII names are added after the scripts: the one
# part of the corpus that is not PostgreSQL's own.
QUOTED_NAMES_SQL = """
CREATE SCHEMA "Quoted Names";
CREATE TABLE "Quoted Names"."Parent Table" (id int PRIMARY KEY, "Label" text NOT NULL);
CREATE TABLE "Quoted Names"."child.table" (
    id int PRIMARY KEY,
    "Parent ID" int NOT NULL REFERENCES "Quoted Names"."Parent Table" (id),
    "quote""d" text
);
CREATE INDEX "Index With Spaces" ON "Quoted Names"."child.table" ("Parent ID");
CREATE TABLE "Quoted Names"."Événements" (at date NOT NULL, "Value" numeric) PARTITION BY RANGE (at);
CREATE TABLE "Quoted Names"."Événements 2024" PARTITION OF "Quoted Names"."Événements"
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE public."MixedCase" (id int PRIMARY KEY, payload text);
INSERT INTO "Quoted Names"."Parent Table" SELECT g, 'parent ' || g FROM generate_series(1, 10) g;
INSERT INTO "Quoted Names"."child.table" SELECT g, 1 + g % 10, 'it''s "' || g || '"' FROM generate_series(1, 100) g;
INSERT INTO "Quoted Names"."Événements" SELECT date '2024-01-01' + g, g FROM generate_series(0, 365) g;
INSERT INTO public."MixedCase" SELECT g, md5(g::text) FROM generate_series(1, 50) g;
"""


def _add_quoted_names(spec: ConnectionSpec) -> None:
    with connect(spec, autocommit=False) as conn:
        conn.execute(QUOTED_NAMES_SQL)
        conn.commit()


def _run_schedule(build: _Build, schedule: list[list[str]], skipped: set[str], jobs: int) -> dict[str, float | None]:
    """Each group's files `jobs` at a time, as pg_regress runs a group side by side; the groups in order.
    Returns each file's seconds, None for a file that timed out."""

    def run(name: str) -> tuple[str, float | None]:
        started = time.monotonic()
        finished = build.run_file(name)
        return name, round(time.monotonic() - started, 2) if finished else None

    seconds: dict[str, float | None] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for group in schedule:
            seconds.update(pool.map(run, [name for name in group if name not in skipped]))
    return seconds


def build_regression_database(
    admin: ConnectionSpec,
    dbname: str,
    psql: Path | None = None,
    *,
    jobs: int = 2,
    file_timeout_s: float = 120.0,
    skip: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Create `dbname` (dropped first if it exists) and run the regression scripts into it in schedule order
    with `psql` (default: the one find_tool finds), then add the quoted-name tables. Returns simple statistics."""
    sources = regression_sources()
    skipped = SKIPPED if skip is None else skip
    started = time.monotonic()
    _create_database(admin, dbname)
    spec = admin.for_database(dbname)
    with tempfile.TemporaryDirectory(prefix="dbops-regress-") as scratch:
        _prepare_build_dir(Path(scratch), sources)
        build = _Build(spec, psql or find_tool("psql"), Path(scratch) / "sql", Path(scratch), file_timeout_s)
        file_seconds = _run_schedule(build, sources.schedule, set(skipped), jobs)
    _add_quoted_names(spec)
    return {
        "source": sources.version,
        "files": len(file_seconds),
        "skipped": sorted(skipped),
        "timed_out": sorted(name for name, seconds in file_seconds.items() if seconds is None),
        "seconds": round(time.monotonic() - started, 1),
        "tables": user_table_count(spec),
        "file_seconds": file_seconds,
    }
