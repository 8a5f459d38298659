"""DNS wire conformance of ``dnswire.answer`` (issue 14), with dnspython building the queries
and reading the replies: DO copied (RFC 3225), two OPT records → FORMERR (RFC 6891), zone
transfers REFUSED and other opcodes NOTIMP, AA only on our own data, EDNS Client Subnet
scope and errors (RFC 7871), and registry zones (apex SOA and NS, glue, nameserver names)."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import orjson
import pytest

from httpdns import config as config_mod
from httpdns import dnswire
from httpdns.config import Config
from httpdns.dialects import Context, Query
from httpdns.dialects.google import resolve_json
from httpdns.table import Client, RoutingTable
from registry.changes import Change
from registry.errors import ValidationError
from registry.model import Datacenter, Endpoint, Region, Service, Zone
from registry.snapshot import Snapshot

ZONE = "example.org"
STATIC = "static.test"  # a --zone flag zone, not in the registry
SPLIT = "split.example.org"  # idc 50 / cloud 50: the answer depends on the client
SINGLE = "single.example.org"  # one datacenter, one endpoint: the same for everyone
DEEP = "api.eu.example.org"  # eu.example.org is an empty non-terminal
NS1, NS2, NS_OUT = "ns1.example.org", "ns2.example.org", "ns.elsewhere.net"
ZONE_BODY = {
    "nameservers": {NS1: ["192.0.2.53", "2001:db8::53"], NS2: ["198.51.100.53"], NS_OUT: []},
    "soa": {"rname": "dns-admin.example.org", "minimum": 60},
}
PEER = "203.0.113.7"


def _snapshot() -> Snapshot:
    dcs = [Datacenter("idc"), Datacenter("cloud", "cloud")]
    services = [
        Service(SPLIT, {"default": {"idc": 50, "cloud": 50}}, ttl=20),
        Service(SINGLE, {"default": {"idc": 100}, "mobile": {"idc": 10}}, ttl=20),
        Service(DEEP, {"default": {"idc": 100}}, ttl=20),
    ]
    endpoints = [
        Endpoint(SINGLE, "s1", "idc", "192.0.2.10"),
        Endpoint(SINGLE, "s6", "idc", "2001:db8::10"),
    ]
    endpoints += [Endpoint(DEEP, "d1", "idc", "192.0.2.20")]
    for i in range(4):
        endpoints.append(Endpoint(SPLIT, f"i{i}", "idc", f"192.0.2.{100 + i}"))
        endpoints.append(Endpoint(SPLIT, f"c{i}", "cloud", f"198.51.100.{100 + i}"))
    changes = [Change.put(r) for r in (*dcs, Region("mobile", ("100.64.0.0/10",)), *services)]
    changes += [Change.put(e) for e in endpoints]
    changes.append(Change.put(Zone.from_dict(ZONE, ZONE_BODY)))
    snap, _ = Snapshot().apply(changes, 7)
    return snap


@pytest.fixture(scope="module")
def table() -> RoutingTable:
    return RoutingTable(_snapshot())


@pytest.fixture(scope="module")
def config() -> Config:
    return config_mod.load(None, env={}, zones=[STATIC])


def ask(
    table: RoutingTable, config: Config, q: dns.message.Message | bytes, peer: str = PEER
) -> dns.message.Message:
    wire = q if isinstance(q, bytes) else q.to_wire()
    out = dnswire.answer(wire, table, config, lambda ecs: Client.of(ecs or peer), udp=False)
    return dns.message.from_wire(out.wire)


def ecs_scope(r: dns.message.Message) -> int:
    (opt,) = [o for o in r.options if isinstance(o, dns.edns.ECSOption)]
    return int(opt.scopelen)


def names(rrsets: list[dns.rrset.RRset], rdtype: int) -> set[str]:
    return {rd.to_text() for rrset in rrsets if rrset.rdtype == rdtype for rd in rrset}


# -- header and EDNS details ---------------------------------------------------------------


@pytest.mark.parametrize("do", [True, False])
@pytest.mark.parametrize("qname", [SINGLE, f"nope.{ZONE}", "outside.invalid", ZONE])
def test_the_do_bit_is_copied(table: RoutingTable, config: Config, do: bool, qname: str) -> None:
    q = dns.message.make_query(qname, "A", use_edns=0, want_dnssec=do)
    r = ask(table, config, q)
    assert r.edns == 0
    assert bool(r.ednsflags & dns.flags.DO) is do


def test_two_opt_records_are_formerr(table: RoutingTable, config: Config) -> None:
    wire = bytearray(dns.message.make_query(SINGLE, "A", use_edns=0).to_wire())
    opt = bytes(wire[-11:])  # the OPT record: root name, type, class, TTL, empty rdata
    assert opt[:3] == b"\0\0\x29"
    wire[11] = 2  # ARCOUNT
    r = ask(table, config, bytes(wire) + opt)
    assert r.rcode() == dns.rcode.FORMERR
    assert not r.flags & dns.flags.AA


@pytest.mark.parametrize("qtype", ["AXFR", "IXFR"])
@pytest.mark.parametrize("qname", [ZONE, STATIC, "outside.invalid"])
def test_zone_transfers_are_refused(
    table: RoutingTable, config: Config, qtype: str, qname: str
) -> None:
    r = ask(table, config, dns.message.make_query(qname, qtype))
    assert r.rcode() == dns.rcode.REFUSED
    assert not r.answer and not r.authority
    assert not r.flags & dns.flags.AA


@pytest.mark.parametrize(
    "opcode", [dns.opcode.IQUERY, dns.opcode.STATUS, dns.opcode.NOTIFY, 3, 6, 15]
)
def test_other_opcodes_are_notimp_without_aa(
    table: RoutingTable, config: Config, opcode: int
) -> None:
    q = dns.message.make_query(SINGLE, "A")
    q.set_opcode(opcode)
    r = ask(table, config, q)
    assert r.rcode() == dns.rcode.NOTIMP
    assert r.opcode() == opcode
    assert not r.flags & dns.flags.AA


@pytest.mark.parametrize(
    ("qname", "qtype", "aa"),
    [
        (SINGLE, "A", True),
        (SINGLE, "TXT", True),
        (f"nope.{ZONE}", "A", True),
        (ZONE, "SOA", True),
        (f"x.{STATIC}", "A", True),
        ("outside.invalid", "A", False),
        ("", "A", False),
    ],
)
def test_aa_only_on_our_own_data(
    table: RoutingTable, config: Config, qname: str, qtype: str, aa: bool
) -> None:
    r = ask(table, config, dns.message.make_query(qname or ".", qtype))
    assert bool(r.flags & dns.flags.AA) is aa
    assert r.rcode() != dns.rcode.REFUSED or not aa


def test_cd_and_rd_are_copied(table: RoutingTable, config: Config) -> None:
    q = dns.message.make_query(SINGLE, "A")
    q.flags |= dns.flags.CD
    q.flags &= ~dns.flags.RD
    r = ask(table, config, q)
    assert r.flags & dns.flags.CD and not r.flags & dns.flags.RD and not r.flags & dns.flags.RA


def test_a_chaos_class_query_is_refused(table: RoutingTable, config: Config) -> None:
    q = dns.message.make_query("version.bind", "TXT", rdclass=dns.rdataclass.CH)
    r = ask(table, config, q)
    assert r.rcode() == dns.rcode.REFUSED and not r.flags & dns.flags.AA


# -- EDNS Client Subnet (RFC 7871) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "source", "rdtype", "scope"),
    [
        ("10.9.8.0", 24, "A", 24),
        ("10.9.0.0", 16, "A", 24),
        ("2001:db8:99:aa00::", 56, "A", 56),
        ("10.9.8.0", 24, "AAAA", 24),  # SPLIT has no IPv6: NODATA, which nobody's subnet changes
    ],
)
def test_scope_is_the_steering_granularity_where_the_answer_depends_on_it(
    table: RoutingTable, config: Config, address: str, source: int, rdtype: str, scope: int
) -> None:
    q = dns.message.make_query(
        SPLIT, rdtype, use_edns=0, options=[dns.edns.ECSOption(address, source)]
    )
    r = ask(table, config, q)
    assert r.rcode() == dns.rcode.NOERROR
    expected = scope if r.answer else 0
    assert ecs_scope(r) == expected
    assert bool(r.answer) is (rdtype == "A")


@pytest.mark.parametrize(
    ("qname", "qtype", "rcode"),
    [
        (f"nope.{ZONE}", "A", dns.rcode.NXDOMAIN),
        ("eu.example.org", "A", dns.rcode.NOERROR),  # an empty non-terminal
        (SPLIT, "TXT", dns.rcode.NOERROR),
        (ZONE, "SOA", dns.rcode.NOERROR),
        (ZONE, "NS", dns.rcode.NOERROR),
        (NS1, "A", dns.rcode.NOERROR),
        ("outside.invalid", "A", dns.rcode.REFUSED),
        (SINGLE, "A", dns.rcode.NOERROR),  # one datacenter, one address: the same for all
        (SINGLE, "AAAA", dns.rcode.NOERROR),
    ],
)
def test_scope_is_zero_where_the_answer_does_not_depend_on_the_subnet(
    table: RoutingTable, config: Config, qname: str, qtype: str, rcode: int
) -> None:
    ecs = dns.edns.ECSOption("100.64.1.0", 24)
    r = ask(table, config, dns.message.make_query(qname, qtype, use_edns=0, options=[ecs]))
    assert r.rcode() == rcode
    assert ecs_scope(r) == 0


def test_source_prefix_zero_steers_by_the_resolver_with_scope_zero(
    table: RoutingTable, config: Config
) -> None:
    for peer in ("10.1.1.1", "10.2.2.2", "10.3.3.3", "100.64.9.9", "10.77.1.1"):
        opted_out = dns.edns.ECSOption("0.0.0.0", 0)
        q = dns.message.make_query(SPLIT, "A", use_edns=0, options=[opted_out])
        r = ask(table, config, q, peer=peer)
        plain = ask(table, config, dns.message.make_query(SPLIT, "A"), peer=peer)
        assert names(r.answer, dns.rdatatype.A) == names(plain.answer, dns.rdatatype.A)
        assert ecs_scope(r) == 0


def _ecs_wire(family: int, source: int, address: bytes) -> bytes:
    q = dns.message.make_query(SINGLE, "A", use_edns=0)
    opt = dns.edns.GenericOption(
        dns.edns.ECS, family.to_bytes(2, "big") + bytes([source, 0]) + address
    )
    q.use_edns(0, options=[opt])
    return q.to_wire()


@pytest.mark.parametrize(
    ("family", "source", "address"),
    [(1, 24, b"\x0a\x09\x08"), (1, 23, b"\x0a\x09\x08"), (2, 56, bytes(7))],
)
def test_well_formed_client_subnet_options_are_answered(
    table: RoutingTable, config: Config, family: int, source: int, address: bytes
) -> None:
    r = ask(table, config, _ecs_wire(family, source, address))
    assert r.rcode() == dns.rcode.NOERROR and r.answer


@pytest.mark.parametrize(
    ("family", "source", "address"),
    [
        (1, 23, b"\x0a\x09\x09"),  # bit 24 set past a /23
        (1, 20, b"\x0a\x09\x0f"),  # low nibble set past a /20
        (2, 60, bytes(7) + b"\x01"),  # a bit past /60
        (1, 33, bytes(5)),  # beyond IPv4's 32 bits
        (2, 129, bytes(17)),  # beyond IPv6's 128 bits
        (3, 8, b"\x0a"),  # an unknown family
        (0, 0, b""),  # family 0 is not assigned
        (1, 24, b"\x0a\x09"),  # fewer address bytes than the prefix needs
    ],
)
def test_bad_client_subnet_options_are_formerr(
    table: RoutingTable, config: Config, family: int, source: int, address: bytes
) -> None:
    r = ask(table, config, _ecs_wire(family, source, address))
    assert r.rcode() == dns.rcode.FORMERR
    assert not [o for o in r.options if o.otype == dns.edns.ECS]  # the bad option is not echoed


# -- zones ---------------------------------------------------------------------------------


def test_apex_ns_answers_with_glue_for_in_zone_nameservers(
    table: RoutingTable, config: Config
) -> None:
    r = ask(table, config, dns.message.make_query(ZONE, "NS"))
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert names(r.answer, dns.rdatatype.NS) == {f"{NS1}.", f"{NS2}.", f"{NS_OUT}."}
    glue = {(rr.name.to_text(), rd.to_text()) for rr in r.additional for rd in rr}
    assert glue == {
        (f"{NS1}.", "192.0.2.53"),
        (f"{NS1}.", "2001:db8::53"),
        (f"{NS2}.", "198.51.100.53"),
    }


def test_soa_names_the_first_nameserver_and_carries_the_revision(
    table: RoutingTable, config: Config
) -> None:
    r = ask(table, config, dns.message.make_query(ZONE, "SOA"))
    (rrset,) = r.answer
    (soa,) = rrset
    assert soa.mname.to_text() == f"{NS1}." and soa.rname.to_text() == "dns-admin.example.org."
    assert (soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum) == (
        7,
        3600,
        600,
        86400,
        60,
    )
    assert rrset.ttl == 60


@pytest.mark.parametrize(
    ("qname", "qtype", "expected"),
    [
        (NS1, "A", {"192.0.2.53"}),
        (NS1, "AAAA", {"2001:db8::53"}),
        (NS2, "A", {"198.51.100.53"}),
    ],
)
def test_nameserver_names_resolve_to_their_addresses(
    table: RoutingTable, config: Config, qname: str, qtype: str, expected: set[str]
) -> None:
    r = ask(table, config, dns.message.make_query(qname, qtype))
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert names(r.answer, dns.rdatatype.from_text(qtype)) == expected


def test_a_nameserver_without_that_family_is_nodata_with_the_soa(
    table: RoutingTable, config: Config
) -> None:
    r = ask(table, config, dns.message.make_query(NS2, "AAAA"))
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    assert r.authority[0].rdtype == dns.rdatatype.SOA


def test_names_under_the_zone_are_nxdomain_with_the_soa(
    table: RoutingTable, config: Config
) -> None:
    r = ask(table, config, dns.message.make_query(f"nope.{ZONE}", "A"))
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert r.authority[0].rdtype == dns.rdatatype.SOA
    assert r.authority[0][0].mname.to_text() == f"{NS1}."


def test_a_static_zone_keeps_answering_without_nameservers(
    table: RoutingTable, config: Config
) -> None:
    r = ask(table, config, dns.message.make_query(f"x.{STATIC}", "A"))
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert r.authority[0][0].mname.to_text() == f"ns1.{STATIC}."
    r = ask(table, config, dns.message.make_query(STATIC, "NS"))
    assert r.rcode() == dns.rcode.NOERROR and not r.answer


def test_a_node_without_zone_flags_answers_registry_zones_identically(table: RoutingTable) -> None:
    bare = config_mod.load(None, env={})
    flagged = config_mod.load(None, env={}, zones=[ZONE])
    for qname, qtype in [
        (ZONE, "SOA"),
        (ZONE, "NS"),
        (f"nope.{ZONE}", "A"),
        (NS1, "A"),
        (SPLIT, "A"),
    ]:
        q = dns.message.make_query(qname, qtype)
        assert ask(table, bare, q) == ask(table, flagged, q)


# -- the record ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "nameservers"),
        ({"nameservers": {}}, "nameservers"),
        ({"nameservers": {"ns1.example.org": []}}, "nameservers.ns1.example.org"),
        ({"nameservers": {"ns1.example.org": ["nope"]}}, "nameservers.ns1.example.org[0]"),
        ({"nameservers": {"bad..name": ["192.0.2.1"]}}, "nameservers.bad..name"),
        ({"nameservers": {"ns.x.net": "192.0.2.1"}}, "nameservers.ns.x.net"),
        ({"nameservers": {"ns.x.net": []}, "soa": {"serial": 1}}, "serial"),
        ({"nameservers": {"ns.x.net": []}, "soa": {"refresh": 0}}, "soa.refresh"),
        ({"nameservers": {"ns.x.net": []}, "soa": {"minimum": 86401}}, "soa.minimum"),
        ({"nameservers": {"ns.x.net": []}, "soa": {"rname": 5}}, "soa.rname"),
        ({"nameservers": {"ns.x.net": []}, "extra": 1}, "extra"),
    ],
)
def test_zone_bodies_are_validated(body: object, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Zone.from_dict(ZONE, body)
    assert info.value.field == field


def test_zone_records_survive_every_snapshot_form() -> None:
    snap = _snapshot()
    zone = snap.zones[ZONE]
    assert list(zone.nameservers) == [NS1, NS2, NS_OUT]  # order kept: the first is the mname
    assert Snapshot.load_json(snap.dump_json()).zones == snap.zones
    assert Snapshot.load(snap.to_dict()).zones == snap.zones
    rows = [("zone", ZONE, orjson.dumps(zone.to_dict()))]
    assert Snapshot.from_records(7, rows).zones == {ZONE: zone}
    assert Zone.load(zone.to_dict()) == zone
    old = snap.to_dict()
    del old["zones"]  # a snapshot file written before zones existed
    assert Snapshot.load(old).zones == {}


@pytest.mark.parametrize(
    ("name", "qtype", "status", "answer", "authority"),
    [
        (ZONE, "NS", 0, {f"{NS1}.", f"{NS2}.", f"{NS_OUT}."}, False),
        (ZONE, "SOA", 0, {f"{NS1}. dns-admin.example.org. 7 3600 600 86400 60"}, False),
        (NS1, "AAAA", 0, {"2001:db8::53"}, False),
        (f"nope.{ZONE}", "A", 3, set(), True),
        ("eu.example.org", "A", 0, set(), True),
        (SPLIT, "TXT", 0, set(), True),
        (STATIC, "NS", 0, set(), True),
        ("outside.invalid", "A", 5, set(), False),
    ],
)
def test_the_json_dialect_follows_the_same_zone_logic(
    table: RoutingTable,
    config: Config,
    name: str,
    qtype: str,
    status: int,
    answer: set[str],
    authority: bool,
) -> None:
    ctx = Context(table, config)
    reply = resolve_json(Query(params={"name": name, "type": qtype}, peer=PEER), ctx)
    body = orjson.loads(reply.body)
    assert body["Status"] == status
    assert {a["data"] for a in body.get("Answer", [])} == answer
    assert ("Authority" in body) is authority
    if authority:
        assert body["Authority"][0]["data"].startswith((f"{NS1}. ", f"ns1.{STATIC}. "))
    assert reply.deps == ()  # zone data: never kept by a front cache
