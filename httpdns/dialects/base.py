"""What every query dialect shares: the request and reply shapes, the context,
the client address rules (DESIGN §3.1) and name parsing.

Dialects are plain functions ``(Query, Context) -> Reply`` with no web
framework objects, so any HTTP front end (aiohttp, a lean protocol) can serve them.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from registry.errors import ValidationError
from registry.validation import dns_name

from ..cache import BoundedCache
from ..config import Config
from ..errors import BadRequest
from ..table import Client, Deps, RoutingTable

_UID = re.compile(r"^[\x21-\x7e]{1,128}$")


@dataclass(frozen=True, slots=True)
class Query:
    """One HTTP query, reduced to what dialects need."""

    params: Mapping[str, str]
    peer: str | None = None
    forwarded_for: str | None = None
    account: str | None = None
    body: bytes | None = None
    content_type: str | None = None
    method: str = "GET"


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP reply: status, media type, body and extra headers.

    ``deps`` names the services the answer was computed from (``RoutingTable.resolve``):
    a front end may keep the encoded reply while ``table.still_valid(deps)``.
    """

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    deps: tuple[tuple[str, object], ...] = ()


def _no_health() -> dict[str, object]:
    return {"status": "ok"}


@dataclass(frozen=True, slots=True)
class Context:
    """What dialects read: the live routing table, the config, a clock and the node's
    health (``/healthz``)."""

    table: RoutingTable
    config: Config
    clock: Callable[[], float] = field(default=time.time)
    health: Callable[[], Mapping[str, object]] = field(default=_no_health)


def is_decimal(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts superscripts, which ``int`` refuses,
    and other scripts' digits."""
    return text.isascii() and text.isdigit()


def param(q: Query, name: str, required: bool = False) -> str | None:
    """A query parameter, or BadRequest if required and missing/empty."""
    value = q.params.get(name)
    if required and not value:
        raise BadRequest(f"missing parameter {name!r}")
    return value or None


def qname(field_name: str, text: str) -> str:
    """A queried name, validated and normalised (lower case, no trailing dot)."""
    name = _NAMES.get(text)
    if name is not None:
        return name
    try:
        name = dns_name(field_name, text)
    except ValidationError as exc:
        raise BadRequest(exc.detail) from None
    _NAMES.put(text, name)
    return name


# Queried names as sent -> validated (a handful of services answer most queries; the label
# checks cost more than the rest of a miss's parsing). Valid names only; names are the
# client's, so at most MAX_NAMES, oldest out first.
MAX_NAMES = 4096
_NAMES: BoundedCache[str, str] = BoundedCache(MAX_NAMES)


def client(q: Query, ctx: Context, ecs: str | None = None) -> Client:
    """The client steering uses: ``ip`` param, else ECS, else X-Forwarded-For
    from a trusted proxy, else the peer; ``uid`` as device id."""
    uid = q.params.get("uid") or None
    if uid is not None and not _UID.match(uid):
        raise BadRequest("uid: 1-128 printable ASCII characters without spaces")
    ip = q.params.get("ip") or ecs or real_peer(q, ctx.config)
    try:
        return Client.of(ip, uid)
    except ValueError:
        raise BadRequest(f"ip: {ip!r} is not an IPv4 or IPv6 address") from None


def real_peer(q: Query, config: Config) -> str | None:
    """The peer, or the first untrusted hop of X-Forwarded-For when the peer is a trusted proxy."""
    peer = q.peer
    if not peer or not q.forwarded_for or not config.trusted_proxies:
        return peer
    if not _trusted(peer, config):
        return peer
    for hop in reversed([h.strip() for h in q.forwarded_for.split(",")]):
        if not hop:
            continue
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a garbled header is ignored, not trusted
        if not _trusted(hop, config):
            return hop
        peer = hop
    return peer


def _trusted(addr: str, config: Config) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in net for net in config.trusted_proxies)


def ecs_subnet(text: str) -> str:
    """The address of an ``edns_client_subnet`` value like ``1.2.3.0/24``."""
    try:
        return str(ipaddress.ip_network(text, strict=False).network_address)
    except ValueError:
        raise BadRequest(f"edns_client_subnet: {text!r} is not an address or subnet") from None


def text_reply(body: str, deps: Deps, status: int = 200) -> Reply:
    """A text/plain reply computed from ``deps``."""
    return Reply(status, "text/plain; charset=utf-8", body.encode(), (), tuple(deps))
