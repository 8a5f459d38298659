"""The fast path's miss lane for plain ``/d?dn=&ip=`` (``httpdns.dialects.dnspod_miss``):
for any request and any registry state its responses, metrics and front cache are those of
the full path (the dialect function, the lane disabled) byte for byte, it answers only
from current bucket maps (a registry change is seen by the next request), and its memos
are bounded."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from httpdns import bucketmap
from httpdns.config import Config
from httpdns.dialects import Context, resolve_d
from httpdns.dialects.dnspod_miss import MissLane
from httpdns.fasthttp import FastHTTP, FastServer, Limits
from httpdns.hashing import bucket, bucket_bytes
from httpdns.metrics import NodeMetrics, Tally
from httpdns.routes import QUERY_ROUTES, Route
from httpdns.steering import decide
from httpdns.table import A, Client, RoutingTable, parse_ip
from registry import Change, ChangeSet, Datacenter, Endpoint, Release, Service, Snapshot
from tests.fakes import FakeTransport

GOLDEN = json.loads((Path(__file__).parent / "golden" / "steering.json").read_text())
STATE = Snapshot.load(GOLDEN["state"])
NAMES = sorted(STATE.services)
PEER = "203.0.113.50"
HEADERS = b"\r\nhost: test\r\n"
# one client in each region (golden state: mobile 100.64.0.0/10 and 2001:db8:1000::/36,
# north 203.0.113.0/24), to drive their maps
REGION_CLIENTS = ("1.0.0.1", "100.64.1.1", "203.0.113.7", "2001:db8:1000::1", "2001:db8::1")


def _server(snap: Snapshot, lane: bool) -> tuple[FastServer, Route]:
    """A fast server; with the lane, over a table that builds maps from the first miss,
    else over one that never builds any (every decision by ``steering.decide``)."""
    table = RoutingTable(snap, hot_misses=1 if lane else None)
    server = FastServer(Context(table, Config()), QUERY_ROUTES, asyncio.Protocol)
    if not lane:
        server.miss_lanes = {}
    found = server.router.match(b"GET", b"/d")
    assert found is not None
    return server, found[0]


def _drive(table: RoutingTable) -> None:
    """Build every (service, region) map of A answers: misses of other clients (device
    ids) take the map-building slices."""
    for i in range(4 * bucketmap.STEPS):
        for name in table.snapshot.services:
            for ip in REGION_CLIENTS:
                table.resolve(name, A, Client.of(ip, f"drive-{i}"))


def _lane(server: FastServer) -> MissLane:
    return server.miss_lanes[resolve_d]


def _ask(server: FastServer, route: Route, target: bytes) -> tuple[bytes, bytes, bool]:
    head, tail, kept = server.respond(route, None, b"GET", target, HEADERS, b"", PEER)
    return head, tail, kept is not None


def _labels(last: Any) -> Any:
    return (last.dialect, last.rcode, last.answers) if isinstance(last, Tally) else last


_COUNTERS = (
    "httpdns_queries_total",
    "httpdns_answers_total",
    "httpdns_front_cache_hits_total",
    "httpdns_front_cache_misses_total",
)


def _metrics(server: FastServer) -> Any:
    """The query counters as exported (``NodeMetrics.totals``: counted cells folded in)."""
    values = NodeMetrics(server.stats).totals().values
    return {m: values.get(m, {}) for m in _COUNTERS}


def _kept(server: FastServer) -> Any:
    """The front cache: keys, bytes, and the names (services) each entry depends on."""
    return sorted(
        (key, head, tail, tuple(n for n, _ in deps), tally.n)
        for key, (deps, head, tail, tally) in server.cache.items()
    )


def test_bucket_bytes_is_bucket() -> None:
    for i in range(3000):
        key = f"4:{i * 7919}" if i % 3 else f"6:{i * 104729 << 20}"
        assert bucket_bytes(key.encode()) == bucket(key)


def test_the_lane_answers_a_mapped_request_as_the_full_path() -> None:
    fast, route = _server(STATE, lane=True)
    full, _ = _server(STATE, lane=False)
    _drive(fast.table)
    lane = _lane(fast)
    answered = 0
    for i in range(400):
        name = NAMES[i % len(NAMES)]
        ip = f"{i % 200 + 1}.{i % 7}.{i % 256}.9" if i % 5 else f"2001:db8:{i:x}::{i:x}"
        if i % 11 == 0:
            ip = ("100.64.{}.1", "203.0.113.{}", "2001:db8:1000::{:x}")[i % 3].format(i % 250)
        target = f"/d?dn={name}&ip={ip}".encode()
        if i % 2:
            target = f"/d?ip={ip}&dn={name}".encode()
        if i % 3 == 0:
            target += b"&ttl=1"  # the TTL after the addresses
        answered += lane(target.partition(b"?")[2]) is not None
        assert _ask(fast, route, target) == _ask(full, route, target), target
        assert _labels(fast.last) == _labels(full.last)
    assert answered == 400  # every one of them by the lane (maps of every key are built)
    assert b"&ttl=1" in target and b"," in lane(target.partition(b"?")[2])[1]  # type: ignore[index]
    assert _metrics(fast) == _metrics(full)
    assert _metrics(fast)["httpdns_front_cache_misses_total"] == {("dnspod",): 400}
    assert fast.stats.misses == {}  # all of them in the miss cells of the lane's replies
    maps = [fast.table.bucket_map(n, A, r) for n in NAMES for r in fast.table.regions.names]
    choices = sum(len(m.choices) for m in maps if m is not None)
    assert 0 < len(lane.replies) <= min(choices, 400)  # at most one per distinct answer
    query = f"dn={NAMES[0]}&ip=11.2.3.4".encode()
    first, again = lane(query), lane(query)
    assert first is again  # encoded once


def test_a_request_asked_again_is_kept_and_then_answered_by_the_front_cache() -> None:
    fast, route = _server(STATE, lane=True)
    full, _ = _server(STATE, lane=False)
    _drive(fast.table)
    target = f"/d?dn={NAMES[2]}&ip=100.64.9.9".encode()
    for n in range(4):
        got = _ask(fast, route, target)
        assert got == _ask(full, route, target)
        assert got[2] == (n >= 2)  # kept on its second request, a hit from the third
    assert _kept(fast) == _kept(full) and len(fast.cache) == 1
    deps = fast.cache.items()[0][1][0]
    assert deps == ((NAMES[2], fast.table.by_name[NAMES[2]]),)
    assert _metrics(fast) == _metrics(full)


def test_a_registry_change_is_seen_by_the_next_request() -> None:
    fast, route = _server(STATE, lane=True)
    _drive(fast.table)
    lane = _lane(fast)
    name = "quotes.golden.example"
    clients = [f"198.51.{i}.{i + 1}" for i in range(40)]
    queries = [f"dn={name}&ip={ip}".encode() for ip in clients]
    assert all(lane(q) is not None for q in queries)
    before = {q: _ask(fast, route, b"/d?" + q)[1] for q in queries}
    assert any(b"10.2." in body for body in before.values())  # some go to the cloud
    # every client to the idc now: the map is stale at once, the lane steps aside
    traffic = {"default": {"idc": 100}}
    svc = STATE.services[name]
    new, effective = STATE.apply(
        [Change.put(Service(name, traffic, svc.access, svc.ttl, svc.answers, svc.all_down))], 2
    )
    fast.table.update(new, ChangeSet(2, effective).services)
    assert all(lane(q) is None for q in queries)
    compiled = fast.table.services[name]
    for q, ip in zip(queries, clients, strict=True):
        body = _ask(fast, route, b"/d?" + q)[1].partition(b"\r\n\r\n")[2]
        want = decide(compiled, 4, "default", fast.table.bucket(Client.of(ip)))
        assert body == ";".join(want.addresses).encode() and want.dc == "idc"
    _drive(fast.table)  # rebuilt from the new compiled service: the lane answers again
    assert all(lane(q) is not None for q in queries)
    assert all(b"10.2." not in lane(q)[1] for q in queries)  # type: ignore[index]
    # a service removed: the lane steps aside and the full path says it is not served
    gone, effective = new.apply([Change.delete("service", name)], 3)
    fast.table.update(gone, ChangeSet(3, effective).services)
    assert all(lane(q) is None for q in queries)
    assert _ask(fast, route, b"/d?" + queries[0])[1].endswith(b"\r\n\r\n")  # empty body
    assert fast.last == ("dnspod", "NXDOMAIN", ())


def test_the_replies_memo_is_bounded() -> None:
    fast, route = _server(STATE, lane=True)
    _drive(fast.table)
    lane = MissLane(fast.table, fast.stats, _lane(fast).frame, "dnspod", True, max_replies=3)
    fast.miss_lanes[resolve_d] = lane
    full, _ = _server(STATE, lane=False)
    for i in range(200):
        target = f"/d?dn={NAMES[i % 4]}&ip=11.{i}.0.1".encode()
        assert _ask(fast, route, target) == _ask(full, route, target)
    assert len(lane.replies) == 3
    assert _metrics(fast) == _metrics(full)


# -- any request, any registry state ---------------------------------------------------------

# the plain shape (a served name, an address, nothing else) is drawn most often
_IPS = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.sampled_from(REGION_CLIENTS),
    st.sampled_from(["100.64.3.4", "203.0.113.200", "2001:db8:1000::7", "::ffff:100.64.0.9"]),
    st.sampled_from(["1.2.3", "1.2.3.4.5", "999.1.1.1", "01.2.3.4", "::g", "1:2", "", "a.b"]),
    st.text(alphabet="0123456789.:abcdefABCDEF", max_size=16),
)
_DNS = st.one_of(
    st.sampled_from(NAMES),
    st.sampled_from(NAMES),
    st.sampled_from(NAMES),
    st.sampled_from(NAMES).map(str.upper),
    st.sampled_from(NAMES).map(lambda n: n + "."),
    st.sampled_from(["unknown.golden.example", "golden.example", "example", "new.golden.example"]),
    st.sampled_from(["a..b", "-x.example", "x" * 70 + ".example", "", "under_score.example"]),
    st.text(alphabet="abc.-_0%2E", max_size=12),
)
_EXTRA = st.just([]) | st.just([]) | st.lists(
    st.sampled_from(
        ["ttl=1", "type=aaaa", "type=a", "clientip=1", "uid=dev1", "dn=other.example", "ip=",
         "query=1", "ip=1.1.1.1", "x", "&", "alg=aes", "id=nope"]
    ),
    max_size=2,
)  # fmt: skip


def _change(snap: Snapshot, kind: int, pick: int) -> list[Change]:
    """One registry change of a few kinds: weights, a drained datacenter, an unhealthy
    endpoint, a canary share, a service added or removed."""
    names = sorted(snap.services)
    name = names[pick % len(names)] if names else "new.golden.example"
    if kind == 0 and name in snap.services:
        svc = snap.services[name]
        traffic = {"default": {"idc": pick % 5, "cloud": 3 - pick % 3}}
        return [Change.put(Service(name, traffic, svc.access, svc.ttl, svc.answers, svc.all_down))]
    if kind == 1:
        dc = sorted(snap.datacenters)[pick % len(snap.datacenters)]
        was = snap.datacenters[dc]
        return [Change.put(Datacenter(dc, was.kind, was.writable, not was.drained))]
    if kind == 2 and name in snap.services:
        eps = sorted(snap.endpoints_of(name).values(), key=lambda e: e.id)
        if eps:
            e = eps[pick % len(eps)]
            return [Change.put(Endpoint(name, e.id, e.dc, e.address, healthy=not e.healthy))]
    if kind == 3 and "quotes.golden.example" in snap.services:
        percent = float(pick % 4 * 25)
        return [Change.put(Release("quotes.golden.example", "v1", "v2", percent))]
    if kind == 4 and name in snap.services and len(names) > 1:
        return [Change.delete("service", name)]
    if "new.golden.example" not in snap.services:
        return [
            Change.put(Service("new.golden.example", {"default": {"idc": 1}})),
            Change.put(Endpoint("new.golden.example", "e1", "idc", "10.9.0.1")),
            Change.put(Endpoint("new.golden.example", "e2", "idc", "2001:db8:9::1")),
        ]
    return []


_STEP = st.one_of(
    st.tuples(st.just("ask"), _DNS, _IPS, st.booleans(), _EXTRA),
    st.tuples(st.just("change"), st.integers(0, 5), st.integers(0, 99), st.booleans()),
)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(_STEP, min_size=1, max_size=25))
def test_lane_and_full_path_agree_for_any_requests_and_registry_states(steps: list[Any]) -> None:
    fast, route = _server(STATE, lane=True)
    full, _ = _server(STATE, lane=False)
    _drive(fast.table)
    snap, revision, asked = STATE, 1, []
    for step in steps:
        if step[0] == "change":
            _, kind, pick, drive = step
            changes = _change(snap, kind, pick)
            if not changes:
                continue
            revision += 1
            snap, effective = snap.apply(changes, revision)
            for server in (fast, full):
                server.table.update(snap, ChangeSet(revision, effective).services)
            if drive:
                _drive(fast.table)
            continue
        _, dn, ip, ip_first, extra = step
        params = [f"ip={ip}", f"dn={dn}"] if ip_first else [f"dn={dn}", f"ip={ip}"]
        target = ("/d?" + "&".join(params + extra)).encode()
        if asked and len(asked) % 3 == 0:
            target = asked[len(asked) // 2]  # asked again: the front cache's turn
        asked.append(target)
        got = _ask(fast, route, target)
        assert got == _ask(full, route, target), target
        assert _labels(fast.last) == _labels(full.last)
    assert _metrics(fast) == _metrics(full)
    assert _kept(fast) == _kept(full)


def test_parse_ip_is_what_the_lane_reads() -> None:
    # the lane parses addresses with the full path's parser: v4-mapped IPv6 is IPv4
    assert parse_ip("::ffff:100.64.0.9") == (0x64400009, 4)
    fast, _ = _server(STATE, lane=True)
    _drive(fast.table)
    lane = _lane(fast)
    mapped = lane(b"dn=quotes.golden.example&ip=::ffff:100.64.0.9")
    plain = lane(b"dn=quotes.golden.example&ip=100.64.0.9")
    assert mapped is not None and mapped == plain


def _wire(server: FastServer, data: bytes) -> bytes:
    """What a connection writes for the whole request ``data`` (Date left out)."""
    conn = FastHTTP(server)
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(data)
    assert len(transport.writes) == 1 and not transport.closed
    return b"".join(x for x in transport.writes[0].split(b"\r\n") if not x.startswith(b"Date:"))


def test_a_plain_get_takes_the_lane_before_the_front_end_and_is_kept_byte_for_byte() -> None:
    fast, _ = _server(STATE, lane=True)
    full, _ = _server(STATE, lane=False)
    full.direct = {}
    _drive(fast.table)
    requests = [
        f"GET /d?dn={NAMES[i % len(NAMES)]}&ip=100.64.{i}.9 HTTP/1.1\r\nHost: t\r\n\r\n".encode()
        for i in range(20)
    ]
    lane = _lane(fast)
    for n in range(4):
        for data in requests:
            assert _wire(fast, data) == _wire(full, data)
            if n < 2:  # (a byte-for-byte hit sets no ``last``: only sampled reads do)
                assert _labels(fast.last) == _labels(full.last)
        # kept byte for byte from the second sighting (the full path: the front cache
        # first, then the bytes on its hit), counted alike all along
        assert len(fast.repeat) == (0 if n == 0 else 20)
        assert len(fast.cache) == 0  # the lane's answers never went through the front cache
        assert _metrics(fast) == _metrics(full)
    hits = _metrics(fast)["httpdns_front_cache_hits_total"]
    assert sum(hits.values()) == 40  # the third and fourth rounds
    assert len(lane.replies) > 0
    # every repeat entry shares its value with the lane's encoded reply: none adds an
    # object the garbage collector visits
    shared = {id(done[2][4]) for _, done in lane.replies.items()}
    assert all(id(value) in shared for _, value in fast.repeat.items())


def test_with_a_rate_limit_every_get_goes_through_the_front_end() -> None:
    table = RoutingTable(STATE, hot_misses=1)
    fast = FastServer(Context(table, Config()), QUERY_ROUTES, asyncio.Protocol, Limits(http_rate=1))
    _drive(table)
    assert fast.direct == {} and fast.miss_lanes
    data = f"GET /d?dn={NAMES[0]}&ip=100.64.1.9 HTTP/1.1\r\nHost: t\r\n\r\n".encode()
    assert _wire(fast, data).startswith(b"HTTP/1.1 200")
    assert _wire(fast, data).startswith(b"HTTP/1.1 429")  # the second within the second
