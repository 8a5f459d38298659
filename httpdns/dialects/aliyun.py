"""Aliyun style: ``/{account}/d``, ``/{account}/resolve`` and their signed forms.

``GET /{account}/d?host=NAME&ip=&query=4|6|4,6`` answers
``{"host","ips","ipsv6","ttl","origin_ttl","client_ip"}``; ``/resolve`` takes
up to five comma-separated hosts and answers ``{"dns": [...]}``. The signed
paths ``sign_d`` / ``sign_resolve`` add ``t`` (unix expiry, at most 24 h
ahead) and ``s = md5("HOST-SECRET-t")`` in hex, HOST being the ``host``
parameter as sent.

Accounts come from the config; with none configured, account ``100000`` is
open for unsigned queries (a zero-configuration default).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson

from ..config import Account
from ..errors import BadRequest, InvalidSignature, NotFound, SignatureExpired
from ..table import AAAA, A, Client, Deps
from .base import Context, Query, Reply, client, is_decimal, param, qname

MAX_HOSTS = 5
MAX_AHEAD = 86400
NEGATIVE_TTL = 30
DEFAULT_ACCOUNT = Account("100000")


def _account(q: Query, ctx: Context) -> Account:
    accounts = ctx.config.accounts or {DEFAULT_ACCOUNT.id: DEFAULT_ACCOUNT}
    acct = accounts.get(q.account or "")
    if acct is None:
        raise NotFound(f"unknown account {q.account!r}")
    return acct


def _families(q: Query) -> tuple[int, ...]:
    raw = param(q, "query") or "4"
    out = []
    for part in raw.split(","):
        if part.strip() == "4":
            out.append(A)
        elif part.strip() == "6":
            out.append(AAAA)
        else:
            raise BadRequest(f"query: {raw!r} must be 4, 6 or 4,6")
    return tuple(dict.fromkeys(out))


def _verify(q: Query, ctx: Context, acct: Account, host: str) -> None:
    t_text = param(q, "t", required=True) or ""
    s = param(q, "s", required=True) or ""
    if not is_decimal(t_text):
        raise BadRequest("t: must be a unix time in seconds")
    if acct.secret is None:
        raise InvalidSignature(f"account {acct.id} has no signing secret configured")
    t = int(t_text)
    now = ctx.clock()
    if t < now:
        raise SignatureExpired(f"the signature expired at {t}, it is now {int(now)}")
    if t > now + MAX_AHEAD:
        raise InvalidSignature("t is more than 24 hours ahead")
    expected = hashlib.md5(f"{host}-{acct.secret}-{t_text}".encode()).hexdigest()
    # bytes, not str: compare_digest refuses non-ASCII text (a 500 from any client)
    if not hmac.compare_digest(expected.encode(), s.lower().encode("utf-8", "surrogateescape")):
        raise InvalidSignature()


def _entry(
    ctx: Context, host: str, qtypes: tuple[int, ...], who: Client, deps: Deps
) -> dict[str, Any]:
    name = qname("host", host)
    ips: list[str] = []
    ipsv6: list[str] = []
    ttl = None
    for qtype in qtypes:
        choice = ctx.table.resolve(name, qtype, who, deps)
        if choice is None:
            break
        (ips if qtype == A else ipsv6).extend(choice.addresses)
        ttl = choice.ttl if ttl is None else min(ttl, choice.ttl)
    ttl = NEGATIVE_TTL if ttl is None else ttl
    return {
        "host": name,
        "ips": ips,
        "ipsv6": ipsv6,
        "ttl": ttl,
        "origin_ttl": ttl,
        "client_ip": who.address_text() or "",
    }


def _json(body: Any, deps: Deps) -> Reply:
    return Reply(200, "application/json", orjson.dumps(body), (), tuple(deps))


def resolve_one(q: Query, ctx: Context, signed: bool = False) -> Reply:
    """``/{account}/d`` and ``/{account}/sign_d``."""
    acct = _account(q, ctx)
    host = param(q, "host", required=True) or ""
    if signed:
        _verify(q, ctx, acct, host)
    elif acct.require_signature:
        raise InvalidSignature(f"account {acct.id} accepts signed queries only (sign_d)")
    deps: Deps = []
    return _json(_entry(ctx, host, _families(q), client(q, ctx), deps), deps)


def resolve_many(q: Query, ctx: Context, signed: bool = False) -> Reply:
    """``/{account}/resolve`` and ``/{account}/sign_resolve`` (at most five hosts)."""
    acct = _account(q, ctx)
    host = param(q, "host", required=True) or ""
    hosts = [h for h in host.split(",") if h]
    if len(hosts) > MAX_HOSTS:
        raise BadRequest(f"host: {len(hosts)} names, at most {MAX_HOSTS} per request")
    if signed:
        _verify(q, ctx, acct, host)
    elif acct.require_signature:
        raise InvalidSignature(f"account {acct.id} accepts signed queries only (sign_resolve)")
    qtypes = _families(q)
    who = client(q, ctx)
    deps: Deps = []
    return _json({"dns": [_entry(ctx, h, qtypes, who, deps) for h in hosts]}, deps)
