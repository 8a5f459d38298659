"""DNSPod / Tencent style ``GET /d?dn=NAME&ip=&ttl=1&type=a|aaaa|addrs&clientip=1``.

Text answer ``ip1;ip2`` (``,TTL`` with ``ttl=1``; ``|CLIENTIP`` with
``clientip=1``). ``type=addrs`` gives ``v4;v4-v6;v6``. Empty body when nothing.
With ``id=ACCOUNT`` the request is the encrypted dialect (``dnspod_crypto``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import BadRequest
from ..table import AAAA, A, Deps
from .base import Context, Query, Reply, client, param, qname, text_reply
from .dnspod_crypto import resolve_encrypted
from .dnspod_lane import Host, Lane, lane
from .dnspod_miss import PARAMS as MISS_PARAMS
from .dnspod_miss import MissLane

if TYPE_CHECKING:
    from ..routes import Route

_TYPES = {"a": (A,), "aaaa": (AAAA,), "addrs": (A, AAAA)}


def resolve_d(q: Query, ctx: Context) -> Reply:
    """Answer a ``/d`` query (encrypted when it names an account with ``id``)."""
    if "id" in q.params:
        return resolve_encrypted(q, ctx, _resolve_plain)
    return _resolve_plain(q, ctx)


def lane_d(host: Host, route: Route) -> Lane:
    """The fast path's lane for encrypted ``/d`` (AES), answering through the plain dialect."""
    return lane(host, route, _resolve_plain)


def miss_lane_d(
    host: Host, route: Route, frame: Callable[[Reply], tuple[bytes, bytes]]
) -> MissLane:
    """The fast path's miss lane for plain ``/d?dn=&ip=`` (``dnspod_miss``): the same
    answers as ``_resolve_plain`` when a bucket map decides them."""
    keepable = all(p in route.params for p in MISS_PARAMS)
    return MissLane(host.table, host.stats, frame, route.metric, keepable)


def _resolve_plain(q: Query, ctx: Context) -> Reply:
    """The plain dialect (the encrypted one answers through it too)."""
    name = qname("dn", param(q, "dn", required=True) or "")
    kind = (param(q, "type") or "a").lower()
    qtypes = _TYPES.get(kind)
    if qtypes is None:
        raise BadRequest(f"type: {kind!r} is not a, aaaa or addrs")
    who = client(q, ctx)
    parts: list[str] = []
    ttl = None
    deps: Deps = []
    for qtype in qtypes:
        choice = ctx.table.resolve(name, qtype, who, deps)
        if choice is None:
            return text_reply("", deps)
        parts.append(";".join(choice.addresses))
        ttl = choice.ttl if ttl is None else min(ttl, choice.ttl)
    if not any(parts):
        return text_reply("", deps)
    body = "-".join(parts)
    if q.params.get("ttl") == "1":
        body += f",{ttl}"
    if q.params.get("clientip") == "1":
        body += "|" + (who.address_text() or "")
    return text_reply(body, deps)
