"""The server's TLS certificate: days until it expires, when the health session runs over TLS.

libpq does not hand the server's certificate to the client, so the probe asks for it the way a client starts
TLS with PostgreSQL: a second TCP connection to the same address, the 8-byte SSLRequest, an `S`, then a TLS
handshake that only reads the certificate (no verification: its dates are all we need, and the health session
itself was verified as its sslmode says). The certificate's validity and names are read from its DER encoding
here (X.509: RFC 5280), with no extra dependency in the Lambda layer. A connection over a Unix socket or
without TLS has no certificate to check.
"""

from __future__ import annotations

import socket
import ssl
import struct
from dataclasses import dataclass
from datetime import UTC, datetime

from dbops.health.context import ProbeContext
from dbops.health.model import Finding, Status
from dbops.health.thresholds import grade_low

SSL_REQUEST = struct.pack("!II", 8, 80877103)
COMMON_NAME = bytes([0x55, 0x04, 0x03])  # OID 2.5.4.3
SEQUENCE, SET, OID, UTC_TIME, GENERALIZED_TIME, VERSION = 0x30, 0x31, 0x06, 0x17, 0x18, 0xA0


@dataclass(frozen=True)
class Certificate:
    not_before: datetime
    not_after: datetime
    subject: str
    issuer: str


def _element(der: bytes, pos: int) -> tuple[int, int, int]:
    """The DER element at `pos`: (tag, where its content starts, where it ends)."""
    tag, length = der[pos], der[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4:
            raise ValueError("not a DER certificate: bad length")
        length = int.from_bytes(der[pos : pos + count], "big")
        pos += count
    if pos + length > len(der):
        raise ValueError("not a DER certificate: truncated")
    return tag, pos, pos + length


def _children(der: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    found = []
    while start < end:
        element = _element(der, start)
        found.append(element)
        start = element[2]
    return found


def _time(tag: int, text: str) -> datetime:
    if tag == UTC_TIME:  # YYMMDDHHMMSSZ; RFC 5280: years 50-99 are 19xx
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != GENERALIZED_TIME:
        raise ValueError(f"not a DER certificate: time tag {tag:#x}")
    return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)


def _common_name(der: bytes, name: tuple[int, int, int]) -> str:
    """The CN of an X.509 Name (SEQUENCE of SET of SEQUENCE {OID, value}); else '?'."""
    for _, rdn_start, rdn_end in _children(der, name[1], name[2]):
        for _, attr_start, attr_end in _children(der, rdn_start, rdn_end):
            (oid_tag, oid_start, oid_end), (_, value_start, value_end) = _children(der, attr_start, attr_end)[:2]
            if oid_tag == OID and der[oid_start:oid_end] == COMMON_NAME:
                return der[value_start:value_end].decode("utf-8", "replace")
    return "?"


def parse_certificate(der: bytes) -> Certificate:
    """Validity and the subject's and issuer's common names of a DER X.509 certificate."""
    tag, start, _ = _element(der, 0)
    if tag != SEQUENCE:
        raise ValueError("not a DER certificate")
    tbs = _element(der, start)
    fields = _children(der, tbs[1], tbs[2])
    if fields and fields[0][0] == VERSION:
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject, ...
    if len(fields) < 5 or fields[3][0] != SEQUENCE:
        raise ValueError("not a DER certificate: no validity")
    (t1, s1, e1), (t2, s2, e2) = _children(der, fields[3][1], fields[3][2])[:2]
    return Certificate(
        not_before=_time(t1, der[s1:e1].decode("ascii")),
        not_after=_time(t2, der[s2:e2].decode("ascii")),
        subject=_common_name(der, fields[4]),
        issuer=_common_name(der, fields[2]),
    )


def server_certificate(host: str, port: int, timeout: float, server_name: str | None = None) -> bytes | None:
    """The DER certificate a PostgreSQL server presents, or None when it answers the SSLRequest with no."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(SSL_REQUEST)
        if sock.recv(1) != b"S":
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # reading the dates only; the session verified what sslmode asks
        with context.wrap_socket(sock, server_hostname=server_name or host) as tls:
            der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("the server presented no certificate")
    return der


def probe_tls_certificate(ctx: ProbeContext) -> Finding:
    info = ctx.conn.info
    if not ctx.conn.pgconn.ssl_in_use:
        where = "a Unix socket" if str(info.host).startswith("/") else f"{info.host}:{info.port}"
        return Finding(
            status=Status.OK,
            message=f"not TLS: the session to {where} is not encrypted, no server certificate to check",
            values={"tls_certificate_expiry_days": None},
        )
    t = ctx.thresholds
    address = info.hostaddr or info.host
    timeout = max(1.0, ctx.settings.statement_timeout_ms / 1000)
    try:
        der = server_certificate(address, int(info.port), timeout, server_name=info.host)
    except OSError as exc:  # ssl.SSLError is one
        return Finding(
            status=Status.ERROR, message=f"cannot read the server certificate from {info.host}:{info.port}: {exc}"
        )
    if der is None:
        return Finding(
            status=Status.UNKNOWN,
            message=f"{info.host}:{info.port} refused TLS to a second connection: certificate not checked",
        )
    cert = parse_certificate(der)
    days = (cert.not_after - ctx.now).total_seconds() / 86_400
    status = grade_low(days, t.tls_certificate_warn_days, t.tls_certificate_critical_days)
    left = f"expired {-days:.1f} days ago" if days < 0 else f"expires in {days:.1f} days"
    return Finding(
        status=status,
        message=f"server certificate {left}, {cert.not_after:%Y-%m-%d %H:%M} UTC "
        f"(warn under {t.tls_certificate_warn_days:g} days, critical under {t.tls_certificate_critical_days:g})",
        values={"tls_certificate_expiry_days": round(days, 2)},
        details=[
            f"subject CN={cert.subject}, issuer CN={cert.issuer}, valid from {cert.not_before:%Y-%m-%d}"
            + ("; renew it before it expires (on RDS: the instance's CACertificateIdentifier)" if status.rank else "")
        ],
    )
