"""DNS messages: parse a query, answer it from the routing table, encode the reply.

Shared by DoH (RFC 8484) and the plain DNS listener. Uses dnslib for the wire
format. Rules (DESIGN §6): names the node serves get their steered addresses;
other names get NXDOMAIN inside served zones (the registry's zones plus static
``--zone`` ones, with the zone's SOA) and REFUSED outside them (no open
recursion). A zone's apex answers SOA and NS, its in-zone nameservers their
addresses. EDNS Client Subnet (RFC 7871) is honoured and echoed with scope =
the steering key's prefix length where the answer depends on the client, 0
everywhere else (negative answers, zone data, single-answer services).

The common query — one A or AAAA question for a served name, at most an OPT
record (with or without ECS) — is answered without dnslib (``_fast``): the
question is echoed as sent, the answer records of each distinct address set
are encoded once and kept (``_records``), and the OPT record is written
directly; the bytes are those dnslib would pack (tests compare the two). Any
other message, and an answer that is empty or too large for UDP, takes the
general path.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dnslib import AAAA as AAAA_RD
from dnslib import (
    EDNS0,
    NS,
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
from registry.model import Zone
from registry.validation import dns_name

from .cache import BoundedCache
from .config import Config
from .errors import BadRequest
from .steering import Choice, CompiledService
from .table import AAAA, A, Client, Deps, RoutingTable

ECS_OPTION = 8
NEGATIVE_TTL = 30
EDNS_PAYLOAD = 1232  # the DNS flag day 2020 recommendation
BADVERS = 16  # extended rcode: 1 in the OPT record, 0 in the header
MAX_NAME = 255  # octets of a name in wire form (RFC 1035 §2.3.4)
DO_BIT = 0x8000  # in the OPT record's TTL field (RFC 3225)
NS_TTL = 3600  # apex NS and nameserver addresses: they change rarely
MAX_UNIFORM_MEMO = 50_000
MAX_ENCODED = 20_000  # distinct (address set, TTL, type) answer sections kept encoded


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
    # Built from zone data too (SOA, NS, glue, NXDOMAIN/NODATA/REFUSED): ``deps`` alone do
    # not say when it goes stale, so a cache must also watch the zones (see DnsEngine).
    zoned: bool = True


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


class _BadEcs(Exception):
    """An ECS option RFC 7871 §6 says to answer with FORMERR."""


def _ecs(opt: RR | None) -> Ecs | None:
    """The ECS option of the query's OPT record, or None; _BadEcs when malformed."""
    if opt is None:
        return None
    for option in opt.rdata or []:
        if option.code != ECS_OPTION:
            continue
        data = bytes(option.data)
        if len(data) < 4:
            raise _BadEcs("ECS option shorter than 4 bytes")
        family = int.from_bytes(data[:2], "big")
        source = data[2]
        raw = data[4:]
        width = {1: 4, 2: 16}.get(family)
        if width is None or source > width * 8 or len(raw) != (source + 7) // 8:
            raise _BadEcs("ECS option with a bad family, prefix or address length")
        if source % 8 and raw[-1] & (0xFF >> (source % 8)):
            raise _BadEcs("ECS address bits set past the source prefix")
        packed = raw + bytes(width - len(raw))
        addr = str(ipaddress.ip_address(packed))
        return Ecs(family, source, addr, raw)
    return None


# -- zones -------------------------------------------------------------------

_zone_memo: list[Any] = [None, None, {}]  # (registry zones, config zones, merged): one entry


def served_zones(table: RoutingTable, config: Config) -> Mapping[str, Zone]:
    """The zones this node answers for: the registry's plus the static ``--zone`` ones
    (a static zone the registry also holds takes the registry's record)."""
    registry = table.snapshot.zones
    memo = _zone_memo
    if memo[0] is registry and memo[1] is config.zones:
        return memo[2]  # type: ignore[no-any-return]
    merged: dict[str, Zone] = {z: Zone(z) for z in config.zones}
    merged.update(registry)
    memo[:] = [registry, config.zones, merged]
    return merged


def zone_of(name: str, zones: Mapping[str, Zone]) -> Zone | None:
    """The served zone holding ``name`` (the longest suffix), or None."""
    if not zones:
        return None
    while True:
        zone = zones.get(name)
        if zone is not None:
            return zone
        dot = name.find(".")
        if dot < 0:
            return None
        name = name[dot + 1 :]


def soa(zone: Zone | str, revision: int) -> RR:
    """The SOA of a served zone: mname the first nameserver, serial the registry revision."""
    if isinstance(zone, str):
        zone = Zone(zone)
    return RR(
        zone.name + ".",
        QTYPE.SOA,
        ttl=zone.minimum,
        rdata=SOA(
            zone.primary + ".",
            zone.contact + ".",
            (revision, zone.refresh, zone.retry, zone.expire, zone.minimum),
        ),
    )


def _inside(name: str, zone: Zone) -> bool:
    return name == zone.name or name.endswith("." + zone.name)


def glue(zone: Zone, host: str, qtype: int) -> list[RR]:
    """Address records of an in-zone nameserver ``host`` for ``qtype`` (A, AAAA or ANY)."""
    out = []
    for addr in zone.nameservers.get(host, ()):
        v6 = ":" in addr
        if qtype == QTYPE.ANY or (qtype == QTYPE.AAAA) == v6:
            rtype, rdata = (QTYPE.AAAA, AAAA_RD) if v6 else (QTYPE.A, A_RD)
            out.append(RR(host + ".", rtype, ttl=NS_TTL, rdata=rdata(addr)))
    return out


def apex_ns(zone: Zone) -> list[RR]:
    """The zone's NS records."""
    return [RR(zone.name + ".", QTYPE.NS, ttl=NS_TTL, rdata=NS(h + ".")) for h in zone.nameservers]


def exists(name: str, zone: Zone, table: RoutingTable) -> bool:
    """Whether ``name`` (not a service) exists in ``zone``: the apex, a nameserver, or an
    empty non-terminal above a service or a nameserver (NODATA, not NXDOMAIN: RFC 8020)."""
    if name == zone.name or name in zone.nameservers or table.has_descendants(name):
        return True
    tail = "." + name
    return any(h.endswith(tail) for h in zone.nameservers)


# -- ECS scope ---------------------------------------------------------------

# (service name, family) -> (the compiled service it was computed for, verdict): one
# entry per name, so it never holds more than the current services (plus the odd
# replaced one until its name is asked for again).
_uniform_memo: dict[tuple[str, int], tuple[CompiledService, bool]] = {}


def uniform(svc: CompiledService, family: int) -> bool:
    """Whether every client gets the same address set for ``svc`` (then the answer does not
    depend on the client subnet: ECS scope 0). Conservative: no canary, at most one usable
    datacenter reachable from every region, and no pool larger than the answer size."""
    key = (svc.name, family)
    hit = _uniform_memo.get(key)
    if hit is not None and hit[0] is svc:
        return hit[1]
    dcs = {dc for table in svc.tables.values() for dc, _, _ in table}
    same = svc.canary is None and len(dcs) <= 1
    if same and dcs:
        (dc,) = dcs
        same = bool(svc.tables.get("default")) and all(
            len(pool.addresses) <= svc.answers
            for (fam, at, _, _), pool in svc.pools.items()
            if fam == family and at == dc
        )
    if len(_uniform_memo) >= MAX_UNIFORM_MEMO:
        _uniform_memo.clear()
    _uniform_memo[key] = (svc, same)
    return same


# -- answering ---------------------------------------------------------------


def answer(
    wire: bytes,
    table: RoutingTable,
    config: Config,
    who: Callable[[str | None], Client],
    udp: bool = False,
) -> WireReply:
    """Answer one DNS query message. ``who(ecs_address)`` gives the client to steer for
    (None: no usable ECS, steer by the peer).

    With ``udp`` the reply is truncated (TC set, no records) when it exceeds the
    client's EDNS payload size (512 without EDNS), so the client retries over TCP.
    AA is set only on answers from our own data (services, served zones).
    """
    fast = _fast(wire, table, who, udp)
    if type(fast) is WireReply:
        return fast
    return _answer(wire, table, config, who, udp, fast)  # type: ignore[arg-type]


# -- the common query, without dnslib ------------------------------------------

_NAME_BYTES = bytes(range(256)).translate(
    None, b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
)  # every byte a service name's label cannot hold
_Decided = tuple[Client, Choice, Deps]  # a decision ``_fast`` made and left to ``_answer``
_records: BoundedCache[tuple[tuple[str, ...], int, int], bytes] = BoundedCache(MAX_ENCODED)


def _encoded(addresses: tuple[str, ...], ttl: int, rtype: int) -> bytes:
    """The answer records for ``addresses``, each owned by the question's name (a
    compression pointer to offset 12), encoded once per distinct (addresses, TTL, type)."""
    key = (addresses, ttl, rtype)
    out = _records.get(key)
    if out is None:
        family, size = (socket.AF_INET, 4) if rtype == A else (socket.AF_INET6, 16)
        fixed = b"\xc0\x0c" + rtype.to_bytes(2, "big") + b"\0\1" + ttl.to_bytes(4, "big")
        fixed += size.to_bytes(2, "big")
        out = b"".join(fixed + socket.inet_pton(family, a) for a in addresses)
        _records.put(key, out)
    return out


def _fast(
    wire: bytes, table: RoutingTable, who: Callable[[str | None], Client], udp: bool
) -> WireReply | _Decided | None:
    """The reply to the common query (see the module's docstring); None when the message
    is anything else, or the decision when the reply needs the general path."""
    n = len(wire)
    # a query (QR 0), opcode 0; one question, no answer or authority records, 0-1 additional
    if n < 17 or wire[2] & 0xF8 or wire[4:10] != b"\0\1\0\0\0\0" or wire[10] or wire[11] > 1:
        return None
    labels = []
    i = 12
    size = wire[i]
    while size:
        if size > 63 or i + size + 1 >= n:
            return None  # a compression pointer, or past the end
        labels.append(wire[i + 1 : i + 1 + size])
        i += size + 1
        size = wire[i]
    if i + 5 > n or i - 11 > MAX_NAME or not labels:
        return None
    joined = b"".join(labels)
    if len(joined.translate(None, _NAME_BYTES)) != len(joined):
        return None  # dots, escapes or binary inside labels: never a service name
    qtype = (wire[i + 1] << 8) | wire[i + 2]
    if (qtype != A and qtype != AAAA) or wire[i + 3 : i + 5] != b"\0\1":
        return None
    end = i + 5  # the question's end
    ecs: Ecs | None = None
    if wire[11]:  # the additional record: an OPT record of EDNS version 0, nothing after it
        if n < end + 11 or wire[end : end + 3] != b"\0\0\x29" or wire[end + 6]:
            return None
        rdlen = (wire[end + 9] << 8) | wire[end + 10]
        if end + 11 + rdlen != n:
            return None
        at = end + 11
        while at < n:  # the options; the first ECS one counts (as in ``_ecs``)
            if at + 4 > n:
                return None
            code = (wire[at] << 8) | wire[at + 1]
            length = (wire[at + 2] << 8) | wire[at + 3]
            if at + 4 + length > n:
                return None
            if code == ECS_OPTION and ecs is None:
                ecs = _fast_ecs(wire[at + 4 : at + 4 + length])
                if ecs is None:
                    return None  # malformed: FORMERR from the general path
            at += 4 + length
    elif end != n:
        return None
    name = b".".join(labels).lower().decode()
    # compiled services first (a C dict): the registry's mapping may be lazily decoded
    if name not in table.by_name and name not in table.snapshot.services:
        return None  # NXDOMAIN, REFUSED, zone data: the general path
    client = who(ecs.address if ecs is not None and ecs.source else None)
    deps: Deps = []
    choice = table.resolve(name, qtype, client, deps)
    if choice is None or not choice.addresses:
        return (client, choice, deps) if choice is not None else None
    records = _encoded(choice.addresses, choice.ttl, qtype)
    flags = 0x8400 | (wire[2] & 0x01) << 8 | (wire[3] & 0x10)  # QR, AA; RD and CD as asked
    # ID, flags, one question, the answers, no authority, the OPT record if the query had one
    head = (
        wire[:2]
        + ((flags << 16) | 1).to_bytes(4, "big")
        + len(choice.addresses).to_bytes(2, "big")
        + (b"\0\0\0\1" if wire[11] else b"\0\0\0\0")
    )
    if wire[11]:
        option = b""
        if ecs is not None:
            scope = 0
            if ecs.source:
                svc = deps[-1][1]
                if svc is not None and not uniform(svc, 6 if qtype == AAAA else 4):
                    scope = client.prefix_len
            data = bytes((0, ecs.family, ecs.source, scope)) + ecs.raw_address
            option = bytes((0, ECS_OPTION, 0, len(data))) + data
        do = wire[end + 7] & 0x80  # RFC 3225: DO is copied into the reply
        # root name, type OPT, our payload size, extended rcode 0, version 0, DO, no Z
        opt = bytes((0, 0, 0x29, EDNS_PAYLOAD >> 8, EDNS_PAYLOAD & 0xFF, 0, 0, do, 0))
        reply = head + wire[12:end] + records + opt + len(option).to_bytes(2, "big") + option
        limit = max(512, min((wire[end + 3] << 8) | wire[end + 4], EDNS_PAYLOAD))
    else:
        reply = head + wire[12:end] + records
        limit = 512
    if udp and len(reply) > limit:
        return (client, choice, deps)  # truncated: the general path writes it
    return WireReply(reply, 0, choice.ttl, tuple(deps), False)


def _fast_ecs(data: bytes) -> Ecs | None:
    """``_ecs`` for one option's data; None when malformed."""
    if len(data) < 4 or data[0]:
        return None
    family, source, raw = data[1], data[2], data[4:]
    width = 4 if family == 1 else 16 if family == 2 else 0
    if not width or source > width * 8 or len(raw) != (source + 7) // 8:
        return None
    if source % 8 and raw[-1] & (0xFF >> (source % 8)):
        return None
    packed = raw + bytes(width - len(raw))
    address = socket.inet_ntop(socket.AF_INET if width == 4 else socket.AF_INET6, packed)
    return Ecs(family, source, address, raw)


def _answer(
    wire: bytes,
    table: RoutingTable,
    config: Config,
    who: Callable[[str | None], Client],
    udp: bool,
    decided: _Decided | None,
) -> WireReply:
    """``answer`` by dnslib, for every message; ``decided``: the decision ``_fast`` made."""
    request = parse(wire)
    header = request.header
    deps: Deps = []
    reply = DNSRecord(
        header=type(header)(
            id=header.id, qr=1, aa=0, ra=0, rd=header.rd, cd=header.cd, opcode=header.opcode
        ),
        q=request.q if request.questions else None,
    )
    opts = [rr for rr in request.ar if rr.rtype == QTYPE.OPT]
    edns = opts[0] if opts else None
    limit = None
    if udp:
        limit = max(512, min(int(edns.rclass), EDNS_PAYLOAD)) if edns is not None else 512

    def done(
        rcode: int, min_ttl: int = 0, scope: int = 0, ecs: Ecs | None = None, zoned: bool = True
    ) -> WireReply:
        reply.header.rcode = rcode & 0xF
        opt = None
        if edns is not None:
            echo = []
            if ecs is not None:
                echo.append(
                    EDNSOption(
                        ECS_OPTION,
                        ecs.family.to_bytes(2, "big")
                        + bytes([ecs.source, scope])
                        + ecs.raw_address,
                    )
                )
            flags = "do" if edns.ttl & DO_BIT else ""  # RFC 3225: DO is copied into the reply
            opt = EDNS0(udp_len=EDNS_PAYLOAD, ext_rcode=rcode >> 4, flags=flags, opts=echo)
            reply.add_ar(opt)
        packed = bytes(reply.pack())
        if limit is not None and len(packed) > limit:
            short = DNSRecord(header=reply.header, q=reply.q)
            short.header.tc = 1
            if opt is not None:
                short.add_ar(opt)
            packed = bytes(short.pack())
        return WireReply(packed, rcode, min_ttl, tuple(deps), zoned)

    if header.qr:
        raise MalformedMessage("the message is a response, not a query")
    if len(opts) > 1:
        edns = None  # RFC 6891 §6.1.1: FORMERR, and no OPT of ours to echo
        return done(RCODE.FORMERR)
    if header.opcode != 0:
        return done(RCODE.NOTIMP)
    if len(request.questions) != 1:
        return done(RCODE.FORMERR)
    if edns is not None and (edns.ttl >> 16) & 0xFF != 0:
        return done(BADVERS)  # RFC 6891 §6.1.3: we speak EDNS version 0 only
    try:
        ecs = _ecs(edns)
    except _BadEcs:
        return done(RCODE.FORMERR)  # RFC 7871 §6, without echoing the bad option
    question = request.q
    if question.qclass not in (1, 255):  # IN, ANY
        return done(RCODE.REFUSED, 0, 0, ecs)  # only Internet-class data lives here
    qtype = question.qtype
    if qtype in (QTYPE.AXFR, QTYPE.IXFR):
        return done(RCODE.REFUSED, 0, 0, ecs)  # no zone transfers: the data is computed
    text = str(question.qname).lower().rstrip(".")
    zone = zone_of(text, served_zones(table, config)) if text else None
    if zone is not None and text == zone.name and qtype in (QTYPE.SOA, QTYPE.NS, QTYPE.ANY):
        return _apex(reply, zone, qtype, table, done, ecs)
    try:
        name: str | None = dns_name("name", text)
    except ValidationError:
        name = None  # legal in DNS (a wildcard, the root) but never a service name
    # ECS source prefix 0: the client opted out, steer by the resolver itself (RFC 7871 §7.1.2)
    svc_choice: Choice | None
    if decided is not None:
        client, svc_choice, deps[:] = decided
    else:
        client = who(ecs.address if ecs and ecs.source else None)
        family_qtype = A if qtype != QTYPE.AAAA else AAAA
        if table.unavailable is not None:  # no registry at all: let the resolver ask another
            return done(RCODE.SERVFAIL, 0, 0, ecs)
        svc_choice = table.resolve(name, family_qtype, client, deps) if name else None
    if svc_choice is None:
        if zone is None:
            return done(RCODE.REFUSED, 0, 0, ecs)
        reply.header.aa = 1
        if text in zone.nameservers and qtype in (QTYPE.A, QTYPE.AAAA, QTYPE.ANY):
            records = glue(zone, text, qtype)
            for rr in records:
                reply.add_answer(rr)
            if records:
                return done(RCODE.NOERROR, NS_TTL, 0, ecs)
        reply.add_auth(soa(zone, table.revision))
        rcode = RCODE.NOERROR if exists(text, zone, table) else RCODE.NXDOMAIN
        return done(rcode, zone.minimum, 0, ecs)
    reply.header.aa = 1
    if qtype not in (QTYPE.A, QTYPE.AAAA, QTYPE.ANY) or not svc_choice.addresses:
        if zone is not None:
            reply.add_auth(soa(zone, table.revision))
        return done(RCODE.NOERROR, zone.minimum if zone else NEGATIVE_TTL, 0, ecs)
    rdata = A_RD if qtype != QTYPE.AAAA else AAAA_RD
    rtype = QTYPE.A if qtype != QTYPE.AAAA else QTYPE.AAAA
    label = DNSLabel(question.qname)
    for addr in svc_choice.addresses:
        reply.add_answer(RR(label, rtype, ttl=svc_choice.ttl, rdata=rdata(addr)))
    scope = 0
    if ecs is not None and ecs.source:
        svc = deps[-1][1]
        if svc is not None and not uniform(svc, 6 if qtype == QTYPE.AAAA else 4):
            scope = client.prefix_len
    return done(RCODE.NOERROR, svc_choice.ttl, scope, ecs, zoned=False)


def _apex(
    reply: DNSRecord,
    zone: Zone,
    qtype: int,
    table: RoutingTable,
    done: Callable[[int, int, int, Ecs | None], WireReply],
    ecs: Ecs | None,
) -> WireReply:
    """SOA, NS or ANY at a zone's apex: the records, with in-zone nameservers' glue."""
    reply.header.aa = 1
    if qtype in (QTYPE.SOA, QTYPE.ANY):
        reply.add_answer(soa(zone, table.revision))
    if qtype in (QTYPE.NS, QTYPE.ANY) and zone.nameservers:
        for rr in apex_ns(zone):
            reply.add_answer(rr)
        for host in zone.nameservers:
            if _inside(host, zone):
                for rr in glue(zone, host, QTYPE.ANY):
                    reply.add_ar(rr)
    elif qtype == QTYPE.NS:
        reply.add_auth(soa(zone, table.revision))  # a static zone without nameservers: NODATA
    return done(RCODE.NOERROR, zone.minimum, 0, ecs)


def formerr(wire: bytes) -> bytes | None:
    """A FORMERR reply echoing the ID and opcode, or None when not even a header came."""
    if len(wire) < 12:
        return None
    flags = 0x8000 | (wire[2] & 0x78) << 8 | int(RCODE.FORMERR)  # QR, the query's opcode
    return wire[:2] + flags.to_bytes(2, "big") + bytes(8)
