"""Property tests (hypothesis) of everything that parses untrusted bytes on the fast data plane:

* ``DnsEngine.respond`` (the plain DNS listener) on random bytes and on mutated valid queries:
  silence below 12 bytes, else a well-formed reply echoing the ID and opcode, within the UDP
  size limit, identical when served again from the front cache; never an exception.
* the DoH dialect (``resolve_doh``, GET and POST): a 200 DNS message or a 4xx
  ``HttpdnsError`` / ``RegistryError``; never anything else.
* ``FastHTTP.data_received`` (the HTTP framing) on random and mostly-valid byte streams cut
  into random chunks: never raises, writes only complete HTTP/1.1 responses (never a 500),
  and behaves the same however the stream is cut.

The routing table is built in-process from records; examples are derandomized (CI-stable).
"""

from __future__ import annotations

import asyncio
import base64
import re
import struct
from collections.abc import Callable
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import httptools
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from httpdns import config as config_mod
from httpdns.dialects import Context, Query, resolve_doh
from httpdns.dnsserver import DnsEngine
from httpdns.dnswire import EDNS_PAYLOAD
from httpdns.errors import HttpdnsError
from httpdns.fasthttp import FastHTTP, FastServer
from httpdns.plainget import scan
from httpdns.routes import QUERY_ROUTES
from httpdns.table import RoutingTable
from registry.changes import Change
from registry.errors import RegistryError
from registry.model import Datacenter, Endpoint, Region, Release, Service
from registry.snapshot import Snapshot
from tests import fakes

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ZONE = "example.org"
SHOP = "shop.example.org"
BIG = "big.example.org"
OK_RCODES = {
    dns.rcode.NOERROR,
    dns.rcode.FORMERR,
    dns.rcode.NXDOMAIN,
    dns.rcode.NOTIMP,
    dns.rcode.REFUSED,
}


def build_table() -> RoutingTable:
    records: list[Any] = [
        Datacenter.from_dict("idc", {"kind": "idc", "writable": True}),
        Datacenter.from_dict("cloud", {"kind": "cloud", "writable": False}),
        Region.from_dict("mobile", {"cidrs": ["100.64.0.0/10", "2001:db8:64::/48"]}),
        Service.from_dict(
            SHOP,
            {
                "access": "ro",
                "ttl": 60,
                "traffic": {"default": {"idc": 50, "cloud": 50}, "mobile": {"cloud": 100}},
            },
        ),
        Service.from_dict(
            BIG, {"access": "ro", "ttl": 20, "answers": 40, "traffic": {"default": {"idc": 100}}}
        ),
    ]
    for dc, n in (("idc", 2), ("cloud", 51)):
        for i in range(3):
            data = {"dc": dc, "address": f"192.0.{n}.{i + 1}", "port": 443, "version": "v1"}
            records.append(Endpoint.from_dict(SHOP, f"{dc}-{i}", data))
            data = {"dc": dc, "address": f"2001:db8:{n}::{i + 1}", "port": 443, "version": "v1"}
            records.append(Endpoint.from_dict(SHOP, f"{dc}-v6-{i}", data))
        data = {"dc": dc, "address": f"192.0.{n}.9", "port": 443, "version": "v2"}
        records.append(Endpoint.from_dict(SHOP, f"{dc}-canary", data))
    records.append(Release.from_dict(SHOP, {"stable": "v1", "canary": "v2", "canary_percent": 10}))
    for i in range(40):
        data = {"dc": "idc", "address": f"2001:db8:40::{i + 1:x}", "port": 443, "version": "v1"}
        records.append(Endpoint.from_dict(BIG, f"e{i}", data))
    snapshot, _ = Snapshot().apply([Change.put(r) for r in records], 1)
    return RoutingTable(snapshot)


TABLE = build_table()
CONFIG = config_mod.load(None, env={}, zones=[ZONE])
CONTEXT = Context(TABLE, CONFIG)


def _wire(q: dns.message.Message) -> bytes:
    return q.to_wire()


def _base_queries() -> list[bytes]:
    mk = dns.message.make_query
    out = [
        _wire(mk(SHOP, "A")),
        _wire(mk(SHOP, "AAAA", use_edns=0)),
        _wire(mk(SHOP, "A", use_edns=0, options=[dns.edns.ECSOption("100.64.1.0", 24)])),
        _wire(mk(SHOP, "AAAA", use_edns=0, options=[dns.edns.ECSOption("2001:db8:64::", 56)])),
        _wire(mk(SHOP, "MX")),
        _wire(mk(SHOP, "ANY", use_edns=0, payload=4096)),
        _wire(mk(BIG, "AAAA")),
        _wire(mk(BIG, "AAAA", use_edns=0, payload=512)),
        _wire(mk(f"nope.{ZONE}", "A")),
        _wire(mk("example.com", "A", use_edns=0)),
        _wire(mk("ShOp.ExAmPlE.oRg", "A")),
    ]
    status = mk(SHOP, "A")
    status.set_opcode(2)
    out.append(_wire(status))
    response = mk(SHOP, "A")
    response.flags |= dns.flags.QR
    out.append(_wire(response))
    two = struct.pack("!HHHHHH", 0x0102, 0x0100, 2, 0, 0, 0)
    for name in (SHOP, BIG):
        two += dns.name.from_text(name).to_wire() + struct.pack("!HH", 1, 1)  # type: ignore[operator]
    out.append(two)
    return out


BASES = _base_queries()

# -- mutations -------------------------------------------------------------------------------

_OPS = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 16), st.integers(1, 255)),
    st.tuples(st.just("set"), st.integers(0, 1 << 16), st.integers(0, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 16)),
    st.tuples(st.just("extend"), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("count"), st.integers(0, 3), st.integers(0, 0xFFFF)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 16), st.integers(1, 8)),
)


def mutate(wire: bytes, ops: list[tuple[Any, ...]]) -> bytes:
    b = bytearray(wire)
    for op in ops:
        kind = op[0]
        if kind == "flip" and b:
            b[op[1] % len(b)] ^= op[2]
        elif kind == "set" and b:
            b[op[1] % len(b)] = op[2]
        elif kind == "truncate":
            del b[op[1] % (len(b) + 1) :]
        elif kind == "extend":
            b += op[1]
        elif kind == "count" and len(b) >= 12:
            b[4 + 2 * op[1] : 6 + 2 * op[1]] = op[2].to_bytes(2, "big")
        elif kind == "insert":
            i = op[1] % (len(b) + 1)
            b[i:i] = op[2]
        elif kind == "delete" and b:
            i = op[1] % len(b)
            del b[i : i + op[2]]
    return bytes(b)


# light (0-2 operations: mostly still decodable) and heavy mutations of valid queries
mutated_queries = st.one_of(
    st.builds(mutate, st.sampled_from(BASES), st.lists(_OPS, max_size=2)),
    st.builds(mutate, st.sampled_from(BASES), st.lists(_OPS, min_size=3, max_size=8)),
)
dns_inputs = st.one_of(mutated_queries, st.binary(max_size=600))


def parse_reply(out: bytes) -> dns.message.Message:
    """Parse a reply with dnspython (structure only: the opcode is set to QUERY first, since
    dnspython checks UPDATE messages semantically)."""
    plain = out[:2] + bytes([out[2] & 0x87]) + out[3:]
    return dns.message.from_wire(plain, ignore_trailing=True)


def check_reply(query: bytes, out: bytes | bytearray | None, udp: bool) -> bytes | None:
    if len(query) < 12 or query[2] & 0x80:  # not a header, or a response: never answered
        assert out is None, (query, out)
        return None
    assert out is not None, query
    out = bytes(out)
    assert len(out) >= 12
    assert out[:2] == query[:2]  # ID
    assert out[2] & 0x80  # QR
    assert (out[2] >> 3) & 0xF == (query[2] >> 3) & 0xF  # opcode echoed
    m = parse_reply(out)
    assert m.rcode() in OK_RCODES, (query, m.rcode())
    if udp:
        assert len(out) <= (512 if m.edns < 0 else EDNS_PAYLOAD), (query, len(out))
    if m.flags & dns.flags.TC:
        assert not m.answer
    if m.rcode() != dns.rcode.NOERROR:
        assert not m.answer
    return out


# -- (a) the DNS engine ----------------------------------------------------------------------


@FUZZ
@given(wire=dns_inputs, udp=st.booleans(), peer=st.sampled_from(["127.0.0.1", "2001:db8:64::7"]))
def test_dns_engine_answers_every_input_well_formed(wire: bytes, udp: bool, peer: str) -> None:
    engine = DnsEngine(TABLE, CONFIG)
    out = check_reply(wire, engine.respond(wire, peer, udp), udp)
    if out is None:
        return
    # served again (from the front cache when it was cached): the same reply
    assert bytes(engine.respond(wire, peer, udp) or b"") == out
    # another ID: the same reply but for the ID
    other = bytes([wire[0] ^ 0xFF, wire[1] ^ 0x55]) + wire[2:]
    again = engine.respond(other, peer, udp)
    assert again is not None and bytes(again[:2]) == other[:2] and bytes(again[2:]) == out[2:]
    # the name in other letter case: the same reply, but for the name as asked
    z = wire.find(b"\0", 12)
    if z > 12:
        swapped = wire[:12] + wire[12:z].swapcase() + wire[z:]
        cased = engine.respond(swapped, peer, udp)
        assert cased is not None
        assert bytes(cased[12:z]) == swapped[12:z] or parse_reply(bytes(cased)).rcode()
        assert bytes(cased[:12]) == out[:12] and bytes(cased[z:]) == out[z:]


@FUZZ
@given(base=st.sampled_from(BASES), qid=st.integers(0, 0xFFFF), udp=st.booleans())
def test_valid_queries_get_a_useful_answer(base: bytes, qid: int, udp: bool) -> None:
    wire = qid.to_bytes(2, "big") + base[2:]
    out = check_reply(wire, DnsEngine(TABLE, CONFIG).respond(wire, "127.0.0.1", udp), udp)
    assert (out is None) == bool(base[2] & 0x80)  # only responses are not answered
    if out is None:
        return
    m = parse_reply(out)
    if base in (BASES[0], BASES[1], BASES[2], BASES[3], BASES[10]):
        assert m.rcode() == dns.rcode.NOERROR and m.answer


# -- (b) DoH ---------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def check_doh(call: Callable[[], Any], query_wire: bytes | None) -> None:
    try:
        reply = call()
    except (HttpdnsError, RegistryError) as exc:
        assert 400 <= exc.status < 500, (type(exc), exc.status)
        return
    assert reply.status == 200
    assert reply.content_type == "application/dns-message"
    headers = dict(reply.headers)
    assert re.fullmatch(r"max-age=\d+", headers["Cache-Control"])
    body = bytes(reply.body)
    m = parse_reply(body)
    assert m.flags & dns.flags.QR
    assert m.rcode() in OK_RCODES
    if query_wire is not None:
        assert body[:2] == query_wire[:2]


params_extra = st.dictionaries(
    st.sampled_from(["ip", "uid", "ct", "edns_client_subnet"]),
    st.one_of(st.text(max_size=20), st.sampled_from(["10.1.2.3", "2001:db8::1", "dev-1"])),
    max_size=2,
)


@FUZZ
@given(wire=dns_inputs, extra=params_extra)
def test_doh_get_never_fails_badly(wire: bytes, extra: dict[str, str]) -> None:
    q = Query(params={"dns": b64url(wire), **extra}, peer="127.0.0.1", method="GET")
    check_doh(lambda: resolve_doh(q, CONTEXT), wire)


@FUZZ
@given(text=st.text(max_size=200))
def test_doh_get_with_any_dns_parameter_text(text: str) -> None:
    q = Query(params={"dns": text}, peer="127.0.0.1", method="GET")
    check_doh(lambda: resolve_doh(q, CONTEXT), None)


@FUZZ
@given(
    wire=dns_inputs,
    ctype=st.sampled_from(
        [
            "application/dns-message",
            "Application/DNS-Message; charset=binary",
            "application/json",
            "",
            None,
        ]
    ),
    extra=params_extra,
)
def test_doh_post_never_fails_badly(wire: bytes, ctype: str | None, extra: dict[str, str]) -> None:
    q = Query(params=extra, peer="127.0.0.1", body=wire, content_type=ctype, method="POST")
    check_doh(lambda: resolve_doh(q, CONTEXT), wire)


# -- (c) the fast HTTP framing ---------------------------------------------------------------


class FakeTransport(fakes.FakeTransport):
    """``tests.fakes.FakeTransport``, sure that nothing here fills the output buffer."""

    def pause_reading(self) -> None:
        raise AssertionError("nothing in these tests fills the output buffer")


class FakeSlow(asyncio.Protocol):
    """Stands in for aiohttp's protocol after a hand-off."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.data = b""

    def connection_made(self, transport: Any) -> None:
        assert self.transport is None
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += bytes(data)


SERVER = FastServer(CONTEXT, QUERY_ROUTES, FakeSlow)


def run_stream(chunks: list[bytes]) -> tuple[list[bytes], bool, bytes | None]:
    """Feed ``chunks`` as a transport would: (writes, closed, bytes handed to aiohttp)."""
    transport = FakeTransport()
    fast = FastHTTP(SERVER)
    fast.connection_made(transport)  # type: ignore[arg-type]
    current: asyncio.Protocol = fast
    for chunk in chunks:
        if transport.closed:
            break
        current.data_received(chunk)
        if transport.protocol is not None and current is fast:
            current = transport.protocol  # type: ignore[assignment]
            assert isinstance(current, FakeSlow) and current.transport is transport
    slow = transport.protocol
    return transport.writes, transport.closed, slow.data if isinstance(slow, FakeSlow) else None


_RESPONSE = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r\n]+\r\n((?:[^\r\n]+\r\n)*)\r\n", re.DOTALL)


def check_writes(writes: list[bytes]) -> None:
    for w in writes:
        m = _RESPONSE.match(w)
        assert m, w[:200]
        status = int(m.group(1))
        assert status in (200, 400, 403, 404, 405, 413, 415, 431), w[:300]
        headers = m.group(2).decode("latin-1").lower()
        size = int(re.search(r"content-length: (\d+)", headers).group(1))  # type: ignore[union-attr]
        assert len(w) - m.end() == size, w[:300]
        assert "date: " in headers


def without_date(writes: list[bytes]) -> list[bytes]:
    return [re.sub(rb"Date: [^\r]*\r\n", b"", w) for w in writes]


_NAMES = st.sampled_from([SHOP, BIG, "nope.example.org", "bad..name", "", "%00", "a" * 70])
_TARGETS = st.one_of(
    st.builds(lambda n: f"/d?dn={n}", _NAMES),
    st.builds(lambda n: f"/d?dn={n}&ttl=1&clientip=1&type=addrs", _NAMES),
    st.builds(lambda n: f"/100000/d?host={n}&query=4,6", _NAMES),
    st.builds(lambda n: f"/100000/resolve?host={n},{SHOP}", _NAMES),
    st.builds(lambda n: f"/resolve?name={n}&type=AAAA", _NAMES),
    st.builds(lambda w: f"/dns-query?dns={b64url(w)}", dns_inputs),
    st.sampled_from(["/healthz", "/api/v1/state", "/nowhere", "/a/b/c", "/x y", "*"]),
    st.text(max_size=30).map(lambda t: "/d?" + t),
)
_HEADERS = st.lists(
    st.sampled_from(
        [
            "Host: x",
            "Connection: close",
            "Connection: keep-alive",
            "X-Forwarded-For: 10.0.0.1",
            "Transfer-Encoding: chunked",
            "Expect: 100-continue",
            "Upgrade: websocket",
            "Content-Length: 3",
            "Content-Length: -1",
            "Content-Length: 99999999",
            "content-type: application/dns-message",
        ]
    ),
    max_size=3,
)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["get", "get", "get", "post", "post", "random", "line"]))
    if kind == "random":
        return draw(st.binary(max_size=200))
    if kind == "line":
        return draw(st.binary(max_size=60)) + b"\r\n\r\n"
    version = draw(st.sampled_from(["HTTP/1.1"] * 6 + ["HTTP/1.0", "HTTP/2", "http/1.1"]))
    headers = draw(st.one_of(st.just(["Host: x"]), _HEADERS))
    if kind == "get":
        method = draw(st.sampled_from(["GET"] * 6 + ["HEAD", "PUT", "get"]))
        head = f"{method} {draw(_TARGETS)} {version}\r\n" + "".join(h + "\r\n" for h in headers)
        return head.encode("utf-8", "surrogatepass") + b"\r\n"
    body = draw(dns_inputs)
    headers = [h for h in headers if not h.startswith("Content-Length")]
    lines = [
        f"POST /dns-query {version}",
        "Content-Type: application/dns-message",
        f"Content-Length: {len(body)}",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    stream = b"".join(draw(st.lists(requests(), min_size=1, max_size=6)))
    cuts = sorted(set(draw(st.lists(st.integers(0, max(len(stream), 1)), max_size=8))))
    chunks, last = [], 0
    for c in [*cuts, len(stream)]:
        if c > last:
            chunks.append(stream[last:c])
            last = c
    return stream, chunks or [stream]


@FUZZ
@given(chunks=st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=8))
def test_fast_http_framing_survives_random_bytes(chunks: list[bytes]) -> None:
    writes, _, _ = run_stream(chunks)
    check_writes(writes)


@FUZZ
@given(data=streams())
def test_fast_http_framing_is_sound_and_cut_independent(data: tuple[bytes, list[bytes]]) -> None:
    stream, chunks = data
    writes, closed, handed = run_stream(chunks)
    check_writes(writes)
    whole_writes, whole_closed, whole_handed = run_stream([stream])
    assert without_date(writes) == without_date(whole_writes)
    assert closed == whole_closed
    assert handed == whole_handed
    if handed is not None:
        assert stream.endswith(handed)  # aiohttp gets the rest of the stream, unchanged
        assert not closed


def test_fast_http_hands_over_the_exact_bytes() -> None:
    """A concrete case of the property above: two fast answers, then the admin API."""
    first = b"GET /d?dn=shop.example.org HTTP/1.1\r\nHost: x\r\n\r\n"
    admin = b"GET /api/v1/state HTTP/1.1\r\nAuthorization: Bearer T\r\n\r\n"
    tail = b"GET /d?dn=shop.example.org HTTP/1.1\r\n\r\n"
    writes, closed, handed = run_stream(
        [first + first[:10], first[10:] + admin[:7], admin[7:] + tail]
    )
    assert len(writes) == 2 and not closed
    assert writes[0].split(b"\r\n\r\n", 1)[1] == writes[1].split(b"\r\n\r\n", 1)[1]
    assert handed == admin + tail


class Framed(FastHTTP):
    """``FastHTTP`` with every request framed by llhttp (no ``_simple`` shortcut)."""

    __slots__ = ()

    def _simple(self, data: bytes) -> bool:
        return False


def run_one(protocol: type[FastHTTP], data: bytes) -> tuple[list[bytes], bool, bytes | None]:
    """One read of ``data`` on a new connection to a new server (no cache shared):
    (writes, closed, bytes handed to aiohttp)."""
    transport = FakeTransport()
    fast = protocol(FastServer(CONTEXT, QUERY_ROUTES, FakeSlow))
    fast.connection_made(transport)  # type: ignore[arg-type]
    fast.data_received(data)
    slow = transport.protocol
    handed = slow.data if isinstance(slow, FakeSlow) else None
    return transport.writes, transport.closed, handed


def same(
    a: tuple[list[bytes], bool, bytes | None], b: tuple[list[bytes], bool, bytes | None]
) -> bool:
    """Whether two ``run_one`` results are the same but for the Date headers."""
    return (without_date(a[0]), *a[1:]) == (without_date(b[0]), *b[1:])


_PLAIN_NAMES = ["Host", "host", "HOST", "User-Agent", "Accept", "X-Forwarded-For", "Connection",
                "Proxy-Connection", "proxy-connection", "Content-Length", "content-length",
                "Transfer-Encoding", "Upgrade", "Expect", "X-Connection", "Hostx",
                "Accept-Encoding", "Content-Type"]  # fmt: skip
_PLAIN_VALUES = [" x", " keep-alive", "Keep-Alive", " keep-alive\t", " close", " keep-alive, close",
                 " upgrade", " 0", " 3", " chunked", " 100-continue", " websocket", " 10.0.0.1",
                 "gzip", "", " */*", "\t"]  # fmt: skip
_ODD_NAMES = st.sampled_from(["Host ", " Host", "Ho\x00st", ""]) | st.text(
    alphabet="!#$%&'*+-.^_`|~09azAZ :\x00\x7f\xe9", max_size=8
)
_ODD_VALUES = st.text(alphabet=" \t!~aZ09:;,\x00\x7f\x80\xe9\r\n", max_size=10)


@st.composite
def simple_ish(draw: st.DrawFn) -> bytes:
    """GET requests of the shortcut's shape (``plainget.scan``), each maybe with
    one thing changed (method, version, a header, bytes after it)."""
    odd = draw(st.sampled_from(["", "", "", "method", "version", "name", "value", "after"]))
    method = draw(st.sampled_from(["HEAD", "get", "POST", "GET  "])) if odd == "method" else "GET"
    target = draw(_TARGETS | st.builds(lambda b: "/d?dn=" + b.decode("latin-1"), st.binary()))
    version = "HTTP/1.1"
    if odd == "version":
        version = draw(st.sampled_from(["HTTP/1.0", "HTTP/1.10", "HTTP/1.1 ", "http/1.1"]))
    pair = st.tuples(st.sampled_from(_PLAIN_NAMES), st.sampled_from(_PLAIN_VALUES))
    headers = draw(st.lists(pair, max_size=4))
    if draw(st.integers(0, 4)):
        headers.insert(0, ("Host", " 127.0.0.1:8080"))
    if odd in ("name", "value"):
        k, v = draw(pair)
        k = draw(_ODD_NAMES) if odd == "name" else k
        v = draw(_ODD_VALUES) if odd == "value" else v
        headers.insert(draw(st.integers(0, len(headers))), (k, v))
    head = f"{method} {target} {version}\r\n" + "".join(f"{k}:{v}\r\n" for k, v in headers)
    after = b""
    if odd == "after":
        after = draw(st.sampled_from([b"GET /d?dn=x HTTP/1.1\r\nHost: x\r\n\r\n", b"x", b"\r\n"]))
    return head.encode("utf-8", "surrogatepass") + b"\r\n" + after


@FUZZ
@given(data=simple_ish())
def test_the_simple_get_shortcut_answers_as_llhttp_framing_does(data: bytes) -> None:
    """Whatever the shortcut takes, llhttp accepts as one whole request and the answer,
    the connection's fate and the hand-off are the same either way."""
    got = run_one(FastHTTP, data)
    assert same(got, run_one(Framed, data))
    check_writes(got[0])
    if scan(data) is not None:
        done: list[bytes] = []

        class Whole:
            def on_url(self, url: bytes) -> None:
                done.append(url)

        parser = httptools.HttpRequestParser(Whole())
        parser.feed_data(data)  # raises on anything llhttp refuses
        assert done == [data.split(b" ")[1]] and parser.should_keep_alive()


@pytest.mark.parametrize(
    "head",
    [
        b"Host: 127.0.0.1:8080\r\n",  # wrk
        b"Host: h\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n",  # curl
        b"Host: h\r\nConnection: Keep-Alive\r\nAccept-Encoding: gzip\r\n"
        b"User-Agent: okhttp/4.12.0\r\n",  # Android
        b"host:h\r\nconnection:keep-alive\t\r\n",
    ],
)
def test_plain_gets_of_common_clients_take_the_shortcut(head: bytes) -> None:
    data = b"GET /d?dn=" + SHOP.encode() + b" HTTP/1.1\r\n" + head + b"\r\n"
    assert scan(data) is not None
    writes, closed, handed = run_one(FastHTTP, data)
    assert len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert not closed and handed is None
    assert same((writes, closed, handed), run_one(Framed, data))


@pytest.mark.parametrize(
    "head",
    [
        b"User-Agent: x\r\nHost: h\r\n",  # Host not first: llhttp frames it
        b"Host: h\r\nConnection: close\r\n",
        b"Host: h\r\nProxy-Connection: close\r\n",
        b"Host: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: h2c\r\n",
        b"Host: h\r\nContent-Length: 0\r\n",
        b"Host: h\r\nX: \x80\r\n",
    ],
)
def test_other_gets_are_framed_by_llhttp(head: bytes) -> None:
    data = b"GET /d?dn=" + SHOP.encode() + b" HTTP/1.1\r\n" + head + b"\r\n"
    assert scan(data) is None


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET   /d?dn=" + SHOP.encode() + b"  HTTP/1.1\r\nHost: x\r\n\r\n", b"200"),
        (b"GET /d?dn=\r\nexpect: HTTP/1.1\r\n\r\n", b"400"),  # HTTP/0.9: no version
        (b"GET /d\r\n\r\n", b"400"),
    ],
)
def test_request_lines_llhttp_takes_are_answered_not_failed(data: bytes, status: bytes) -> None:
    """Runs of spaces and a request line without a version pass llhttp (once a 500)."""
    writes, closed, _ = run_one(FastHTTP, data)
    check_writes(writes)
    assert writes[0].split(b" ")[1] == status
    assert closed == (status != b"200")


@pytest.mark.parametrize("size", [12, 100, 600])
def test_engine_is_silent_only_below_a_header(size: int) -> None:
    engine = DnsEngine(TABLE, CONFIG)
    for n in range(12):
        assert engine.respond(bytes(n), "127.0.0.1", True) is None
    assert engine.respond(bytes(size), "127.0.0.1", True) is not None


@pytest.mark.parametrize(
    "target",
    [
        f"/d?dn={SHOP}&ip=198.51.100.20",
        f"/resolve?name={SHOP}&type=A&ip=198.51.100.20",
        f"/100000/d?host={SHOP}&ip=198.51.100.20",
        "/dns-query?dns=" + b64url(dns.message.make_query(SHOP, "A", id=0).to_wire()),
    ],
)
def test_every_cacheable_dialect_is_kept_by_the_front_cache(target: str) -> None:
    request = f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    key = (target.encode(), "127.0.0.1", None)
    SERVER.cache.pop(key)
    SERVER.repeat.pop((request, "127.0.0.1"))
    SERVER._seen.clear()  # forget what other tests asked
    first, _, _ = run_stream([request])
    if "ip=" in target:  # a target naming its client is kept from its second request on
        assert key not in SERVER.cache
        again, _, _ = run_stream([request])
        assert without_date(again) == without_date(first)
    assert key in SERVER.cache
    second, _, _ = run_stream([request])  # from the front cache, then byte for byte
    third, _, _ = run_stream([request])
    assert (request, "127.0.0.1") in SERVER.repeat
    assert without_date(first) == without_date(second) == without_date(third)
