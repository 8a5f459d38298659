"""Public-key pinning for ``https`` servers: the SHA-256 of the server certificate's
SubjectPublicKeyInfo, written ``sha256/BASE64`` (the form OkHttp and HPKP use).

A pin is checked after the normal certificate verification, on the leaf certificate;
list a backup key's pin too, so that a key rotation does not lock the app out. Make one
from a certificate file with::

    openssl x509 -in cert.pem -pubkey -noout | openssl pkey -pubin -outform der \\
        | openssl dgst -sha256 -binary | base64
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable


class PinMismatch(ConnectionError):
    """The server's certificate key is not one of the pinned keys."""


def normalize_pins(pins: Iterable[str]) -> frozenset[str]:
    """``sha256/BASE64`` pins (a bare BASE64 digest is accepted); ``ValueError`` if not
    a SHA-256 digest."""
    out = set()
    for pin in pins:
        text = pin.strip()
        digest = text.removeprefix("sha256/")
        try:
            raw = base64.b64decode(digest, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ValueError(f"pin {pin!r} is not sha256/BASE64 of a SHA-256 digest")
        out.add("sha256/" + base64.b64encode(raw).decode())
    return frozenset(out)


def spki_pin(der_certificate: bytes) -> str:
    """The ``sha256/BASE64`` pin of a DER certificate's public key."""
    digest = hashlib.sha256(subject_public_key_info(der_certificate)).digest()
    return "sha256/" + base64.b64encode(digest).decode()


def check_pin(der_certificate: bytes | None, pins: frozenset[str], server: str) -> None:
    """Raise ``PinMismatch`` unless the certificate's key is pinned."""
    if der_certificate is None:
        raise PinMismatch(f"{server} presented no certificate")
    found = spki_pin(der_certificate)
    if found not in pins:
        raise PinMismatch(f"{server}: the certificate key {found} is not pinned")


def subject_public_key_info(der: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo of an X.509 certificate (RFC 5280 §4.1)."""
    _, start, _ = _tlv(der, 0)  # Certificate ::= SEQUENCE
    tag, start, end = _tlv(der, start)  # tbsCertificate ::= SEQUENCE
    if tag != 0x30:
        raise ValueError("not an X.509 certificate")
    fields = []
    pos = start
    while pos < end:
        tag, _, stop = _tlv(der, pos)
        fields.append((tag, pos, stop))
        pos = stop
    if fields and fields[0][0] == 0xA0:  # [0] version
        fields = fields[1:]
    if len(fields) < 6:
        raise ValueError("not an X.509 certificate")
    _, start, stop = fields[5]  # serial, signature, issuer, validity, subject, SPKI
    return der[start:stop]


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of the value, end of the value) of the DER element at ``pos``."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if not 1 <= n <= 4 or pos + n > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, pos, pos + length
