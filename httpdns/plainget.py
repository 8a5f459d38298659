"""The plainest GET and ``/d`` query: recognised and taken apart in one step.

Most requests a node answers are one whole ``GET /d?dn=NAME&ip=ADDRESS HTTP/1.1`` with a
``Host`` and a few ordinary headers. The fast front end (``httpdns.fasthttp``) frames that
shape itself, without llhttp, and a client network no cache holds goes from it straight
to the miss lane (``httpdns.dialects.dnspod_miss``). Two functions say what such a request
is:

* ``scan(data)``: None unless ``data`` is one whole request of the plainest shape
  (``SIMPLE_GET``); else ``(target, path, dn, ip, family, ttl, bucket)``, where ``path``
  is the target before its first ``?`` and the last five are ``scan_query``'s of the rest
  (``(None, 0, 0, False, 0)`` when it is not of the lane's shape);
* ``scan_query(query)``: None unless the query string is exactly ``dn=NAME&ip=ADDRESS``
  (either order, no escapes, no other parameter) perhaps followed by ``&ttl=1``, with an
  address ``table.parse_ip`` reads; else ``(dn, ip, family, ttl, bucket)``: the name as
  sent, the address as ``parse_ip`` gives it, whether ``ttl=1`` came, and the client's
  bucket (``hashing.bucket`` of its ``Client.key``).

The definitions are the Python ones below (regular expressions, ``parse_ip``, and
``hashing.bucket`` of ``Client.key``). ``httpdns._plainget`` (C, built by ``scripts/install``) does
the same about ten times faster and is used when present; ``tests/httpdns/test_plainget.py``
holds the two to each other on generated, mutated and hand-picked input.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .hashing import bucket
from .table import Client, parse_ip

Scanned = tuple[bytes, bytes, bytes | None, int, int, bool, int]
LaneQuery = tuple[bytes, int, int, bool, int]

# A whole GET request of the plainest shape: HTTP/1.1, ``Host`` the first header (as RFC
# 9112 section 3.2 asks of clients), headers of token names and visible ASCII values, none
# that needs llhttp's judgement (a body, an upgrade, Expect, a second Host, a Connection
# other than keep-alive, Proxy-Connection included), nothing after it. A subset of what
# llhttp accepts, framed by this one match; anything else is llhttp's.
SIMPLE_GET = re.compile(
    rb"GET (/[!-~]*) HTTP/1\.1\r\n((?i:host):[\t -~]*\r\n"
    rb"(?:(?!(?i:content-length|transfer-encoding|upgrade|expect|host):)"
    rb"(?!(?i:connection|proxy-connection):(?![\t ]*(?i:keep-alive)[\t ]*\r\n))"
    rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t -~]*\r\n)*)\r\n"
).fullmatch

# The lane's query: the two parameters, either order, no escapes, then perhaps ttl=1. The
# name's bytes are those a DNS name may hold (the rest declines: the full path says why),
# the address's those of an IPv4 or IPv6 literal (``parse_ip`` has the last word).
# Possessive (``{m,n}+``): neither class holds the ``&`` that must follow, so giving
# characters back could never match; without it a request of another shape (an encrypted
# ``dn=HEX&id=...``) cost a backtrack per character, ~0.8 µs, on every request
_NAME = rb"([-.0-9A-Z_a-z]{1,254}+)"
_ADDRESS = rb"([.0-9:A-Fa-f]{2,45}+)"
_TTL = rb"(&ttl=1)?"
_DN_IP = re.compile(rb"dn=" + _NAME + rb"&ip=" + _ADDRESS + _TTL).fullmatch
_IP_DN = re.compile(rb"ip=" + _ADDRESS + rb"&dn=" + _NAME + _TTL).fullmatch


def py_scan_query(query: bytes) -> LaneQuery | None:
    """``scan_query`` in Python: the definition."""
    m = _DN_IP(query)
    if m is not None:
        dn, ip, ttl = m.groups()
    else:
        m = _IP_DN(query)
        if m is None:
            return None
        ip, dn, ttl = m.groups()
    try:
        value, family = parse_ip(ip.decode())
    except ValueError:
        return None
    # the bucket of the client's steering key, as every other path computes it
    return dn, value, family, ttl is not None, bucket(Client(value, family).key)


def py_scan(data: bytes) -> Scanned | None:
    """``scan`` in Python: the definition."""
    m = SIMPLE_GET(data)
    if m is None:
        return None
    target = m[1]
    path, _, query = target.partition(b"?")
    lane = py_scan_query(query)
    if lane is None:
        return target, path, None, 0, 0, False, 0
    return (target, path, *lane)


def head_start(target: bytes) -> int:
    """Where the CRLF before the first header line of a scanned request with ``target``
    starts (``GET `` + target + `` HTTP/1.1``)."""
    return len(target) + 13


scan: Callable[[bytes], Scanned | None]
scan_query: Callable[[bytes], LaneQuery | None]
try:
    from ._plainget import scan, scan_query
except ImportError:  # not built (no compiler): the definitions, slower
    scan, scan_query = py_scan, py_scan_query
NATIVE = scan is not py_scan
