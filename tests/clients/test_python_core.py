"""Pure logic of the Python client, with a fake clock and (for the resolvers) a fake
transport: cache states, staleness bound, refresh-ahead, negative entries, backoff,
signing, dialect parsing, the HTTP wire helpers. No network here; the integration tests
against a real server are in test_python_client.py."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import threading
import weakref
from collections.abc import Callable

import pytest
from httpdns_client import (
    AsyncResolver,
    ErrorEvent,
    LookupEvent,
    RequestEvent,
    RequestRejected,
    ResolveError,
    Resolver,
    ServerError,
    SignatureError,
    sign,
)
from httpdns_client.core import DEAD, FRESH, STALE, Cache, ServerPool, normalize_name
from httpdns_client.core import Server as ServerSpec
from httpdns_client.protocol import (
    Protocol,
    Request,
    http_request,
    parse_http_response,
    parse_server,
    reply_status,
    response_complete,
)

from .conftest import source_of, wait_for


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- cache -----------------------------------------------------------------------------------


def test_cache_fresh_then_stale_then_dead() -> None:
    cache = Cache(max_stale=60)
    entry = cache.store("a.example", "A", ["192.0.2.1"], 20, now=100.0)
    assert entry.state(100.0) == FRESH and entry.state(119.9) == FRESH
    assert entry.state(120.0) == STALE and entry.state(179.9) == STALE
    assert entry.state(180.0) == DEAD
    assert source_of(cache.peek("a.example", "A", 110.0)) == "cache"
    assert source_of(cache.peek("a.example", "A", 150.0)) == "stale"
    assert cache.peek("a.example", "A", 181.0) is None


def test_negative_entries_are_cached_but_never_stale() -> None:
    cache = Cache(max_stale=300)
    entry = cache.store("nope.example", "A", [], 30, now=0.0)
    assert entry.state(29.0) == FRESH
    assert entry.state(30.0) == DEAD
    assert entry.cached.negative and entry.cached.addresses == ()


def test_ttl_is_clamped() -> None:
    cache = Cache(min_ttl=5, max_ttl=60)
    assert cache.store("a.example", "A", ["192.0.2.1"], 1, 0.0).expires_at == 5.0
    assert cache.store("b.example", "A", ["192.0.2.1"], 3600, 0.0).expires_at == 60.0


def test_refresh_ahead_at_75_percent_only_for_names_in_use() -> None:
    cache = Cache()
    used = cache.store("used.example", "A", ["192.0.2.1"], 20, now=0.0)
    cache.store("idle.example", "A", ["192.0.2.2"], 20, now=0.0)
    used.used = True
    assert cache.next_due() == 15.0
    assert cache.due(14.9) == []
    assert [e.key for e in cache.due(15.0)] == [("used.example", "A")]
    assert cache.due(16.0) == []  # each entry is due once
    assert cache.next_due() is None


def test_refresh_claim_and_retry_after_failure() -> None:
    cache = Cache(retry=2.0)
    entry = cache.store("a.example", "A", ["192.0.2.1"], 20, now=0.0)
    assert not cache.refresh_due(entry, 14.0) and cache.refresh_due(entry, 15.0)
    cache.start_refresh(entry)
    assert not cache.refresh_due(entry, 1e9)
    cache.refresh_failed(entry, 25.0)
    assert not cache.refresh_due(entry, 26.9) and cache.refresh_due(entry, 27.0)


def test_eviction_prefers_dead_entries() -> None:
    cache = Cache(max_entries=2, max_stale=0)
    cache.store("old.example", "A", ["192.0.2.1"], 1, now=0.0)
    cache.store("new.example", "A", ["192.0.2.2"], 100, now=0.0)
    cache.store("third.example", "A", ["192.0.2.3"], 100, now=5.0)
    assert set(cache.entries) == {("new.example", "A"), ("third.example", "A")}


def test_normalize_name() -> None:
    assert normalize_name(" Quotes.Demo.Example. ") == "quotes.demo.example"
    for bad in ("", ".", "a..b", "http://x", "a b"):
        with pytest.raises(ValueError):
            normalize_name(bad)


# -- servers ---------------------------------------------------------------------------------


def _servers(*urls: str) -> list[ServerSpec]:
    return [parse_server(u) for u in urls]


def test_backoff_doubles_up_to_the_cap_and_resets_on_success() -> None:
    a, b = _servers("http://192.0.2.1", "http://192.0.2.2:8053")
    pool = ServerPool([a, b], backoff=1.0, max_backoff=4.0)
    assert pool.candidates(0.0) == [a, b]
    assert pool.failed(a, 0.0) == 1.0
    assert pool.candidates(0.5) == [b]
    assert pool.candidates(1.0) == [a, b]  # tried again, in order
    assert pool.failed(a, 1.0) == 3.0
    assert pool.failed(a, 3.0) == 7.0
    assert pool.failed(a, 7.0) == 11.0  # capped at 4 s
    pool.succeeded(a)
    assert pool.candidates(7.0) == [a, b]
    assert pool.states(0.0)[0].failures == 0


def test_parse_server() -> None:
    s = parse_server("203.0.113.10:8053")
    assert (s.scheme, s.host, s.port, s.host_header) == (
        "http",
        "203.0.113.10",
        8053,
        "203.0.113.10:8053",
    )
    s = parse_server("https://[2001:db8::1]/dns/", tls_hostname="httpdns.example.com")
    assert (s.host, s.port, s.base_path, s.host_header) == (
        "2001:db8::1", 443, "/dns", "httpdns.example.com",
    )  # fmt: skip
    with pytest.raises(ValueError):
        parse_server("ftp://192.0.2.1")


# -- signing and dialects --------------------------------------------------------------------


def test_signature_is_md5_of_host_secret_expiry() -> None:
    expected = hashlib.md5(b"quotes.demo.example-demo-secret-1700000300").hexdigest()
    assert sign("quotes.demo.example", "demo-secret", 1700000300) == expected


def test_request_paths() -> None:
    d = Protocol("d", uid="device-1")
    assert d.request("AAAA", "a.example").path == "/d?dn=a.example&type=aaaa&ttl=1&uid=device-1"
    assert Protocol("json").request("A", "a.example").path == "/resolve?name=a.example&type=A"
    signed = Protocol("aliyun", account="100000", secret="s", wall_clock=lambda: 1000.0)
    req = signed.request("A", "a.example")
    assert (
        req.path == f"/100000/sign_d?host=a.example&query=4&t=1300&s={sign('a.example', 's', 1300)}"
    )
    batch = Protocol("aliyun", account="100000").requests(
        "AAAA", [f"n{i}.example" for i in range(7)]
    )
    assert [len(r.names) for r in batch] == [5, 2]
    assert batch[0].path.startswith("/100000/resolve?host=n0.example,n1.example,")
    assert batch[0].path.endswith("&query=6")
    assert len(Protocol("d").requests("A", ["a.example", "b.example"])) == 2


@pytest.mark.parametrize(
    ("dialect", "body", "addresses", "ttl"),
    [
        ("d", b"192.0.2.1;192.0.2.2,20", ("192.0.2.1", "192.0.2.2"), 20.0),
        ("d", b"192.0.2.1,20|203.0.113.7", ("192.0.2.1",), 20.0),
        ("d", b"2001:db8::1;2001:db8::2,30", ("2001:db8::1", "2001:db8::2"), 30.0),
        ("d", b"", (), 30.0),
        ("d", b"192.0.2.1", ("192.0.2.1",), 30.0),
        (
            "json",
            json.dumps(
                {
                    "Status": 0,
                    "Answer": [
                        {"name": "a.example.", "type": 1, "TTL": 20, "data": "192.0.2.1"},
                        {"name": "a.example.", "type": 5, "TTL": 10, "data": "cname.example."},
                        {"name": "a.example.", "type": 1, "TTL": 15, "data": "192.0.2.2"},
                    ],
                }
            ).encode(),
            ("192.0.2.1", "192.0.2.2"),
            15.0,
        ),
        (
            "json",
            json.dumps(
                {
                    "Status": 3,
                    "Authority": [
                        {"type": 6, "TTL": 30, "data": "ns1.x. h.x. 1 3600 600 86400 10"}
                    ],
                }
            ).encode(),
            (),
            10.0,
        ),
        ("json", b'{"Status": 5}', (), 30.0),
        (
            "aliyun",
            b'{"host":"a.example","ips":["192.0.2.1"],"ipsv6":[],"ttl":20,"origin_ttl":20}',
            ("192.0.2.1",),
            20.0,
        ),
    ],
)
def test_parse_answers(dialect: str, body: bytes, addresses: tuple[str, ...], ttl: float) -> None:
    proto = Protocol(dialect, account="100000" if dialect == "aliyun" else None)
    record = proto.parse(Request("/x", "A", ("a.example",)), 200, body, "s")["a.example"]
    assert (record.addresses, record.ttl) == (addresses, ttl)


def test_parse_aliyun_batch_by_host() -> None:
    body = json.dumps({"dns": [
        {"host": "b.example", "ips": [], "ipsv6": ["2001:db8::2"], "ttl": 5},
        {"host": "a.example", "ips": [], "ipsv6": ["2001:db8::1"], "ttl": 9},
    ]}).encode()  # fmt: skip
    proto = Protocol("aliyun", account="100000")
    out = proto.parse(Request("/x", "AAAA", ("a.example", "b.example")), 200, body, "s")
    assert out["a.example"].addresses == ("2001:db8::1",) and out["b.example"].ttl == 5.0


@pytest.mark.parametrize(
    ("dialect", "body", "status"),
    [
        ("json", b'{"Status": 0, "Answer": []}', "NOERROR"),
        ("json", b'{"Status": 2}', "SERVFAIL"),
        ("json", b'{"Status": 3, "Authority": []}', "NXDOMAIN"),
        ("json", b'{"Status": 5}', "REFUSED"),
        ("json", b'{"Status": 9}', "9"),
        ("d", b"", "NOERROR"),  # d and aliyun have no status: a name not served is empty
        ("aliyun", b'{"host":"a.example","ips":[],"ttl":30}', "NOERROR"),
    ],
)
def test_reply_status(dialect: str, body: bytes, status: str) -> None:
    assert reply_status(dialect, body) == status


@pytest.mark.parametrize("body", [b"", b"[]", b'{"Answer": []}', b'{"Status": "x"}', b"\xff"])
def test_reply_status_unreadable(body: bytes) -> None:
    with pytest.raises(ValueError):
        reply_status("json", body)


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (
            403,
            b'{"error":"invalid_signature","detail":"no","code":"InvalidSignature"}',
            SignatureError,
        ),
        (
            403,
            b'{"error":"signature_expired","detail":"old","code":"SignatureExpired"}',
            SignatureError,
        ),
        (400, b'{"error":"bad_request","detail":"dn: bad"}', RequestRejected),
        (404, b'{"error":"not_found","detail":"unknown account"}', RequestRejected),
        (500, b'{"error":"internal"}', ServerError),
        (503, b"busy", ServerError),
        (429, b"slow down", ServerError),
        (200, b"not-an-ip,20", ServerError),
        (200, b"192.0.2.1,soon", ServerError),
    ],
)
def test_parse_errors(status: int, body: bytes, error: type[Exception]) -> None:
    proto = Protocol("d")
    with pytest.raises(error) as info:
        proto.parse(Request("/x", "A", ("a.example",)), status, body, "http://s")
    assert type(info.value) is error


@pytest.mark.parametrize(
    ("dialect", "body"),
    [
        ("aliyun", b"[1, 2]"),
        ("aliyun", b'"x"'),
        ("json", b"[]"),
        ("json", b'{"Status": 0, "Answer": [1]}'),
    ],
)
def test_parse_wrong_json_shape_is_a_server_error(dialect: str, body: bytes) -> None:
    proto = Protocol(dialect, account="100000" if dialect == "aliyun" else None)
    with pytest.raises(ServerError, match="unreadable answer"):
        proto.parse(Request("/x", "A", ("a.example",)), 200, body, "http://s")


def test_signature_error_message_is_clear() -> None:
    proto = Protocol("aliyun", account="100000", secret="wrong")
    body = b'{"error":"invalid_signature","detail":"does not match","code":"InvalidSignature"}'
    with pytest.raises(SignatureError) as info:
        proto.parse(Request("/x", "A", ("a.example",)), 403, body, "http://s")
    text = str(info.value)
    assert "InvalidSignature" in text and "secret of account 100000" in text


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="account"):
        Protocol("aliyun")
    with pytest.raises(ValueError, match="aliyun"):
        Protocol("d", secret="s")
    with pytest.raises(ValueError, match="dialect"):
        Protocol("doh")
    with pytest.raises(ValueError, match="server"):
        Resolver([])


# -- HTTP wire -------------------------------------------------------------------------------


def test_http_request_and_response() -> None:
    raw = http_request(parse_server("http://192.0.2.1:8053/base"), "/d?dn=a")
    assert raw.startswith(b"GET /base/d?dn=a HTTP/1.1\r\nHost: 192.0.2.1:8053\r\n")
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    assert response_complete(resp) and not response_complete(resp[:-1])
    assert parse_http_response(resp) == (200, b"hello")
    chunked = b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    assert response_complete(chunked)
    assert parse_http_response(chunked) == (403, b"abcde")
    for bad in (
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort",
        b"garbage\r\n\r\n",
        b"HTTP/1.1",
    ):
        with pytest.raises(ValueError):
            parse_http_response(bad)


# -- resolvers with a fake transport and a fake clock ----------------------------------------


class FakeServer:
    """Answers ``/d`` like the real server from a table; counts requests; can fail."""

    def __init__(self, table: dict[str, tuple[list[str], int]]) -> None:
        self.table = table
        self.requests: list[str] = []
        self.down = False
        self.gate: threading.Event | None = None

    def answer(self, path: str) -> tuple[int, bytes]:
        self.requests.append(path)
        if self.down:
            raise ConnectionRefusedError("connection refused")
        name = path.split("dn=")[1].split("&")[0]
        addrs, ttl = self.table.get(name, ([], 0))
        return 200, (f"{';'.join(addrs)},{ttl}" if addrs else "").encode()

    def sync(self, server: ServerSpec, path: str, timeout: float) -> tuple[int, bytes]:
        if self.gate is not None:
            self.gate.wait(timeout)
        return self.answer(path)

    async def aio(self, server: ServerSpec, path: str, timeout: float) -> tuple[int, bytes]:
        return self.answer(path)


def _resolver(fake: FakeServer, clock: FakeClock, **kw: object) -> Resolver:
    return Resolver(["http://192.0.2.53"], transport=fake.sync, clock=clock, **kw)  # type: ignore[arg-type]


def test_resolver_cache_stale_and_staleness_bound() -> None:
    fake = FakeServer({"a.example": (["192.0.2.1"], 20)})
    clock = FakeClock()
    errors: list[ErrorEvent] = []
    with _resolver(fake, clock, max_stale=60, on_error=errors.append) as r:
        assert r.resolve("a.example").source == "server"
        assert r.resolve("a.example").source == "cache"
        assert r.resolve("A.Example.").source == "cache"  # normalised on the slow path
        assert len(fake.requests) == 1
        fake.down = True
        clock.advance(25)
        stale = r.resolve("a.example")
        assert (stale.source, stale.addresses) == ("stale", ("192.0.2.1",))
        _wait(lambda: errors, "the refresh failure")
        assert errors[0].stage == "refresh" and errors[0].names == ("a.example",)
        clock.advance(60)  # 85 s after the fetch: past TTL + max_stale
        with pytest.raises(ResolveError):
            r.resolve("a.example")  # not served stale any more; system fails for .example


def test_resolver_refresh_replaces_stale_answer() -> None:
    fake = FakeServer({"a.example": (["192.0.2.1"], 20)})
    clock = FakeClock()
    with _resolver(fake, clock) as r:
        r.resolve("a.example")
        fake.table["a.example"] = (["192.0.2.9"], 20)
        clock.advance(21)
        assert r.resolve("a.example").source == "stale"
        _wait(lambda: source_of(r.peek("a.example")) == "cache", "refresh")
        answer = r.resolve("a.example")
        assert (answer.source, answer.addresses) == ("cache", ("192.0.2.9",))


def test_resolver_stale_answer_does_not_wait_for_a_slow_server() -> None:
    fake = FakeServer({"a.example": (["192.0.2.1"], 20)})
    clock = FakeClock()
    with _resolver(fake, clock, timeout=5.0) as r:
        r.resolve("a.example")
        fake.gate = threading.Event()  # the server now hangs until released
        clock.advance(21)
        assert r.resolve("a.example").source == "stale"
        assert r.resolve("a.example").source == "stale"  # one refresh at a time
        fake.gate.set()
        _wait(lambda: len(fake.requests) == 2, "the refresh")


def test_resolver_negative_answers_are_cached() -> None:
    fake = FakeServer({})
    clock = FakeClock()
    with _resolver(fake, clock, negative_ttl=30) as r:
        first = r.resolve("nope.example")
        assert first.negative and first.source == "server"
        assert r.resolve("nope.example").source == "cache"
        assert len(fake.requests) == 1
        clock.advance(31)
        assert r.resolve("nope.example").source == "server"  # negative: never stale
        assert len(fake.requests) == 2


def test_resolver_refresh_ahead_timer() -> None:
    fake = FakeServer({"a.example": (["192.0.2.1"], 20), "b.example": (["192.0.2.2"], 20)})
    clock = FakeClock()
    with _resolver(fake, clock) as r:
        r.resolve_many(["a.example", "b.example"])
        r.resolve("a.example")  # a is in use, b is not
        clock.advance(15)  # 75 % of the TTL
        r._wake.set()  # the timer sleeps on the real clock: wake it
        _wait(lambda: len(fake.requests) == 3, "the refresh-ahead")
        assert fake.requests[-1].startswith("/d?dn=a.example")
        assert r.resolve("a.example").expires_at == clock.now + 20


def test_resolver_hooks_report_latency_source_and_errors() -> None:
    fake = FakeServer({"a.example": (["192.0.2.1"], 20)})
    lookups: list[LookupEvent] = []
    requests: list[RequestEvent] = []

    def broken(event: object) -> None:
        raise RuntimeError("a broken hook must not break lookups")

    with _resolver(
        fake, FakeClock(), on_lookup=lookups.append, on_request=requests.append, on_error=broken
    ) as r:
        r.resolve("a.example")
        r.resolve("a.example")
        with pytest.raises(ValueError):
            r.resolve("not a name")
    assert [e.source for e in lookups] == ["server", "cache", None]
    assert all(e.latency >= 0 for e in lookups) and isinstance(lookups[2].error, ValueError)
    assert len(requests) == 1 and requests[0].status == 200 and not requests[0].background


def test_resolver_concurrent_misses_share_one_request() -> None:
    fake = FakeServer({"a.example": (["192.0.2.1"], 20)})
    fake.gate = threading.Event()
    with _resolver(fake, FakeClock()) as r:
        results: list[str] = []
        threads = [
            threading.Thread(target=lambda: results.append(r.resolve("a.example").source))
            for _ in range(5)
        ]
        for t in threads:
            t.start()
        _wait(lambda: len(r._inflight) == 1, "the first request")
        fake.gate.set()
        for t in threads:
            t.join(5)
    assert results == ["server"] * 5 and len(fake.requests) == 1


async def test_async_resolver_stale_and_refresh() -> None:
    fake = FakeServer({"a.example": (["192.0.2.1"], 20)})
    clock = FakeClock()
    errors: list[ErrorEvent] = []
    async with AsyncResolver(
        ["http://192.0.2.53"], transport=fake.aio, clock=clock, on_error=errors.append
    ) as r:
        assert (await r.resolve("a.example")).source == "server"
        assert (await r.resolve("a.example")).source == "cache"
        fake.down = True
        clock.advance(21)
        assert (await r.resolve("a.example")).source == "stale"
        await _await(lambda: bool(errors))
        assert errors[0].stage == "refresh"
        fake.down = False
        fake.table["a.example"] = (["192.0.2.9"], 20)
        clock.advance(1.5)  # past the retry interval (backoff, 1 s)
        assert (await r.resolve("a.example")).source == "stale"
        await _await(lambda: source_of(r.peek("a.example")) == "cache")
        assert (await r.resolve("a.example")).addresses == ("192.0.2.9",)


def _wait(predicate: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    wait_for(predicate, timeout, what)


async def _await(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def test_a_resolver_dropped_without_close_is_collected() -> None:
    fake = FakeServer({"a.example": (["192.0.2.1"], 20)})
    r = _resolver(fake, FakeClock())
    r.resolve("a.example")
    timer = r._timer
    ref = weakref.ref(r)
    del r
    gc.collect()
    assert ref() is None
    timer.join(5)
    assert not timer.is_alive()


def test_invalidate_drops_a_cached_answer() -> None:
    fake = FakeServer({"a.example": (["192.0.2.1"], 20)})
    with _resolver(fake, FakeClock()) as r:
        r.resolve("a.example")
        assert r.invalidate("A.example.") and not r.invalidate("a.example")
        assert r.peek("a.example") is None
        assert r.resolve("a.example").source == "server"
        assert len(fake.requests) == 2


def test_ip_literals_answer_themselves() -> None:
    fake = FakeServer({})
    with _resolver(fake, FakeClock()) as r:
        assert r.resolve("192.0.2.7").addresses == ("192.0.2.7",)
        assert r.resolve("192.0.2.7", "AAAA").addresses == ()
        six = r.resolve("[2001:DB8::0:1]", "AAAA")
        assert (six.addresses, six.source) == (("2001:db8::1",), "system")
        assert r.resolve_many(["192.0.2.8", "2001:db8::2"])["192.0.2.8"].addresses == ("192.0.2.8",)
    assert fake.requests == []
    with pytest.raises(ValueError):
        normalize_name("a:b")
