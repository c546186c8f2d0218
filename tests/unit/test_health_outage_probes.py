"""The outage probes' parts that need no server: the certificate reader against certificates made by the
`cryptography` package, the new thresholds' defaults and order, their metric units, the counters' S3 keys."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from dbops.health import Thresholds
from dbops.health.counters import S3TempFileState
from dbops.health.model import metric_unit
from dbops.health.probes.tls import parse_certificate


def _der(
    not_before: datetime,
    not_after: datetime,
    subject: list[x509.NameAttribute],
    issuer: list[x509.NameAttribute] | None = None,
    *,
    rsa_key: bool = False,
) -> bytes:
    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if rsa_key
        else ec.generate_private_key(ec.SECP256R1())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(x509.Name(issuer or subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


CN = NameOID.COMMON_NAME


@pytest.mark.parametrize(
    ("not_before", "not_after"),
    [
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)),  # UTCTime
        (datetime(1999, 6, 1, tzinfo=UTC), datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)),  # 19xx, last UTCTime year
        (datetime(2025, 1, 1, tzinfo=UTC), datetime(2050, 1, 1, tzinfo=UTC)),  # GeneralizedTime from 2050
    ],
)
@pytest.mark.parametrize("rsa_key", [False, True], ids=["ec", "rsa"])  # RSA: long-form DER lengths
def test_certificate_dates_and_names_match_cryptography(
    not_before: datetime, not_after: datetime, rsa_key: bool
) -> None:
    der = _der(
        not_before,
        not_after,
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"), x509.NameAttribute(CN, "db.example.com")],
        [x509.NameAttribute(CN, "Example CA ü")],
        rsa_key=rsa_key,
    )
    expected = x509.load_der_x509_certificate(der)

    cert = parse_certificate(der)

    assert cert.not_before == expected.not_valid_before_utc == not_before
    assert cert.not_after == expected.not_valid_after_utc == not_after
    assert (cert.subject, cert.issuer) == ("db.example.com", "Example CA ü")


def test_a_name_without_a_common_name_reads_as_a_question_mark() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    der = _der(now, now + timedelta(days=1), [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "No CN")])

    assert parse_certificate(der).subject == "?"


@pytest.mark.parametrize("data", [b"", b"\x02\x01\x00", b"\x30\x82\xff\xff\x30"])
def test_what_is_not_a_certificate_is_refused(data: bytes) -> None:
    with pytest.raises((ValueError, IndexError)):
        parse_certificate(data)


def test_new_defaults_and_their_sources() -> None:
    t = Thresholds()
    assert (t.prepared_transaction_warn_seconds, t.prepared_transaction_critical_seconds) == (1, 30)  # check_postgres
    assert (t.tls_certificate_warn_days, t.tls_certificate_critical_days) == (20, 15)  # check_ssl_cert
    assert (t.slot_retained_wal_warn_bytes, t.slot_retained_wal_critical_bytes) == (2**30, 10 * 2**30)
    assert (t.xmin_horizon_warn, t.xmin_horizon_critical) == (10_000_000, 100_000_000)
    assert (t.temp_files_warn_bytes_per_hour, t.temp_files_critical_bytes_per_hour) == (2**30, 20 * 2**30)
    assert t.application_connections_warn_percent == 75
    assert t.require_data_checksums is False


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tls_certificate_warn_days": 10}, "tls_certificate_warn_days (10.0) is below tls_certificate_critical_days"),
        ({"xmin_horizon_warn": 200_000_000}, "xmin_horizon_warn (200000000) is above xmin_horizon_critical"),
        ({"slot_retained_wal_critical_bytes": 1}, "slot_retained_wal_warn_bytes (1073741824) is above"),
    ],
)
def test_new_thresholds_keep_warning_before_critical(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        Thresholds.model_validate(overrides)


@pytest.mark.parametrize(
    ("key", "unit"),
    [
        ("slot_retained_wal_bytes", "Bytes"),
        ("temp_hourly_bytes", "Bytes"),
        ("temp_files_per_hour", "Count"),
        ("xmin_horizon_seconds", "Seconds"),
        ("oldest_prepared_transaction_seconds", "Seconds"),
        ("top_application_connections_percent", "Percent"),
        ("tls_certificate_expiry_days", "Count"),
    ],
)
def test_new_values_have_the_metric_unit_of_their_suffix(key: str, unit: str) -> None:
    assert metric_unit(key) == unit


def test_counters_are_kept_one_object_per_database_under_health() -> None:
    state = S3TempFileState("bucket-1")
    assert state.key("sprint_reports_v2") == "health/temp-files/sprint_reports_v2.json"
    assert state.key("odd/name") == "health/temp-files/odd%2Fname.json"
