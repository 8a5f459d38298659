"""``/metrics``: the counters of a real ``httpdns serve`` (fast HTTP path, DNS listener, aiohttp
path), what answers were counted against what clients received, folding of evicted cache
entries, the totals of several workers, and the pure pieces (rcode labels, totals merge)."""

from __future__ import annotations

import base64
import gc
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from httpdns.cache import BoundedCache
from httpdns.dnsserver import DnsEngine
from httpdns.metrics import (
    SAMPLE,
    SPECS,
    Exposition,
    NodeMetrics,
    QueryStats,
    Totals,
    WorkerFiles,
    rcode_of,
)
from httpdns.node import Node as InProcessNode
from tests.servers import Node, free_udp_tcp_port, seed_test_registry, wait_until

from .conftest import PAY, SHOP, SHOP_CANARY_V4, dc_of, make_config

Sample = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Sample:
    """Every sample of an exposition: (name, sorted labels) -> value."""
    out: Sample = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape(base: str) -> Sample:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(base + "/metrics", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse(r.read().decode())


def value(sample: Sample, name: str, **labels: str) -> float:
    return sample.get((name, tuple(sorted(labels.items()))), 0.0)


def total(sample: Sample, name: str, **labels: str) -> float:
    """Sum over every sample of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in sample.items() if n == name and want <= set(ls))


def get(base: str, path: str) -> tuple[int, bytes]:
    """One GET on a new connection (byte-identical requests: the repeat cache sees them)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(base + path, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
        exc.close()
        return status, body


MARKER = (
    "/dns-query?dns="
    + base64.urlsafe_b64encode(dns.message.make_query("marker.invalid", "A").to_wire())
    .rstrip(b"=")
    .decode()
)  # out of zone: the only doh query answered REFUSED in this module
markers_sent: dict[str, int] = {}


def fresh_scrape(base: str) -> Sample:
    """A scrape that counts every request made before this call.

    The node reuses a rendering for ``RENDER_TTL`` seconds, so a plain scrape may predate the
    last requests of the test before. A marker query is counted (``doh``/``REFUSED``, which
    nothing else in this module makes); once a scrape shows it, that rendering came after
    every earlier request.
    """
    assert get(base, MARKER)[0] == 200
    markers_sent[base] = want = markers_sent.get(base, 0) + 1
    found: list[Sample] = []

    def seen() -> bool:
        s = scrape(base)
        found[:] = [s]
        return value(s, "httpdns_queries_total", dialect="doh", rcode="REFUSED") == want

    wait_until(seen, 15, "the marker query in a scrape")
    return found[0]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, int]]:
    tmp = tmp_path_factory.mktemp("metrics")
    dns_port = free_udp_tcp_port()
    node = Node(
        f"sqlite:///{tmp}/registry.db",
        tmp,
        args=("--dns", f"127.0.0.1:{dns_port}", "--zone", "example.org"),
    )
    node.start()
    try:
        seed_test_registry(node.url)
        yield node, dns_port
    finally:
        node.stop()


def test_fast_path_counts_every_query_and_every_cache_hit(server: tuple[Node, int]) -> None:
    node, _ = server
    before = fresh_scrape(node.url)
    path = f"/d?dn={SHOP}&ip=203.0.113.77"
    bodies = {get(node.url, path)[1] for _ in range(6)}
    # one answer, counted 6 times: computed twice (a target naming its client is kept from
    # its second request on), then 4 from the caches
    assert len(bodies) == 1
    assert get(node.url, "/d?dn=nothing.example.org&ip=203.0.113.77")[0] == 200
    assert get(node.url, "/d")[0] == 400

    def counted() -> bool:
        after = scrape(node.url)
        d = lambda name, **kw: total(after, name, **kw) - total(before, name, **kw)  # noqa: E731
        return (
            d("httpdns_queries_total", dialect="dnspod", rcode="NOERROR") == 6
            and d("httpdns_queries_total", dialect="dnspod", rcode="NXDOMAIN") == 1
            and d("httpdns_queries_total", dialect="dnspod", rcode="http_400") == 1
            and d("httpdns_front_cache_hits_total", dialect="dnspod") == 4
            and d("httpdns_front_cache_misses_total", dialect="dnspod") == 4
            and d("httpdns_answers_total", service=SHOP) == 6
            and d("httpdns_client_errors_total", kind="bad_request") >= 1
        )

    wait_until(counted, 15, "the dnspod counters")


def test_every_dialect_has_its_label(server: tuple[Node, int]) -> None:
    node, dns_port = server
    before = fresh_scrape(node.url)
    assert get(node.url, f"/100000/d?host={SHOP}&ip=203.0.113.78")[0] == 200
    assert get(node.url, f"/resolve?name={SHOP}&type=A&ip=203.0.113.78")[0] == 200
    assert get(node.url, "/resolve?name=nothing.example.org&ip=203.0.113.78")[0] == 200
    q = dns.message.make_query(PAY, "A")
    wire = q.to_wire()
    doh = base64.urlsafe_b64encode(wire).rstrip(b"=").decode()
    assert get(node.url, f"/dns-query?dns={doh}")[0] == 200
    for _ in range(3):
        dns.query.udp(dns.message.make_query(PAY, "A"), "127.0.0.1", port=dns_port, timeout=2)
    dns.query.tcp(dns.message.make_query("elsewhere.test", "A"), "127.0.0.1", port=dns_port)

    def counted() -> bool:
        after = scrape(node.url)

        def d(**kw: str) -> float:
            return total(after, "httpdns_queries_total", **kw) - total(
                before, "httpdns_queries_total", **kw
            )

        return (
            d(dialect="aliyun", rcode="NOERROR") == 1
            and d(dialect="google", rcode="NOERROR") == 1
            and d(dialect="google", rcode="NXDOMAIN") == 1
            and d(dialect="doh", rcode="NOERROR") == 1
            and d(dialect="dns", rcode="NOERROR") == 3
            and d(dialect="dns", rcode="REFUSED") == 1
        )

    wait_until(counted, 15, "a count for every dialect")


def test_answers_equal_what_clients_received(server: tuple[Node, int]) -> None:
    node, _ = server
    before = fresh_scrape(node.url)
    received: Counter[tuple[str, str]] = Counter()
    for i in range(300):
        status, body = get(node.url, f"/d?dn={SHOP}&ip=10.{i >> 8}.{i & 255}.1")
        assert status == 200
        addrs = body.decode().split(";")
        version = "v2" if addrs[0] in SHOP_CANARY_V4.values() else "v1"
        received[(dc_of(addrs[0]), version)] += 1
    assert received[("idc", "v1")] and received[("cloud", "v1")]

    def equal() -> bool:
        after = scrape(node.url)
        return all(
            total(after, "httpdns_answers_total", service=SHOP, dc=dc, version=v)
            - total(before, "httpdns_answers_total", service=SHOP, dc=dc, version=v)
            == n
            for (dc, v), n in received.items()
        )

    wait_until(equal, 15, "answers per datacenter and version")  # a busy machine: slow scrapes


def test_latency_is_sampled_one_in_sample(server: tuple[Node, int]) -> None:
    node, _ = server
    before = fresh_scrape(node.url)
    for _ in range(2 * SAMPLE):
        get(node.url, f"/d?dn={PAY}&ip=203.0.113.79")

    def sampled() -> bool:
        after = scrape(node.url)
        n = value(after, "httpdns_query_seconds_count", dialect="dnspod") - value(
            before, "httpdns_query_seconds_count", dialect="dnspod"
        )
        # 2 x SAMPLE reads in a row (one per request): two of them were timed
        return 1 <= n <= 3

    wait_until(sampled, 15, "sampled latencies")
    after = scrape(node.url)
    assert value(after, "httpdns_query_seconds_sum", dialect="dnspod") > 0


def test_gauges_of_the_node(server: tuple[Node, int]) -> None:
    node, _ = server
    s = scrape(node.url)
    assert value(s, "httpdns_node_status", status="ok") == 1
    assert value(s, "httpdns_node_status", status="degraded") == 0
    assert value(s, "httpdns_registry_revision") >= 1
    assert value(s, "httpdns_registry_stale_seconds") == 0
    assert value(s, "httpdns_connections_open") >= 1  # this scrape's own
    assert value(s, "httpdns_release_canary_percent", service=SHOP) == 10  # the test registry
    assert value(s, "httpdns_release_canary_percent", service=PAY) == 0  # no canary: no series
    names = {n for n, _ in s}
    for metric in ("httpdns_store_errors_total", "httpdns_follow_resyncs_total"):
        assert metric in names


def test_no_client_address_in_any_label(server: tuple[Node, int]) -> None:
    node, _ = server
    get(node.url, f"/d?dn={SHOP}&ip=203.0.113.250")
    text = urllib.request.build_opener(urllib.request.ProxyHandler({})).open(node.url + "/metrics")
    body = text.read().decode()
    assert "203.0.113" not in body and "127.0.0.1" not in body


# -- in-process: the aiohttp path, eviction -----------------------------------------------------


async def test_aiohttp_path_counts_too(served: TestClient) -> None:
    for _ in range(3):
        resp = await served.get(f"/d?dn={SHOP}&ip=203.0.113.5")
        assert resp.status == 200
    resp = await served.get("/d?dn=bad..name")
    assert resp.status == 400
    resp = await served.get("/metrics")
    assert resp.status == 200
    s = parse(await resp.text())
    assert value(s, "httpdns_queries_total", dialect="dnspod", rcode="NOERROR") == 3
    assert value(s, "httpdns_queries_total", dialect="dnspod", rcode="http_400") == 1
    assert value(s, "httpdns_front_cache_misses_total", dialect="dnspod") == 4  # no cache there
    assert total(s, "httpdns_answers_total", service=SHOP) == 3


async def test_evicted_cache_entries_keep_their_counts(
    served: TestClient, node: InProcessNode
) -> None:
    engine = DnsEngine(node.table, make_config())
    # tiny caches: almost every reply is evicted soon after it was kept
    engine.exact = BoundedCache(2, 1 << 20)
    engine.cache = BoundedCache(2, 1 << 20)
    sent = 0
    for round_ in range(4):
        for i in range(10):
            q = dns.message.make_query(SHOP if i % 2 else PAY, "A")
            q.id = round_
            wire = q.to_wire()
            assert engine.respond(wire, f"203.0.113.{i}", True) is not None
            assert engine.respond(wire, f"203.0.113.{i}", True) is not None  # kept
            assert engine.respond(wire, f"203.0.113.{i}", True) is not None  # a hit
            sent += 3
    engine.exact.clear()
    engine.cache.clear()
    gc.collect()
    metrics = NodeMetrics(engine.stats)
    t = metrics.totals().values
    assert sum(t["httpdns_queries_total"].values()) == sent
    hits = t["httpdns_front_cache_hits_total"][("dns",)]
    # round 0: computed, computed and kept, a hit; later rounds: computed and kept, 2 hits
    assert hits == 10 * 1 + 30 * 2
    assert hits + t["httpdns_front_cache_misses_total"][("dns",)] == sent
    assert sum(n for k, n in t["httpdns_answers_total"].items() if k[0] == SHOP) == sent // 2


# -- workers -----------------------------------------------------------------------------------


def test_workers_metrics_show_the_whole_node(tmp_path: Path) -> None:
    node = Node(f"sqlite:///{tmp_path}/registry.db", tmp_path, args=("--workers", "2"))
    node.start()
    try:
        seed_test_registry(node.url)
        sent = 60
        for i in range(sent):  # new connections: SO_REUSEPORT spreads them over both workers
            assert get(node.url, f"/d?dn={SHOP}&ip=198.18.{i}.1")[0] == 200

        def whole() -> bool:
            s = scrape(node.url)
            return total(s, "httpdns_queries_total", dialect="dnspod") == sent

        wait_until(whole, 10, "both workers' counts in one scrape")
    finally:
        node.stop()


def test_worker_files_sum_and_carry_over(tmp_path: Path) -> None:
    a, b = WorkerFiles(tmp_path, 0), WorkerFiles(tmp_path, 1)
    t0, t1 = Totals(), Totals()
    t0.put("httpdns_queries_total", ("dns", "NOERROR"), 5)
    t1.put("httpdns_queries_total", ("dns", "NOERROR"), 7)
    t0.put("httpdns_registry_revision", (), 12)
    t1.put("httpdns_registry_revision", (), 10)
    t0.put("httpdns_query_seconds", ("dns",), [1, 0, *[0] * 13, 0.5])
    t1.put("httpdns_query_seconds", ("dns",), [0, 2, *[0] * 13, 0.25])
    a.write(t0)
    b.write(t1)
    mine = NodeMetrics()
    mine.workers = a
    mine.base = a.previous()  # a restarted worker 0 carries its counters on
    node = mine.node_totals().values
    assert node["httpdns_queries_total"][("dns", "NOERROR")] == 12
    assert node["httpdns_registry_revision"][()] == 10  # the lowest worker
    assert node["httpdns_query_seconds"][("dns",)][:2] == [1, 2]
    assert node["httpdns_query_seconds"][("dns",)][-1] == 0.75


# -- pure pieces -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialect", "status", "body", "unanswered", "expected"),
    [
        ("dnspod", 200, b"1.2.3.4", 0, "NOERROR"),
        ("dnspod", 200, b"", 1, "NXDOMAIN"),
        ("aliyun", 403, b"{}", 0, "http_403"),
        ("google", 200, b'{"Status":3,"TC":false}', 1, "NXDOMAIN"),
        ("google", 200, b'{"Status":5}', 1, "REFUSED"),
        ("doh", 200, b"\0\0\x81\x80", 0, "NOERROR"),
        ("doh", 200, b"\0\0\x81\x83", 0, "NXDOMAIN"),
        ("doh", 400, b"", 0, "http_400"),
    ],
)
def test_rcode_labels(
    dialect: str, status: int, body: bytes, unanswered: int, expected: str
) -> None:
    assert rcode_of(dialect, status, body, unanswered) == expected


def test_totals_round_trip_and_every_spec_is_rendered() -> None:
    stats = QueryStats()
    stats.count("dnspod", "NOERROR", [("a.example", "idc", "v1", "stable")])
    cell = stats.tally("dnspod", "NOERROR", (("a.example", "idc", "v1", "stable"),))
    cell.n += 2
    stats.observe("dnspod", 3e-6)
    metrics = NodeMetrics(stats)
    t = metrics.totals()
    back = Totals.loads(t.dumps())
    assert back.values == t.values
    assert t.values["httpdns_answers_total"][("a.example", "idc", "v1", "stable")] == 3
    names = {f.name for f in text_string_to_metric_families(Exposition(metrics).render().decode())}
    assert {n.removesuffix("_total") for n in SPECS} <= names
    del cell
    gc.collect()
    assert stats.queries[("dnspod", "NOERROR")] == 3  # folded as the cell went
