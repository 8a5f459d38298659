"""JSON API, Google style: ``GET /resolve?name=NAME&type=A&edns_client_subnet=1.2.3.0/24``.

Answers ``{"Status","TC","RD","RA","AD","CD","Question","Answer"}`` with the same
zone logic as DNS (``dnswire``): NXDOMAIN (Status 3) inside served zones with
the zone's SOA in ``Authority``, REFUSED (5) outside, the apex's SOA and NS,
in-zone nameservers' addresses, NOERROR with no Answer for other record types.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import orjson
from dnslib import QTYPE, RCODE, RR

from .. import dnswire
from ..errors import BadRequest
from ..table import AAAA, A, Deps
from .base import Context, Query, Reply, client, ecs_subnet, is_decimal, param, qname

_KNOWN_TYPES: dict[str, int] = {str(name): int(code) for code, name in QTYPE.forward.items()}


def qtype_of(text: str) -> int:
    """A record type from a mnemonic (``AAAA``) or number (``28``)."""
    if is_decimal(text):
        value = int(text)
        if not 1 <= value <= 65535:
            raise BadRequest(f"type: {text} is outside 1-65535")
        return value
    name = text.upper()
    if not name.isalnum() or name not in _KNOWN_TYPES:
        raise BadRequest(f"type: unknown record type {text!r}")
    return _KNOWN_TYPES[name]


def _flag(q: Query, name: str) -> bool:
    value = (param(q, name) or "0").lower()
    if value not in ("0", "1", "true", "false"):
        raise BadRequest(f"{name}: must be 0, 1, true or false")
    return value in ("1", "true")


def resolve_json(q: Query, ctx: Context) -> Reply:
    """Answer a JSON ``/resolve`` query."""
    raw_name = param(q, "name", required=True) or ""
    name = qname("name", raw_name)
    qtype = qtype_of(param(q, "type") or "A")
    cd = _flag(q, "cd")
    _flag(q, "do")
    subnet = param(q, "edns_client_subnet")
    who = client(q, ctx, ecs_subnet(subnet) if subnet else None)
    body: dict[str, Any] = {
        "Status": RCODE.NOERROR,
        "TC": False,
        "RD": True,
        "RA": False,
        "AD": False,
        "CD": cd,
        "Question": [{"name": name + ".", "type": qtype}],
    }
    deps: Deps = []
    table = ctx.table
    zone = dnswire.zone_of(name, dnswire.served_zones(table, ctx.config))
    if zone is not None and name == zone.name and qtype in (QTYPE.SOA, QTYPE.NS):
        # The apex's own records, the same as over DNS (dnswire._apex); zone data can change
        # without a service changing, so the reply carries no deps and is never kept.
        records = [dnswire.soa(zone, table.revision)] if qtype == QTYPE.SOA else []
        records += dnswire.apex_ns(zone) if qtype == QTYPE.NS else []
        if records:
            body["Answer"] = [_rr_json(rr) for rr in records]
        else:
            body["Authority"] = [_rr_json(dnswire.soa(zone, table.revision))]
        return _reply(body, subnet, ())
    choice = table.resolve(name, AAAA if qtype == QTYPE.AAAA else A, who, deps)
    if choice is None:
        glue = dnswire.glue(zone, name, qtype) if zone and qtype in (QTYPE.A, QTYPE.AAAA) else []
        if zone is None:
            body["Status"] = RCODE.REFUSED
        elif glue:
            body["Answer"] = [_rr_json(rr) for rr in glue]
        else:
            exists = dnswire.exists(name, zone, table)
            body["Status"] = RCODE.NOERROR if exists else RCODE.NXDOMAIN
            body["Authority"] = [_rr_json(dnswire.soa(zone, table.revision))]
        return _reply(body, subnet, ())  # depends on zones too: never kept (see above)
    if qtype in (QTYPE.A, QTYPE.AAAA) and choice.addresses:
        body["Answer"] = [
            {"name": name + ".", "type": qtype, "TTL": choice.ttl, "data": addr}
            for addr in choice.addresses
        ]
    elif zone is not None:
        body["Authority"] = [_rr_json(dnswire.soa(zone, table.revision))]
        return _reply(body, subnet, ())
    return _reply(body, subnet, tuple(deps))


def _reply(body: dict[str, Any], subnet: str | None, deps: tuple[tuple[str, object], ...]) -> Reply:
    if subnet:
        body["edns_client_subnet"] = str(ipaddress.ip_network(subnet, strict=False))
    return Reply(200, "application/json", orjson.dumps(body), (), deps)


def _rr_json(rr: RR) -> dict[str, Any]:
    """One record in the JSON API's shape (``data`` in presentation format)."""
    return {"name": str(rr.rname), "type": int(rr.rtype), "TTL": rr.ttl, "data": rr.rdata.toZone()}
