"""What every aiohttp handler of a node shares — the node's own admin API and the
routes plugins add: typed application keys, JSON replies, and the admin request
rules (bearer token, ``If-Match``, ``X-Actor``, JSON bodies), each parsed
strictly so that no header or body can raise anything but a 4xx.
"""

from __future__ import annotations

import hmac
import re
from typing import Any

import orjson
from aiohttp import web

from .config import Config
from .dialects import Context
from .dialects.base import is_decimal
from .errors import AdminDisabled, BadRequest, Unauthorized
from .node import Node

NODE = web.AppKey("node", Node)
CONFIG = web.AppKey("config", Config)
CONTEXT = web.AppKey("context", Context)

MAX_BODY = 1 << 20  # admin JSON bodies
_ACTOR = re.compile(r"^[\w.@:+-]{1,64}$")


def json_response(body: object, status: int = 200) -> web.Response:
    """A JSON response encoded with orjson."""
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def authorize(request: web.Request) -> None:
    """Admit the request: reads are open when no token is configured, writes need it."""
    expected = request.app[CONFIG].admin_token
    if expected is None:
        if request.method in ("GET", "HEAD"):
            return  # no token configured: reads stay open (bind to loopback), writes are refused
        raise AdminDisabled()
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    # Header text may carry any byte (aiohttp keeps undecodable ones as surrogates):
    # compare bytes, never str (compare_digest refuses non-ASCII text).
    raw = given.strip().encode("utf-8", "surrogateescape")
    if scheme.lower() != "bearer" or not hmac.compare_digest(raw, expected.encode()):
        raise Unauthorized()


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
    """Who writes, for the audit log (``X-Actor``, else "admin")."""
    name = request.headers.get("X-Actor", "admin")
    return name if _ACTOR.match(name) and name.isascii() else "admin"


async def json_body(request: web.Request) -> Any:
    """The request's JSON body (400 when missing or not JSON; 413 past ``MAX_BODY``)."""
    raw = await request.read()
    if not raw:
        raise BadRequest("the request needs a JSON body")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
