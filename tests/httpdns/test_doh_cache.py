"""A DoH answer is kept in the fast path's front cache (and dropped on a change), like
the other dialects' answers: DoH GETs repeat exactly, so a miss each time would cost
the whole DNS encoding on every request."""

from __future__ import annotations

import base64

import dns.message

from httpdns.config import Config
from httpdns.dialects import Context
from httpdns.fasthttp import FastServer
from httpdns.routes import QUERY_ROUTES, Router
from httpdns.table import RoutingTable
from registry import Change, Datacenter, Endpoint, Service, Snapshot

NAME = "api.example.com"


def snapshot(dc: str) -> Snapshot:
    records = [
        Datacenter("idc", kind="idc", writable=True),
        Datacenter("cloud", kind="cloud", writable=True),
        Service(NAME, {"default": {dc: 100}}),
        Endpoint(NAME, "a", "idc", "10.0.0.1"),
        Endpoint(NAME, "b", "cloud", "10.1.0.1"),
    ]
    snap, _ = Snapshot().apply([Change.put(r) for r in records], 1)
    return snap


def addresses(response: bytes) -> list[str]:
    body = response.split(b"\r\n\r\n", 1)[1]
    return [rd.address for rrset in dns.message.from_wire(body).answer for rd in rrset]


def test_a_doh_answer_is_front_cached_until_its_service_changes() -> None:
    table = RoutingTable(snapshot("idc"))
    fast = FastServer(Context(table, Config()), QUERY_ROUTES, lambda: None)  # type: ignore[arg-type,return-value]
    found = Router(QUERY_ROUTES).match(b"GET", b"/dns-query")
    assert found is not None
    route, account = found
    wire = dns.message.make_query(NAME, "A").to_wire()
    wire = b"\0\0" + wire[2:]  # ID 0 (RFC 8484 section 4.1)
    target = b"/dns-query?dns=" + base64.urlsafe_b64encode(wire).rstrip(b"=")

    def ask() -> tuple[bytes, bool]:
        """The response (less Date) and whether the front cache answered it."""
        head, tail, kept = fast.respond(
            route, account, b"GET", target, b"\r\nhost: x\r\n", b"", "127.0.0.1"
        )
        return head + tail, kept is not None

    first, cached = ask()
    assert addresses(first) == ["10.0.0.1"] and not cached
    assert len(fast.cache) == 1
    assert ask() == (first, True)
    table.update(snapshot("cloud"), frozenset({NAME}))
    moved, cached = ask()
    assert addresses(moved) == ["10.1.0.1"] and not cached
