"""The common-query path of ``dnswire.answer`` (issue 20): replies written without dnslib
must be byte for byte the ones dnslib packs (``dnswire._answer``), for many ECS subnets,
both address types, the DO bit, UDP payload sizes and truncation; anything else must be
left to the general path. Queries are built by dnspython, independently of both."""

from __future__ import annotations

import ipaddress

import dns.edns
import dns.flags
import dns.message
import dns.rdatatype
import pytest

from httpdns import config as config_mod
from httpdns import dnswire
from httpdns.config import Config
from httpdns.metrics import Recorder
from httpdns.table import Client, RoutingTable
from registry.changes import Change
from registry.model import Datacenter, Endpoint, Region, Service, Zone
from registry.snapshot import Snapshot

ZONE = "example.org"
SPLIT = "split.example.org"  # 50/50 over two datacenters: depends on the client
SINGLE = "single.example.org"  # the same for everyone: ECS scope 0
WIDE = "wide.example.org"  # 40 addresses per answer: over 512 bytes
DOWN = "down.example.org"  # fail-closed with every endpoint down: an empty answer
SIX = "six.example.org"  # IPv6 only
PEER = "203.0.113.7"


def _snapshot() -> Snapshot:
    dcs = [Datacenter("idc"), Datacenter("cloud", "cloud")]
    services = [
        Service(SPLIT, {"default": {"idc": 50, "cloud": 50}}, ttl=20),
        Service(SINGLE, {"default": {"idc": 100}}, ttl=300),
        Service(WIDE, {"default": {"idc": 60, "cloud": 40}}, ttl=5, answers=40),
        Service(DOWN, {"default": {"idc": 100}}, all_down="fail-closed"),
        Service(SIX, {"default": {"idc": 70, "cloud": 30}}, ttl=0, answers=3),
    ]
    endpoints = [
        Endpoint(SINGLE, "s1", "idc", "192.0.2.10"),
        Endpoint(SINGLE, "s6", "idc", "2001:db8::10"),
        Endpoint(DOWN, "d1", "idc", "192.0.2.30", healthy=False),
    ]
    for i in range(4):
        endpoints.append(Endpoint(SPLIT, f"i{i}", "idc", f"192.0.2.{100 + i}"))
        endpoints.append(Endpoint(SPLIT, f"c{i}", "cloud", f"198.51.100.{100 + i}"))
        endpoints.append(Endpoint(SPLIT, f"v{i}", "cloud", f"2001:db8:1::{i + 1}"))
        endpoints.append(Endpoint(SIX, f"a{i}", "idc", f"2001:db8:2::{i + 1}"))
        endpoints.append(Endpoint(SIX, f"b{i}", "cloud", f"2001:db8:3::{i + 1}"))
    for i in range(48):
        dc = "idc" if i % 2 else "cloud"
        endpoints.append(Endpoint(WIDE, f"w{i}", dc, f"10.{i}.0.1"))
    changes = [Change.put(r) for r in (*dcs, Region("mobile", ("100.64.0.0/10",)), *services)]
    changes += [Change.put(e) for e in endpoints]
    changes.append(Change.put(Zone(ZONE)))
    snap, _ = Snapshot().apply(changes, 3)
    return snap


@pytest.fixture(scope="module")
def table() -> RoutingTable:
    return RoutingTable(_snapshot(), hot_misses=4)  # bucket maps after a few misses too


@pytest.fixture(scope="module")
def config() -> Config:
    return config_mod.load(None, env={}, zones=[])


def _who(ecs: str | None) -> Client:
    return Client.of(ecs or PEER)


def _both(
    wire: bytes, table: RoutingTable, config: Config, udp: bool
) -> tuple[dnswire.WireReply, dnswire.WireReply, Recorder, Recorder]:
    """The reply of ``answer`` and that of the general path, each through a recorder."""
    fast_rec, slow_rec = Recorder(table), Recorder(table)
    fast = dnswire.answer(wire, fast_rec, config, _who, udp)  # type: ignore[arg-type]
    slow = dnswire._answer(wire, slow_rec, config, _who, udp, None)  # type: ignore[arg-type]
    return fast, slow, fast_rec, slow_rec


def _subnets() -> list[tuple[str, int]]:
    out = [(f"{11 + i % 200}.{(i * 37) % 256}.{(i * 11) % 256}.0", 24) for i in range(60)]
    out += [("100.64.9.0", 24), ("100.100.0.0", 16), ("0.0.0.0", 0), ("198.18.7.9", 32)]
    out += [("10.9.0.0", 13), ("192.0.2.128", 25)]  # prefixes not on a byte boundary
    out += [(f"2001:db8:{i:x}:{(i * 97) % 65536:x}::", 56) for i in range(20)]
    out += [("2001:db8::", 48), ("::", 0), ("::ffff:198.51.100.0", 120)]
    return out


def _query(name: str, qtype: str, subnet: tuple[str, int] | None, do: bool, payload: int) -> bytes:
    if subnet is None and not do and payload == 0:
        return dns.message.make_query(name, qtype, use_edns=False).to_wire()
    options = [dns.edns.ECSOption(subnet[0], subnet[1])] if subnet is not None else []
    q = dns.message.make_query(
        name, qtype, use_edns=0, payload=payload or 1232, options=options, want_dnssec=do
    )
    return q.to_wire()


CASES = [
    (name, qtype)
    for name in (SPLIT, SINGLE, "Split.Example.ORG", "sINGLE.example.org")
    for qtype in ("A", "AAAA")
] + [(SIX, "AAAA"), ("SIX.example.org", "AAAA")]


@pytest.mark.parametrize(("name", "qtype"), CASES)
@pytest.mark.parametrize("udp", [True, False])
def test_common_replies_are_dnslib_bytes(
    table: RoutingTable, config: Config, name: str, qtype: str, udp: bool
) -> None:
    taken = 0
    for k, subnet in enumerate(_subnets()):
        for do, payload in ((False, 1232), (True, 4096), (k % 2 == 0, 512)):
            wire = _query(name, qtype, subnet, do, payload)
            fast, slow, fast_rec, slow_rec = _both(wire, table, config, udp)
            assert fast.wire == slow.wire, (name, qtype, subnet, do, payload)
            assert (fast.rcode, fast.min_ttl, fast.deps, fast.zoned) == (
                slow.rcode,
                slow.min_ttl,
                slow.deps,
                slow.zoned,
            )
            assert fast_rec.answers == slow_rec.answers
            assert fast_rec.unanswered == slow_rec.unanswered
            taken += type(dnswire._fast(wire, table, _who, udp)) is dnswire.WireReply
    # every query above has an answer that fits: none may have left the fast path
    assert taken == 3 * len(_subnets())


@pytest.mark.parametrize("udp", [True, False])
def test_without_edns(table: RoutingTable, config: Config, udp: bool) -> None:
    for name, qtype in CASES:
        wire = _query(name, qtype, None, False, 0)
        fast, slow, _, _ = _both(wire, table, config, udp)
        assert fast.wire == slow.wire
        assert type(dnswire._fast(wire, table, _who, udp)) is dnswire.WireReply


@pytest.mark.parametrize("payload", [0, 512, 700, 1232, 4096])
@pytest.mark.parametrize("udp", [True, False])
def test_large_answers_truncate_as_dnslib_does(
    table: RoutingTable, config: Config, payload: int, udp: bool
) -> None:
    for subnet in _subnets()[:20]:
        wire = _query(WIDE, "A", subnet if payload else None, False, payload)
        fast, slow, fast_rec, slow_rec = _both(wire, table, config, udp)
        assert fast.wire == slow.wire
        assert fast_rec.answers == slow_rec.answers  # the decision is noted once
        reply = dns.message.from_wire(fast.wire)
        big = len(slow.wire) > max(512, min(payload, 1232))
        assert bool(reply.flags & dns.flags.TC) == (udp and big)


@pytest.mark.parametrize(
    ("name", "qtype"),
    [
        (DOWN, "A"),  # an empty answer: NODATA with the zone's SOA
        (SIX, "A"),  # no IPv4 address: NODATA too
        ("nothere.example.org", "A"),  # NXDOMAIN
        ("elsewhere.net", "AAAA"),  # REFUSED
        (SPLIT, "ANY"),
        (SPLIT, "MX"),
        (ZONE, "A"),  # the apex, not a service
        ("*.example.org", "A"),
        ("-bad.example.org", "A"),
    ],
)
def test_other_queries_match_the_general_path(
    table: RoutingTable, config: Config, name: str, qtype: str
) -> None:
    for subnet in (None, ("11.2.3.0", 24)):
        wire = _query(name, qtype, subnet, False, 1232 if subnet else 0)
        fast, slow, fast_rec, slow_rec = _both(wire, table, config, True)
        assert fast.wire == slow.wire
        assert (fast_rec.answers, fast_rec.unanswered) == (slow_rec.answers, slow_rec.unanswered)
        assert type(dnswire._fast(wire, table, _who, True)) is not dnswire.WireReply


def _with_opt_rdata(wire: bytes, rdata: bytes) -> bytes:
    """``wire`` (one question, one empty OPT record last) with ``rdata`` as the OPT's data."""
    return wire[:-2] + len(rdata).to_bytes(2, "big") + rdata


@pytest.mark.parametrize(
    "rdata",
    [
        b"\0\x08\0\x03\0\x01\x18",  # ECS shorter than 4 bytes
        b"\0\x08\0\x07\0\x03\x18\0\x0b\0\0",  # family 3
        b"\0\x08\0\x06\0\x01\x18\0\x0b\0",  # prefix 24, two address bytes
        b"\0\x08\0\x07\0\x01\x17\0\x0b\0\x01",  # a bit set past the prefix
        b"\0\x08\0\x09\0\x01",  # the option runs past the record
        b"\0\x0a\0\x08" + bytes(8) + b"\0\x08\0\x07\0\x01\x18\0\x0b\0\x07",  # a cookie first
        b"\0\x08\0\x07\0\x01\x18\0\x0b\0\x07" + b"\0\x08\0\x07\0\x01\x18\0\x0c\0\x07",  # two ECS
    ],
)
def test_odd_options_match_the_general_path(
    table: RoutingTable, config: Config, rdata: bytes
) -> None:
    wire = _with_opt_rdata(_query(SPLIT, "A", None, False, 1232), rdata)
    try:
        expected: bytes | str = dnswire._answer(wire, table, config, _who, True, None).wire
    except dnswire.MalformedMessage as exc:
        expected = exc.detail
    try:
        got: bytes | str = dnswire.answer(wire, table, config, _who, True).wire
    except dnswire.MalformedMessage as exc:
        got = exc.detail
    assert got == expected


def test_malformed_messages_still_raise(table: RoutingTable, config: Config) -> None:
    wire = _query(SPLIT, "A", ("11.2.3.0", 24), False, 1232)
    for bad in (wire + b"\0", wire[:-1], wire[:12] + b"\xc0\x0c" + wire[-15:]):
        with pytest.raises(dnswire.MalformedMessage):
            dnswire.answer(bad, table, config, _who, True)


def test_ecs_scope_and_echo(table: RoutingTable, config: Config) -> None:
    wire = _query(SPLIT, "A", ("11.2.3.0", 24), True, 1232)
    reply = dns.message.from_wire(dnswire.answer(wire, table, config, _who, True).wire)
    (ecs,) = reply.options
    assert isinstance(ecs, dns.edns.ECSOption)
    assert (ipaddress.ip_address(ecs.address), ecs.srclen, ecs.scopelen) == (
        ipaddress.ip_address("11.2.3.0"),
        24,
        24,
    )
    assert reply.ednsflags & dns.flags.DO
    assert reply.flags & dns.flags.AA
    assert {rr.rdtype for rr in reply.answer} == {dns.rdatatype.A}
