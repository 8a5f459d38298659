"""DNS messages: parse a query, answer it from the routing table, encode the reply.

Shared by DoH (RFC 8484) and the plain DNS listener. Uses dnslib for the wire
format. Rules (DESIGN §6): names the node serves get their steered addresses;
other names get NXDOMAIN inside configured zones (with the zone's SOA) and
REFUSED outside them (no open recursion). EDNS Client Subnet (RFC 7871) is
honoured and echoed with scope = the steering key's prefix length, so
resolvers cache at the steering granularity.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from dnslib import AAAA as AAAA_RD
from dnslib import (
    EDNS0,
    QTYPE,
    RCODE,
    RR,
    SOA,
    DNSBuffer,
    DNSHeader,
    DNSLabel,
    DNSQuestion,
    DNSRecord,
    EDNSOption,
)
from dnslib import A as A_RD

from registry.errors import ValidationError
from registry.validation import dns_name

from .config import Config
from .errors import BadRequest
from .table import AAAA, A, Client, Deps, RoutingTable

ECS_OPTION = 8
NEGATIVE_TTL = 30
EDNS_PAYLOAD = 1232  # the DNS flag day 2020 recommendation
BADVERS = 16  # extended rcode: 1 in the OPT record, 0 in the header
MAX_NAME = 255  # octets of a name in wire form (RFC 1035 §2.3.4)


class MalformedMessage(BadRequest):
    """The DNS message cannot be decoded."""

    code = "malformed_dns_message"


@dataclass(frozen=True, slots=True)
class WireReply:
    """An encoded DNS reply and what HTTP needs to know about it."""

    wire: bytes
    rcode: int
    min_ttl: int  # smallest answer TTL, or the negative TTL when there are none
    deps: tuple[tuple[str, object], ...] = ()  # what the answer was computed from


@dataclass(frozen=True, slots=True)
class Ecs:
    """A parsed EDNS Client Subnet option."""

    family: int
    source: int
    address: str
    raw_address: bytes


def parse(wire: bytes) -> DNSRecord:
    """Decode a DNS message or raise MalformedMessage.

    Strict: every byte must belong to a section the header announces (no trailing
    bytes), and no name may exceed 255 octets.
    """
    if len(wire) < 12:
        raise MalformedMessage(f"a DNS message is at least 12 bytes, got {len(wire)}")
    buffer = DNSBuffer(wire)
    try:
        header = DNSHeader.parse(buffer)
        questions = [DNSQuestion.parse(buffer) for _ in range(header.q)]
        sections = [
            [RR.parse(buffer) for _ in range(n)] for n in (header.a, header.auth, header.ar)
        ]
    except Exception as exc:  # dnslib raises many kinds on hostile input; all mean "malformed"
        raise MalformedMessage(f"cannot decode the DNS message: {type(exc).__name__}") from None
    if buffer.remaining():
        raise MalformedMessage(f"{buffer.remaining()} bytes after the last record")
    for q in questions:
        if sum(len(label) + 1 for label in q.qname.label) + 1 > MAX_NAME:
            raise MalformedMessage("the question's name is over 255 octets")
    return DNSRecord(header, questions, sections[0], auth=sections[1], ar=sections[2])


def _ecs(record: DNSRecord) -> Ecs | None:
    for rr in record.ar:
        if rr.rtype != QTYPE.OPT:
            continue
        for opt in rr.rdata or []:
            if opt.code != ECS_OPTION:
                continue
            data = bytes(opt.data)
            if len(data) < 4:
                raise MalformedMessage("ECS option shorter than 4 bytes")
            family = int.from_bytes(data[:2], "big")
            source = data[2]
            raw = data[4:]
            width = {1: 4, 2: 16}.get(family)
            if width is None or source > width * 8 or len(raw) != (source + 7) // 8:
                raise MalformedMessage("ECS option with a bad family, prefix or address length")
            packed = raw + bytes(width - len(raw))
            addr = str(ipaddress.ip_address(packed))
            return Ecs(family, source, addr, raw)
    return None


def soa(zone: str, revision: int) -> RR:
    """The synthesised SOA of a configured zone (serial = registry revision)."""
    return RR(
        zone + ".",
        QTYPE.SOA,
        ttl=NEGATIVE_TTL,
        rdata=SOA(
            f"ns1.{zone}.", f"hostmaster.{zone}.", (revision, 3600, 600, 86400, NEGATIVE_TTL)
        ),
    )


def answer(
    wire: bytes,
    table: RoutingTable,
    config: Config,
    who: Callable[[str | None], Client],
    udp: bool = False,
) -> WireReply:
    """Answer one DNS query message. ``who(ecs_address)`` gives the client to steer for.

    With ``udp`` the reply is truncated (TC set, no records) when it exceeds the
    client's EDNS payload size (512 without EDNS), so the client retries over TCP.
    """
    request = parse(wire)
    header = request.header
    deps: Deps = []
    reply = DNSRecord(
        header=type(header)(id=header.id, qr=1, aa=1, ra=0, rd=header.rd, opcode=header.opcode),
        q=request.q if request.questions else None,
    )
    edns = next((rr for rr in request.ar if rr.rtype == QTYPE.OPT), None)
    limit = None
    if udp:
        limit = max(512, min(int(edns.rclass), EDNS_PAYLOAD)) if edns is not None else 512

    def done(
        rcode: int, min_ttl: int = 0, scope: int | None = None, ecs: Ecs | None = None
    ) -> WireReply:
        reply.header.rcode = rcode & 0xF
        opt = None
        if edns is not None:
            opts = []
            if ecs is not None:
                opts.append(
                    EDNSOption(
                        ECS_OPTION,
                        ecs.family.to_bytes(2, "big")
                        + bytes([ecs.source, scope or 0])
                        + ecs.raw_address,
                    )
                )
            opt = EDNS0(udp_len=EDNS_PAYLOAD, ext_rcode=rcode >> 4, opts=opts)
            reply.add_ar(opt)
        packed = bytes(reply.pack())
        if limit is not None and len(packed) > limit:
            short = DNSRecord(header=reply.header, q=reply.q)
            short.header.tc = 1
            if opt is not None:
                short.add_ar(opt)
            packed = bytes(short.pack())
        return WireReply(packed, rcode, min_ttl, tuple(deps))

    if header.qr:
        raise MalformedMessage("the message is a response, not a query")
    if header.opcode != 0:
        return done(RCODE.NOTIMP)
    if len(request.questions) != 1:
        return done(RCODE.FORMERR)
    if edns is not None and (edns.ttl >> 16) & 0xFF != 0:
        return done(BADVERS)  # RFC 6891 §6.1.3: we speak EDNS version 0 only
    question = request.q
    if question.qclass not in (1, 255):  # IN, ANY
        return done(RCODE.REFUSED)  # only Internet-class data lives here
    ecs = _ecs(request)
    text = str(question.qname).lower().rstrip(".")
    try:
        name: str | None = dns_name("name", text)
    except ValidationError:
        name = None  # legal in DNS (a wildcard, the root) but never a service name
    client = who(ecs.address if ecs else None)
    qtype = question.qtype
    svc_choice = (
        table.resolve(name, A if qtype != QTYPE.AAAA else AAAA, client, deps) if name else None
    )
    scope = client.prefix_len if ecs else None
    if svc_choice is None:
        zone = config.zone_of(text) if text else None
        if zone is None:
            return done(RCODE.REFUSED, 0, scope, ecs)
        if text == zone or table.has_descendants(text):
            # The apex and empty non-terminals exist: NODATA, not NXDOMAIN (RFC 8020).
            if text == zone and qtype in (QTYPE.SOA, QTYPE.ANY):
                reply.add_answer(soa(zone, table.revision))
                return done(RCODE.NOERROR, NEGATIVE_TTL, scope, ecs)
            reply.add_auth(soa(zone, table.revision))
            return done(RCODE.NOERROR, NEGATIVE_TTL, scope, ecs)
        reply.add_auth(soa(zone, table.revision))
        return done(RCODE.NXDOMAIN, NEGATIVE_TTL, scope, ecs)
    if qtype not in (QTYPE.A, QTYPE.AAAA, QTYPE.ANY) or not svc_choice.addresses:
        zone = config.zone_of(text)
        if zone is not None:
            reply.add_auth(soa(zone, table.revision))
        return done(RCODE.NOERROR, NEGATIVE_TTL, scope, ecs)
    rdata = A_RD if qtype != QTYPE.AAAA else AAAA_RD
    rtype = QTYPE.A if qtype != QTYPE.AAAA else QTYPE.AAAA
    label = DNSLabel(question.qname)
    for addr in svc_choice.addresses:
        reply.add_answer(RR(label, rtype, ttl=svc_choice.ttl, rdata=rdata(addr)))
    return done(RCODE.NOERROR, svc_choice.ttl, scope, ecs)


def formerr(wire: bytes) -> bytes | None:
    """A FORMERR reply echoing the ID and opcode, or None when not even a header came."""
    if len(wire) < 12:
        return None
    flags = 0x8000 | (wire[2] & 0x78) << 8 | int(RCODE.FORMERR)  # QR, the query's opcode
    return wire[:2] + flags.to_bytes(2, "big") + bytes(8)
