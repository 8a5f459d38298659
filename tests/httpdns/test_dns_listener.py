"""The plain DNS listener (``httpdns serve --dns HOST:PORT``) against a real subprocess, with
dnspython as the client: answers agree with ``/d`` and explain, EDNS0 and the client subnet
option, truncation and the TCP retry, negative answers with the zone's SOA, FORMERR / NOTIMP /
silence on bad input, TCP pipelining and stalls, and the front cache following admin changes."""

from __future__ import annotations

import socket
import struct
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.update
import pytest

from tests.servers import Node, admin_call, free_udp_tcp_port, seed_test_registry

from .conftest import MOBILE_CIDRS, PAY, SHOP, SHOP_CLOUD_V4, SHOP_CLOUD_V6, SHOP_TTL, dc_of

ZONE = "example.org"
BIG = "big.example.org"  # answers = 40, 40 IPv6 endpoints: over 512 bytes
BIG_V6 = [f"2001:db8:40::{i + 1:x}" for i in range(40)]
FLIP = "flip.example.org"  # edge1 50 / edge2 50, for the cache invalidation test
FLIP_ADDR = {"edge1": "203.0.113.1", "edge2": "203.0.113.129"}
DEEP = "api.eu.example.org"  # makes eu.example.org an empty non-terminal
TIMEOUT = 3.0


@dataclass
class DnsNode:
    node: Node
    dns_port: int

    @property
    def base(self) -> str:
        return self.node.url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsNode]:
    tmp = tmp_path_factory.mktemp("dns")
    port = free_udp_tcp_port()
    node = Node(
        f"sqlite:///{tmp}/registry.db",
        tmp,
        args=("--dns", f"127.0.0.1:{port}", "--zone", ZONE),
    )
    node.start()
    try:
        seed_test_registry(node.url)
        api = "/api/v1"
        writes: list[tuple[str, object]] = [
            (f"{api}/datacenters/edge1", {"kind": "cloud", "writable": True}),
            (f"{api}/datacenters/edge2", {"kind": "cloud", "writable": True}),
            (
                f"{api}/services/{BIG}",
                {"access": "ro", "ttl": 20, "answers": 40, "traffic": {"default": {"idc": 100}}},
            ),
            (
                f"{api}/services/{FLIP}",
                {"access": "ro", "ttl": 20, "traffic": {"default": {"edge1": 50, "edge2": 50}}},
            ),
            (
                f"{api}/services/{DEEP}",
                {"access": "ro", "ttl": 20, "traffic": {"default": {"idc": 100}}},
            ),
            (
                f"{api}/services/{DEEP}/endpoints/e1",
                {"dc": "idc", "address": "192.0.2.77", "port": 443, "version": "v1"},
            ),
        ]
        for i, addr in enumerate(BIG_V6):
            writes.append(
                (
                    f"{api}/services/{BIG}/endpoints/e{i}",
                    {"dc": "idc", "address": addr, "port": 443, "version": "v1"},
                )
            )
        for dc, addr in FLIP_ADDR.items():
            writes.append(
                (
                    f"{api}/services/{FLIP}/endpoints/{dc}",
                    {"dc": dc, "address": addr, "port": 443, "version": "v1"},
                )
            )
        for path, body in writes:
            status, data = admin_call(node.url, "PUT", path, body)
            assert status in (200, 201), (path, status, data)
        yield DnsNode(node, port)
    finally:
        node.stop()


# -- helpers ---------------------------------------------------------------------------------


def udp(server: DnsNode, q: dns.message.Message) -> dns.message.Message:
    return dns.query.udp(q, "127.0.0.1", port=server.dns_port, timeout=TIMEOUT)


def tcp(server: DnsNode, q: dns.message.Message) -> dns.message.Message:
    return dns.query.tcp(q, "127.0.0.1", port=server.dns_port, timeout=TIMEOUT)


def udp_raw(server: DnsNode, wire: bytes, sock: socket.socket | None = None) -> bytes:
    """Send one datagram and return the first reply (raises socket.timeout when none)."""
    own = sock is None
    s = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(TIMEOUT)
        s.sendto(wire, ("127.0.0.1", server.dns_port))
        return s.recv(65535)
    finally:
        if own:
            s.close()


def tcp_connect(server: DnsNode) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", server.dns_port), timeout=TIMEOUT)
    s.settimeout(TIMEOUT)
    return s


def recv_exact(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError(f"EOF after {len(out)} of {n} bytes")
        out += chunk
    return out


def tcp_read_message(s: socket.socket) -> bytes:
    size = struct.unpack("!H", recv_exact(s, 2))[0]
    return recv_exact(s, size)


def http_text(server: DnsNode, path: str) -> str:
    status, body = admin_call(server.base, "GET", path)
    assert status == 200, (path, status, body)
    return body if isinstance(body, str) else str(body)


def d_answer(server: DnsNode, name: str, kind: str = "a", ip: str | None = None) -> list[str]:
    """The ordered addresses ``/d`` gives (from peer 127.0.0.1, or for ``ip``)."""
    params = {"dn": name, "type": kind}
    if ip is not None:
        params["ip"] = ip
    text = http_text(server, "/d?" + urllib.parse.urlencode(params))
    return text.split(";") if text else []


def addresses(r: dns.message.Message, rdtype: int = dns.rdatatype.A) -> list[str]:
    out: list[str] = []
    for rrset in r.answer:
        assert rrset.rdtype == rdtype, rrset
        out.extend(rd.address for rd in rrset)
    return out


def header(qid: int, flags: int, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def question(name: str, rdtype: int = 1, rdclass: int = 1) -> bytes:
    return dns.name.from_text(name).to_wire() + struct.pack("!HH", rdtype, rdclass)  # type: ignore[operator]


def parse(wire: bytes) -> dns.message.Message:
    return dns.message.from_wire(wire, ignore_trailing=True)


def revision(server: DnsNode) -> int:
    status, body = admin_call(server.base, "GET", "/healthz")
    assert status == 200 and isinstance(body, dict)
    return int(body["revision"])


# -- answers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("edns", [False, True])
@pytest.mark.parametrize(("rdtype", "kind"), [(dns.rdatatype.A, "a"), (dns.rdatatype.AAAA, "aaaa")])
def test_answers_agree_with_d_and_explain(
    server: DnsNode, transport: str, edns: bool, rdtype: int, kind: str
) -> None:
    for name in (SHOP, PAY):
        q = dns.message.make_query(name, rdtype, use_edns=0 if edns else False)
        r = udp(server, q) if transport == "udp" else tcp(server, q)
        assert r.rcode() == dns.rcode.NOERROR
        assert r.flags & dns.flags.AA and r.flags & dns.flags.QR
        assert not r.flags & dns.flags.TC
        assert r.question[0].name == dns.name.from_text(name)
        got = addresses(r, rdtype)
        expected = d_answer(server, name, kind)
        assert got == expected, (name, kind, got, expected)
        if name == PAY and kind == "aaaa":
            assert got == []  # pay has no IPv6 endpoints: NODATA with the SOA
            assert r.authority and r.authority[0].rdtype == dns.rdatatype.SOA
            continue
        assert got, (name, kind)
        assert {rrset.ttl for rrset in r.answer} == {SHOP_TTL if name == SHOP else 30}
        status, trace = admin_call(
            server.base, "GET", f"/api/v1/explain?name={name}&ip=127.0.0.1&type={kind}"
        )
        assert status == 200 and isinstance(trace, dict)
        assert trace["answer"] == got


def test_mixed_case_question_is_echoed_and_answered(server: DnsNode) -> None:
    q = dns.message.make_query("ShOp.ExAmPlE.oRg", "A")
    r = udp(server, q)
    assert r.rcode() == dns.rcode.NOERROR
    assert r.question[0].name.to_text() == "ShOp.ExAmPlE.oRg."  # 0x20 resolvers check this
    assert addresses(r) == d_answer(server, SHOP)


ECS_CASES = [
    # (ECS address, source prefix, an address of the same key for /d?ip=, expected scope)
    ("100.64.1.0", 24, "100.64.1.77", 24),  # region mobile: cloud only
    ("10.9.8.0", 24, "10.9.8.200", 24),
    ("10.9.0.0", 16, "10.9.0.1", 24),
    ("2001:db8:64::", 56, "2001:db8:64::1", 56),  # region mobile over IPv6
    ("2001:db8:99:aa00::", 56, "2001:db8:99:aa12::1", 56),
]


@pytest.mark.parametrize(("address", "source", "ip", "scope"), ECS_CASES)
@pytest.mark.parametrize(("rdtype", "kind"), [(dns.rdatatype.A, "a"), (dns.rdatatype.AAAA, "aaaa")])
def test_client_subnet_steers_like_ip_and_is_echoed_with_the_key_scope(
    server: DnsNode, address: str, source: int, ip: str, scope: int, rdtype: int, kind: str
) -> None:
    ecs = dns.edns.ECSOption(address, source)
    q = dns.message.make_query(SHOP, rdtype, use_edns=0, options=[ecs])
    for r in (udp(server, q), tcp(server, q)):
        assert r.rcode() == dns.rcode.NOERROR
        got = addresses(r, rdtype)
        assert got and got == d_answer(server, SHOP, kind, ip=ip)
        echoed = [o for o in r.options if isinstance(o, dns.edns.ECSOption)]
        assert len(echoed) == 1, r.options
        assert echoed[0].address == address and echoed[0].srclen == source
        assert echoed[0].scopelen == scope
        if ip.startswith(("100.64.", "2001:db8:64:")):
            assert {dc_of(a) for a in got} == {"cloud"}
            assert set(got) <= set(SHOP_CLOUD_V4) | set(SHOP_CLOUD_V6) | {"198.51.100.9"}


def test_client_subnet_moves_a_client_between_regions(server: DnsNode) -> None:
    """The same peer (127.0.0.1) gets the region of its ECS subnet, not of itself."""
    assert MOBILE_CIDRS[0] == "100.64.0.0/10"
    seen = set()
    for i in range(24):
        subnet = f"100.{64 + i}.{i}.0"
        q = dns.message.make_query(SHOP, "A", use_edns=0, options=[dns.edns.ECSOption(subnet, 24)])
        seen |= {dc_of(a) for a in addresses(udp(server, q))}
    assert seen == {"cloud"}  # mobile: idc 0 / cloud 100


@pytest.mark.parametrize("name", [SHOP, "nothing-here.example.org", "example.com"])
def test_opt_record_only_when_the_query_had_one(server: DnsNode, name: str) -> None:
    plain = udp(server, dns.message.make_query(name, "A", use_edns=False))
    assert plain.edns == -1 and plain.opt is None
    r = udp(server, dns.message.make_query(name, "A", use_edns=0))
    assert r.edns == 0 and r.opt is not None
    assert r.payload >= 512
    assert r.rcode() == plain.rcode()
    assert tcp(server, dns.message.make_query(name, "A", use_edns=False)).opt is None
    assert tcp(server, dns.message.make_query(name, "A", use_edns=0)).edns == 0


def test_no_client_subnet_option_without_one_in_the_query(server: DnsNode) -> None:
    r = udp(server, dns.message.make_query(SHOP, "A", use_edns=0))
    assert r.edns == 0
    assert not [o for o in r.options if isinstance(o, dns.edns.ECSOption)]


def test_unknown_edns_version_gets_badvers(server: DnsNode) -> None:
    r = udp(server, dns.message.make_query(SHOP, "A", use_edns=1))
    assert r.rcode() == dns.rcode.BADVERS
    assert not r.answer


# -- truncation ------------------------------------------------------------------------------


def test_big_answer_over_udp_without_edns_is_truncated(server: DnsNode) -> None:
    q = dns.message.make_query(BIG, "AAAA", use_edns=False)
    wire = udp_raw(server, q.to_wire())
    assert len(wire) <= 512
    r = parse(wire)
    assert r.id == q.id
    assert r.flags & dns.flags.TC
    assert r.rcode() == dns.rcode.NOERROR
    assert not r.answer
    assert r.question[0].name == dns.name.from_text(BIG)


def test_big_answer_with_a_512_byte_edns_payload_is_truncated(server: DnsNode) -> None:
    q = dns.message.make_query(BIG, "AAAA", use_edns=0, payload=512)
    wire = udp_raw(server, q.to_wire())
    r = parse(wire)
    assert len(wire) <= 512 and r.flags & dns.flags.TC and not r.answer
    assert r.edns == 0  # the OPT record stays in the truncated reply


def test_big_answer_fits_the_edns_payload(server: DnsNode) -> None:
    r = udp(server, dns.message.make_query(BIG, "AAAA", use_edns=0, payload=1232))
    assert not r.flags & dns.flags.TC
    assert sorted(addresses(r, dns.rdatatype.AAAA)) == sorted(
        dns.rdata.from_text("IN", "AAAA", a).address for a in BIG_V6
    )


def test_big_answer_over_tcp_is_complete(server: DnsNode) -> None:
    r = tcp(server, dns.message.make_query(BIG, "AAAA", use_edns=False))
    assert not r.flags & dns.flags.TC
    assert len(addresses(r, dns.rdatatype.AAAA)) == 40
    assert set(addresses(r, dns.rdatatype.AAAA)) == {
        dns.rdata.from_text("IN", "AAAA", a).address for a in BIG_V6
    }


def test_udp_with_fallback_retries_over_tcp(server: DnsNode) -> None:
    q = dns.message.make_query(BIG, "AAAA", use_edns=False)
    r, used_tcp = dns.query.udp_with_fallback(q, "127.0.0.1", port=server.dns_port, timeout=TIMEOUT)
    assert used_tcp
    assert len(addresses(r, dns.rdatatype.AAAA)) == 40
    # a small answer stays on UDP
    r, used_tcp = dns.query.udp_with_fallback(
        dns.message.make_query(SHOP, "A"), "127.0.0.1", port=server.dns_port, timeout=TIMEOUT
    )
    assert not used_tcp and addresses(r)


# -- negative answers ------------------------------------------------------------------------


def assert_soa(r: dns.message.Message, zone: str = ZONE) -> None:
    soas = [rr for rr in r.authority if rr.rdtype == dns.rdatatype.SOA]
    assert len(soas) == 1, r.authority
    assert soas[0].name == dns.name.from_text(zone)
    assert soas[0].ttl > 0
    soa = soas[0][0]
    assert soa.minimum > 0


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_unknown_name_in_zone_is_nxdomain_with_soa(server: DnsNode, transport: str) -> None:
    rev = revision(server)
    q = dns.message.make_query(f"unknown-{transport}.{ZONE}", "A")
    r = udp(server, q) if transport == "udp" else tcp(server, q)
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert r.flags & dns.flags.AA
    assert not r.answer
    assert_soa(r)
    assert r.authority[0][0].serial == rev  # the registry revision


def test_below_a_served_name_is_nxdomain(server: DnsNode) -> None:
    r = udp(server, dns.message.make_query(f"x.{SHOP}", "A"))
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert_soa(r)


@pytest.mark.parametrize("name", ["example.com", "www.google.com", "org", "notexample.org"])
def test_names_outside_the_zones_are_refused(server: DnsNode, name: str) -> None:
    for r in (
        udp(server, dns.message.make_query(name, "A")),
        tcp(server, dns.message.make_query(name, "AAAA")),
    ):
        assert r.rcode() == dns.rcode.REFUSED
        assert not r.answer and not r.authority


@pytest.mark.parametrize("rdtype", ["MX", "TXT", "NS", "SRV"])
def test_other_types_on_a_served_name_are_nodata_with_soa(server: DnsNode, rdtype: str) -> None:
    r = udp(server, dns.message.make_query(SHOP, rdtype))
    assert r.rcode() == dns.rcode.NOERROR
    assert not r.answer
    assert_soa(r)


@pytest.mark.parametrize("rdtype", ["SOA", "NS"])
def test_zone_apex_is_not_nxdomain(server: DnsNode, rdtype: str) -> None:
    r = udp(server, dns.message.make_query(ZONE, rdtype))
    assert r.rcode() == dns.rcode.NOERROR


def test_empty_non_terminal_is_nodata(server: DnsNode) -> None:
    assert udp(server, dns.message.make_query(DEEP, "A")).rcode() == dns.rcode.NOERROR
    r = udp(server, dns.message.make_query("eu.example.org", "A"))
    assert r.rcode() == dns.rcode.NOERROR


@pytest.mark.parametrize(
    ("name", "rcode"), [(".", dns.rcode.REFUSED), ("*.example.org", dns.rcode.NXDOMAIN)]
)
def test_unusual_but_legal_names_are_not_formerr(server: DnsNode, name: str, rcode: int) -> None:
    r = udp(server, dns.message.make_query(name, "NS" if name == "." else "A"))
    assert r.rcode() == rcode


def test_non_internet_class_gets_no_internet_records(server: DnsNode) -> None:
    r = udp(server, dns.message.make_query(SHOP, "A", rdclass=dns.rdataclass.CH))
    assert not r.answer


# -- malformed and unsupported messages ------------------------------------------------------


def test_two_questions_are_formerr(server: DnsNode) -> None:
    wire = header(0x1234, 0x0100, qd=2) + question(SHOP) + question(PAY)
    for reply in (udp_raw(server, wire), tcp_exchange(server, wire)):
        r = parse(reply)
        assert r.id == 0x1234
        assert r.flags & dns.flags.QR
        assert r.rcode() == dns.rcode.FORMERR
        assert not r.answer


def test_no_question_is_formerr(server: DnsNode) -> None:
    r = parse(udp_raw(server, header(0x4321, 0x0100, qd=0)))
    assert r.id == 0x4321 and r.rcode() == dns.rcode.FORMERR


@pytest.mark.parametrize(
    "tail",
    [
        b"\xff" * 20,  # a label pointer out of the message
        b"\x05short",  # the question name runs off the end
        b"\x03www\x07example\x03org\x00\x00",  # the question type is cut
        b"\x00\x00\x01\x00\x01" + b"\xc0\x00" * 10,  # counts that promise more than is sent
    ],
)
def test_garbage_of_at_least_a_header_is_formerr_with_the_id(server: DnsNode, tail: bytes) -> None:
    wire = header(0xBEEF, 0x0100, qd=1, an=3 if tail.startswith(b"\x00\x00") else 0) + tail
    reply = udp_raw(server, wire)
    r = parse(reply)
    assert reply[:2] == b"\xbe\xef"
    assert r.flags & dns.flags.QR
    assert r.rcode() == dns.rcode.FORMERR


def test_random_twelve_byte_header_only_gets_a_reply(server: DnsNode) -> None:
    wire = bytes(range(1, 13))
    reply = udp_raw(server, wire)
    assert reply[:2] == wire[:2]
    assert reply[2] & 0x80  # QR


@pytest.mark.parametrize("size", [0, 1, 2, 11])
def test_shorter_than_a_header_gets_no_reply(server: DnsNode, size: int) -> None:
    good = dns.message.make_query(SHOP, "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(TIMEOUT)
        s.sendto(b"\xab" * size, ("127.0.0.1", server.dns_port))
        s.sendto(good.to_wire(), ("127.0.0.1", server.dns_port))
        # the first datagram back answers the good query: nothing was sent for the short one
        first = parse(s.recv(65535))
        assert first.id == good.id and first.rcode() == dns.rcode.NOERROR
        s.settimeout(0.2)
        with pytest.raises(TimeoutError):
            s.recv(65535)


@pytest.mark.parametrize("opcode", [dns.opcode.STATUS, dns.opcode.NOTIFY, 3, 6, 15])
def test_unsupported_opcodes_are_notimp(server: DnsNode, opcode: int) -> None:
    q = dns.message.make_query(SHOP, "A")
    q.set_opcode(opcode)
    wire = q.to_wire()
    r = parse(udp_raw(server, wire))
    assert r.id == q.id
    assert r.rcode() == dns.rcode.NOTIMP
    assert dns.opcode.from_flags(r.flags) == opcode
    assert not r.answer


def test_update_is_notimp(server: DnsNode) -> None:
    upd = dns.update.UpdateMessage(ZONE)
    upd.add("www", 300, "A", "192.0.2.1")
    r = dns.query.udp(upd, "127.0.0.1", port=server.dns_port, timeout=TIMEOUT)
    assert r.rcode() == dns.rcode.NOTIMP
    assert r.opcode() == dns.opcode.UPDATE


def test_a_response_message_is_never_answered(server: DnsNode) -> None:
    """A reply (QR=1) gets no reply: a forged one cannot start a loop (BIND, Unbound do so)."""
    response = dns.message.make_query(SHOP, "A")
    response.flags |= dns.flags.QR
    query = dns.message.make_query(SHOP, "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", server.dns_port))
        s.send(response.to_wire())
        s.send(query.to_wire())
        first = parse(_recv(s))
    assert first.id == query.id  # the response before it got nothing


def _recv(s: socket.socket) -> bytes:
    s.settimeout(TIMEOUT)
    return s.recv(65535)


def test_malformed_client_subnet_is_formerr(server: DnsNode) -> None:
    # family 1, source /24 but 4 address bytes (must be 3)
    bad = dns.edns.GenericOption(dns.edns.OptionType.ECS, b"\x00\x01\x18\x00\x0a\x09\x08\x00")
    q = dns.message.make_query(SHOP, "A", use_edns=0, options=[bad])
    r = parse(udp_raw(server, q.to_wire()))
    assert r.id == q.id and r.rcode() == dns.rcode.FORMERR


# -- TCP -------------------------------------------------------------------------------------


def tcp_exchange(server: DnsNode, wire: bytes) -> bytes:
    with tcp_connect(server) as s:
        s.sendall(struct.pack("!H", len(wire)) + wire)
        return tcp_read_message(s)


def test_pipelined_tcp_queries_are_answered_in_order(server: DnsNode) -> None:
    queries = [
        dns.message.make_query(SHOP, "A"),
        dns.message.make_query(PAY, "A"),
        dns.message.make_query(f"nope.{ZONE}", "A"),
        dns.message.make_query("example.com", "A"),
        dns.message.make_query(BIG, "AAAA"),
        dns.message.make_query(SHOP, "AAAA", use_edns=0),
    ]
    for i, q in enumerate(queries):
        q.id = 1000 + i
    stream = b"".join(struct.pack("!H", len(w)) + w for w in (q.to_wire() for q in queries))
    with tcp_connect(server) as s:
        s.sendall(stream)
        replies = [parse(tcp_read_message(s)) for _ in queries]
        # the connection stays usable after the burst
        last = dns.message.make_query(PAY, "A")
        s.sendall(struct.pack("!H", len(last.to_wire())) + last.to_wire())
        assert parse(tcp_read_message(s)).id == last.id
    assert [r.id for r in replies] == [q.id for q in queries]
    assert [r.rcode() for r in replies] == [
        dns.rcode.NOERROR,
        dns.rcode.NOERROR,
        dns.rcode.NXDOMAIN,
        dns.rcode.REFUSED,
        dns.rcode.NOERROR,
        dns.rcode.NOERROR,
    ]
    assert addresses(replies[0]) == d_answer(server, SHOP)
    assert len(addresses(replies[4], dns.rdatatype.AAAA)) == 40


def test_tcp_query_split_across_writes(server: DnsNode) -> None:
    q = dns.message.make_query(SHOP, "A")
    msg = struct.pack("!H", len(q.to_wire())) + q.to_wire()
    with tcp_connect(server) as s:
        for i in range(len(msg)):
            s.sendall(msg[i : i + 1])
        r = parse(tcp_read_message(s))
    assert r.id == q.id and addresses(r) == d_answer(server, SHOP)


def test_tcp_garbage_gets_formerr_and_the_connection_stays_usable(server: DnsNode) -> None:
    garbage = header(0x7777, 0x0100, qd=1) + b"\xff" * 8
    good = dns.message.make_query(SHOP, "A")
    with tcp_connect(server) as s:
        s.sendall(struct.pack("!H", len(garbage)) + garbage)
        r = parse(tcp_read_message(s))
        assert r.id == 0x7777 and r.rcode() == dns.rcode.FORMERR
        s.sendall(struct.pack("!H", len(good.to_wire())) + good.to_wire())
        assert parse(tcp_read_message(s)).id == good.id


def test_tcp_message_shorter_than_a_header_closes_the_connection(server: DnsNode) -> None:
    with tcp_connect(server) as s:
        s.sendall(b"\x00\x05hello")
        assert s.recv(100) == b""  # EOF, no reply


def test_stalled_tcp_connections_do_not_block_other_clients(server: DnsNode) -> None:
    stalled: list[socket.socket] = []
    try:
        for prefix in (b"\x00", b"\x00\x40" + b"\x12" * 10, b"\xff\xff"):
            s = tcp_connect(server)
            s.sendall(prefix)  # half a length prefix / a partial message, then nothing
            stalled.append(s)
        for _ in range(3):
            assert addresses(udp(server, dns.message.make_query(SHOP, "A")))
            assert addresses(tcp(server, dns.message.make_query(PAY, "A")))
        # the stalled connections are still open (no reply, no EOF yet)
        for s in stalled:
            s.settimeout(0.05)
            with pytest.raises(TimeoutError):
                s.recv(10)
    finally:
        for s in stalled:
            s.close()


# -- front cache -----------------------------------------------------------------------------


def test_a_change_is_seen_by_the_very_next_identical_query(server: DnsNode) -> None:
    q = dns.message.make_query(FLIP, "A")
    q.id = 0x5151
    wire = q.to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        first = parse(udp_raw(server, wire, s))
        again = parse(udp_raw(server, wire, s))  # served from the front cache
        assert addresses(first) == addresses(again) and len(addresses(first)) == 1
        dc = next(k for k, v in FLIP_ADDR.items() if v == addresses(first)[0])
        other = "edge2" if dc == "edge1" else "edge1"
        status, _ = admin_call(
            server.base,
            "PUT",
            f"/api/v1/datacenters/{dc}",
            {"kind": "cloud", "writable": True, "drained": True},
        )
        assert status == 200
        try:
            after = parse(udp_raw(server, wire, s))
            assert after.id == 0x5151
            assert addresses(after) == [FLIP_ADDR[other]]
            # TCP too (its own cache entry)
            assert addresses(parse(tcp_exchange(server, wire))) == [FLIP_ADDR[other]]
        finally:
            status, _ = admin_call(
                server.base,
                "PUT",
                f"/api/v1/datacenters/{dc}",
                {"kind": "cloud", "writable": True, "drained": False},
            )
            assert status == 200
        assert addresses(parse(udp_raw(server, wire, s))) == [FLIP_ADDR[dc]]


def test_a_new_service_replaces_a_cached_nxdomain(server: DnsNode) -> None:
    name = f"late.{ZONE}"
    q = dns.message.make_query(name, "A")
    wire = q.to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        assert parse(udp_raw(server, wire, s)).rcode() == dns.rcode.NXDOMAIN
        assert parse(udp_raw(server, wire, s)).rcode() == dns.rcode.NXDOMAIN
        api = f"/api/v1/services/{name}"
        body = {"access": "ro", "ttl": 20, "traffic": {"default": {"idc": 100}}}
        assert admin_call(server.base, "PUT", api, body)[0] in (200, 201)
        ep = {"dc": "idc", "address": "192.0.2.55", "port": 443, "version": "v1"}
        assert admin_call(server.base, "PUT", f"{api}/endpoints/e1", ep)[0] in (200, 201)
        r = parse(udp_raw(server, wire, s))
        assert r.rcode() == dns.rcode.NOERROR and addresses(r) == ["192.0.2.55"]
        assert admin_call(server.base, "DELETE", api)[0] == 200
        assert parse(udp_raw(server, wire, s)).rcode() == dns.rcode.NXDOMAIN


def test_the_listener_survives_everything(server: DnsNode) -> None:
    """Last in the module: after all the above, both transports still answer."""
    assert server.node.proc is not None and server.node.proc.poll() is None
    assert addresses(udp(server, dns.message.make_query(SHOP, "A"))) == d_answer(server, SHOP)
    assert addresses(tcp(server, dns.message.make_query(PAY, "A"))) == d_answer(server, PAY)
    log = Path(server.node.log).read_text(errors="replace")
    assert "Traceback" not in log and "failed to answer" not in log
