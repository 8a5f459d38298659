"""What every aiohttp handler of a node shares — the node's own admin API and the
routes plugins add: typed application keys, JSON replies, and the admin request
rules (bearer token, ``If-Match``, ``X-Actor``, JSON bodies), each parsed
strictly so that no header or body can raise anything but a 4xx.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import orjson
from aiohttp import web

from .config import ROLES, Config
from .dialects import Context
from .dialects.base import is_decimal
from .errors import AdminDisabled, BadRequest, Forbidden, PayloadTooLarge, Unauthorized
from .node import Node

NODE = web.AppKey("node", Node)
CONFIG = web.AppKey("config", Config)
CONTEXT = web.AppKey("context", Context)
# (method, path pattern) -> the least role a route admits (``Route.role``), set by make_app
ROLE_OF = web.AppKey("role_of", dict[tuple[str, str], str])
_RANK = {role: i for i, role in enumerate(ROLES)}
TOKEN_NAME = web.RequestKey("token_name", str)  # the name of the token that was admitted
ADMIN_NAME = "admin"  # the name of the --admin-token, which has the admin role

MAX_BODY = 1 << 20  # admin JSON bodies
_ACTOR = re.compile(r"^[\w.@:+-]{1,64}$")


async def _read_up_to(request: web.Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes ``limit`` bytes (decoded: a
    gzip body counts what it inflates to)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes, over the {limit} this route takes")
    buf = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        buf += chunk
        if len(buf) > limit:
            raise PayloadTooLarge(f"the body is over the {limit} bytes this route takes")
    return bytes(buf)


def json_response(body: object, status: int = 200) -> web.Response:
    """A JSON response encoded with orjson."""
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def route_role(method: str, role: str | None) -> str:
    """The least role a route admits: its own, else ``read`` for reads, ``admin`` for writes."""
    if role is not None:
        return role
    return "read" if method in ("GET", "HEAD") else "admin"


def _needed(request: web.Request) -> str:
    """The role the matched route needs (admin when the route table does not say)."""
    resource = request.match_info.route.resource
    pattern = resource.canonical if resource is not None else request.path
    roles = request.app.get(ROLE_OF) or {}
    method = "GET" if request.method == "HEAD" else request.method
    return roles.get((method, pattern)) or route_role(method, None)


def _identify(config: Config, raw: bytes) -> tuple[str, str] | None:
    """The (name, role) of the token ``raw``, or None when no token matches. Every
    candidate is compared in constant time, whatever matched before it."""
    found = None
    if config.admin_token is not None and hmac.compare_digest(raw, config.admin_token.encode()):
        found = (ADMIN_NAME, "admin")
    digest = hashlib.sha256(raw).hexdigest().encode()
    for tok in config.tokens.values():
        if tok.secret is not None:
            match = hmac.compare_digest(raw, tok.secret.encode())
        else:
            match = hmac.compare_digest(digest, (tok.secret_sha256 or "").encode())
        if match and found is None:
            found = (tok.name, tok.role)
    return found


def authorize(request: web.Request) -> None:
    """Admit the request, the one place where roles are checked: the bearer token must be
    the admin token or a ``[tokens.NAME]`` one (401 otherwise) whose role is at least the
    route's ``role`` (403 naming the role needed). With no token configured reads stay
    open and writes are refused."""
    config = request.app[CONFIG]
    if config.admin_token is None and not config.tokens:
        if request.method in ("GET", "HEAD"):
            return  # no token configured: reads stay open (bind to loopback), writes are refused
        raise AdminDisabled()
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    # Header text may carry any byte (aiohttp keeps undecodable ones as surrogates):
    # compare bytes, never str (compare_digest refuses non-ASCII text).
    raw = given.strip().encode("utf-8", "surrogateescape")
    if scheme.lower() != "bearer" or not raw:
        raise Unauthorized("no token given: send Authorization: Bearer TOKEN")
    who = _identify(config, raw)
    if who is None:
        raise Unauthorized("unknown token")
    name, role = who
    needed = _needed(request)
    if _RANK[role] < _RANK.get(needed, len(ROLES)):
        raise Forbidden(f"{request.method} {request.path[:100]} needs the {needed} role; "
                        f"token {name!r} has the {role} role")  # fmt: skip
    request[TOKEN_NAME] = name


def expected_revision(request: web.Request) -> int | None:
    """The ``If-Match`` revision, or None when absent."""
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    raw = raw.strip().removeprefix("W/").strip('"')
    if not is_decimal(raw) or len(raw) > 18:
        raise BadRequest(f"If-Match: {raw[:40]!r} is not a revision number")
    return int(raw)


def actor(request: web.Request) -> str:
    """Who writes, for the audit log: a named token's NAME (``NAME:X-Actor`` when the
    request names a person); for the admin token ``X-Actor``, else "admin"."""
    name = request.headers.get("X-Actor", "")
    person = name if _ACTOR.match(name) and name.isascii() else None
    token = request.get(TOKEN_NAME)
    if token is None or token == ADMIN_NAME:
        return person or ADMIN_NAME
    return f"{token}:{person}" if person else str(token)


async def json_body(request: web.Request, limit: int = MAX_BODY) -> Any:
    """The request's JSON body (400 when missing or not JSON; 413 past ``limit`` bytes,
    ``MAX_BODY`` unless the route allows more: call it only once the caller is admitted)."""
    raw = await request.read() if limit <= MAX_BODY else await _read_up_to(request, limit)
    if not raw:
        raise BadRequest("the request needs a JSON body")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
