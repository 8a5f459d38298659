"""``httpdns.plainget``: the C scanner (``_plainget``) says what the Python definitions say,
on generated, mutated and hand-picked requests and queries."""

from __future__ import annotations

import importlib
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from httpdns import plainget
from httpdns.hashing import bucket
from httpdns.plainget import py_scan, py_scan_query
from tests.httpdns.test_fuzz import FUZZ, simple_ish

try:
    native = importlib.import_module("httpdns._plainget")
except ImportError:  # pragma: no cover - scripts/install builds it; the check below says so
    native = None

EQUAL = settings(FUZZ, max_examples=1500)  # the fuzz's settings, five times the examples

# A plain request and query; the mutations below start from these
PLAIN = b"GET /d?dn=shop.example.org&ip=10.1.2.3 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
QUERIES = [
    b"dn=shop.example.org&ip=10.1.2.3",
    b"ip=10.1.2.3&dn=shop.example.org&ttl=1",
    b"dn=a&ip=2001:db8::1&ttl=1",
    b"dn=a&ip=::ffff:10.1.2.3",
]
# bytes that sit on the grammar's edges: separators, class boundaries, case, controls
_EDGE = b"&=?:.-_/ \t\r\n%+0139afAFgzGZ\x00\x7f\x80\xff"


def test_the_extension_is_built_and_used() -> None:
    """``scripts/install`` builds it; a missing build would silently cost the miss path."""
    assert native is not None
    assert plainget.NATIVE and plainget.scan is native.scan


def _mutate(base: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    out = bytearray(base)
    for at, kind, byte in edits:
        at %= len(out) + 1
        if kind == 0:
            out[at:at] = byte  # insert
        elif kind == 1:
            del out[at : at + 1]
        else:
            out[at : at + 1] = byte  # replace
    return bytes(out)


_EDITS = st.lists(
    st.tuples(
        st.integers(0, 1 << 16),
        st.integers(0, 2),
        st.sampled_from(list(_EDGE)).map(lambda b: bytes([b])),
    ),
    max_size=4,
)


@EQUAL
@given(base=st.sampled_from(QUERIES), edits=_EDITS)
def test_mutated_queries_scan_alike(base: bytes, edits: list[tuple[int, int, bytes]]) -> None:
    assert native is not None
    query = _mutate(base, edits)
    assert native.scan_query(query) == py_scan_query(query)


@EQUAL
@given(
    name=st.text(alphabet="-._aZ09", min_size=0, max_size=260),
    address=st.one_of(
        st.ip_addresses().map(str),
        st.text(alphabet=".:0123456789abcdefABCDEF", max_size=50),
    ),
    first=st.booleans(),
    ttl=st.sampled_from(["", "&ttl=1", "&ttl=0", "&ttl=1&", "&TTL=1"]),
)
def test_generated_queries_scan_alike(name: str, address: str, first: bool, ttl: str) -> None:
    assert native is not None
    pair = [f"dn={name}", f"ip={address}"]
    query = ("&".join(pair if first else pair[::-1]) + ttl).encode()
    assert native.scan_query(query) == py_scan_query(query)


@EQUAL
@given(edits=_EDITS)
def test_mutated_requests_scan_alike(edits: list[tuple[int, int, bytes]]) -> None:
    assert native is not None
    data = _mutate(PLAIN, edits)
    assert native.scan(data) == py_scan(data)


@EQUAL
@given(data=simple_ish())
def test_requests_of_every_odd_shape_scan_alike(data: bytes) -> None:
    assert native is not None
    assert native.scan(data) == py_scan(data)


_NAMES = ["Host", "HOST", "host", "Connection", "connection", "Proxy-Connection", "Accept",
          "Content-Length", "Transfer-Encoding", "Upgrade", "Expect", "Keep-Alive", "X-A",
          "Hostx", "Connectionx", "Host ", "X A"]  # fmt: skip
_VALUES = [" keep-alive", "keep-alive", "\tKeep-Alive \t", " close", " keep-alive, Upgrade",
           "", " x", " keep-alivex", " keep alive", " KEEP-ALIVE", "\x80"]  # fmt: skip


@EQUAL
@given(
    headers=st.lists(st.tuples(st.sampled_from(_NAMES), st.sampled_from(_VALUES)), max_size=5),
    host_first=st.booleans(),
)
def test_requests_with_headers_that_matter_scan_alike(
    headers: list[tuple[str, str]], host_first: bool
) -> None:
    """The headers the plainest shape refuses or accepts by name and value, in any order."""
    assert native is not None
    if host_first:
        headers.insert(0, ("Host", " h"))
    head = "".join(f"{k}:{v}\r\n" for k, v in headers)
    data = b"GET /d?dn=a&ip=1.2.3.4 HTTP/1.1\r\n" + head.encode("latin-1") + b"\r\n"
    assert native.scan(data) == py_scan(data)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"dn=a.b&ip=1.2.3.4", (b"a.b", 0x01020304, 4, False)),
        (b"ip=1.2.3.4&dn=a.b&ttl=1", (b"a.b", 0x01020304, 4, True)),
        (b"dn=a&ip=::ffff:1.2.3.4", (b"a", 0x01020304, 4, False)),  # IPv4-mapped: IPv4
        (b"dn=a&ip=2001:db8::1", (b"a", int(ipaddress.ip_address("2001:db8::1")), 6, False)),
        (b"dn=a&ip=01.2.3.4", None),  # a leading zero is no address (inet_pton)
        (b"dn=a&ip=1.2.3", None),
        (b"dn=a&ip=1.2.3.4&x=1", None),
        (b"dn=a&ip=1.2.3.4&id=7", None),
        (b"dn=a%2Eb&ip=1.2.3.4", None),  # escapes: the full path's
        (b"dn=" + b"a" * 254 + b"&ip=1.2.3.4", (b"a" * 254, 0x01020304, 4, False)),
        (b"dn=" + b"a" * 255 + b"&ip=1.2.3.4", None),
        (b"dn=a&ip=" + b"1" * 46, None),
        (b"dn=&ip=1.2.3.4", None),
        (b"", None),
    ],
)
def test_hand_picked_queries(query: bytes, expected: tuple[bytes, int, int, bool] | None) -> None:
    for scan_query in (py_scan_query, plainget.scan_query):
        got = scan_query(query)
        if expected is None:
            assert got is None
            continue
        assert got is not None and got[:4] == expected
        family, ip = expected[2], expected[1]
        key = f"4:{ip >> 8}" if family == 4 else f"6:{ip >> 72}"
        assert got[4] == bucket(key)  # the bucket steering computes (hashing.bucket)


@pytest.mark.parametrize(
    ("head", "plain"),
    [
        (b"Host: h\r\n", True),
        (b"host:h\r\nConnection: Keep-Alive \t\r\n", True),
        (b"Host: h\r\nProxy-Connection:keep-alive\r\n", True),
        (b"Host: h\r\nConnection: close\r\n", False),
        (b"Host: h\r\nConnection: keep-alive, Upgrade\r\n", False),
        (b"Host: h\r\nConnection: keep-alivex\r\n", False),
        (b"Host: h\r\nHost: h\r\n", False),
        (b"Host: h\r\nexpect: 100-continue\r\n", False),
        (b"Accept: */*\r\nHost: h\r\n", False),
        (b"Host : h\r\n", False),
        (b"Host: h\n", False),
    ],
)
def test_hand_picked_requests(head: bytes, plain: bool) -> None:
    data = b"GET /d?dn=a&ip=1.2.3.4 HTTP/1.1\r\n" + head + b"\r\n"
    for scan in (py_scan, plainget.scan):
        assert (scan(data) is not None) is plain


def test_a_request_of_another_shape_has_no_lane_query() -> None:
    data = PLAIN.replace(b"&ip=10.1.2.3", b"&ip=10.1.2.3&type=AAAA")
    assert plainget.scan(data) == (
        b"/d?dn=shop.example.org&ip=10.1.2.3&type=AAAA",
        b"/d",
        None,
        0,
        0,
        False,
        0,
    )
    assert plainget.scan(PLAIN.replace(b"?dn", b"")) is not None  # no query: framed alike
    assert plainget.scan(PLAIN[:-2]) is None  # not whole


@pytest.mark.parametrize("arg", ["text", 7, bytearray(PLAIN)])
def test_the_extension_takes_bytes_alone(arg: object) -> None:
    assert native is not None
    with pytest.raises(TypeError):
        native.scan(arg)
    with pytest.raises(TypeError):
        native.scan_query(arg)
