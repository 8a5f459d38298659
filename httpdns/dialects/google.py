"""JSON API, Google style: ``GET /resolve?name=NAME&type=A&edns_client_subnet=1.2.3.0/24``.

Answers ``{"Status","TC","RD","RA","AD","CD","Question","Answer"}`` with DNS
semantics: NXDOMAIN (Status 3) inside configured zones, REFUSED (5) outside,
NOERROR with no Answer for record types other than A/AAAA.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import orjson
from dnslib import QTYPE, RCODE

from ..errors import BadRequest
from ..table import AAAA, A, Deps
from .base import Context, Query, Reply, client, ecs_subnet, is_decimal, param, qname

NEGATIVE_TTL = 30
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
    choice = ctx.table.resolve(name, AAAA if qtype == QTYPE.AAAA else A, who, deps)
    if choice is None:
        zone = ctx.config.zone_of(name)
        exists = zone is not None and (name == zone or ctx.table.has_descendants(name))
        body["Status"] = RCODE.NOERROR if exists else RCODE.NXDOMAIN if zone else RCODE.REFUSED
        if zone:
            body["Authority"] = [_soa_json(zone, ctx.table.revision)]
    elif qtype in (QTYPE.A, QTYPE.AAAA) and choice.addresses:
        body["Answer"] = [
            {"name": name + ".", "type": qtype, "TTL": choice.ttl, "data": addr}
            for addr in choice.addresses
        ]
    if subnet:
        body["edns_client_subnet"] = str(ipaddress.ip_network(subnet, strict=False))
    return Reply(200, "application/json", orjson.dumps(body), (), tuple(deps))


def _soa_json(zone: str, revision: int) -> dict[str, Any]:
    data = f"ns1.{zone}. hostmaster.{zone}. {revision} 3600 600 86400 {NEGATIVE_TTL}"
    return {"name": zone + ".", "type": int(QTYPE.SOA), "TTL": NEGATIVE_TTL, "data": data}
