"""The aiohttp application: query routes, ``/healthz``, the admin API, error mapping.

Query handlers only translate between aiohttp and the dialect functions in
``httpdns.dialects``; every error of any kind becomes ``{"error","detail"}``
through ``error_middleware``, the one place where that mapping happens.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from registry.errors import RegistryError

from . import dialects
from .config import Config
from .dialects import Context, Query, Reply
from .errors import HttpdnsError, MethodNotAllowed, NotFound, PayloadTooLarge, error_body
from .node import Node

log = logging.getLogger("httpdns.web")

NODE = web.AppKey("node", Node)
CONFIG = web.AppKey("config", Config)
CONTEXT = web.AppKey("context", Context)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(body: object, status: int = 200) -> web.Response:
    """A JSON response encoded with orjson."""
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map every error to a JSON ``{"error","detail"}`` response; never a traceback."""
    try:
        return await handler(request)
    except (HttpdnsError, RegistryError) as exc:
        status, body = error_body(exc)
    except web.HTTPException as exc:
        if exc.status == 404:
            status, body = error_body(NotFound(f"no route for {request.path}"))
        elif exc.status == 405:
            status, body = error_body(
                MethodNotAllowed(f"{request.method} is not allowed on {request.path}")
            )
        elif exc.status == 413:
            status, body = error_body(PayloadTooLarge())
        elif exc.status < 400:
            raise
        else:
            status = exc.status
            body = {
                "error": (exc.reason or "error").lower().replace(" ", "_"),
                "detail": exc.text or "",
            }
    if request.path.startswith("/api/"):
        body["revision"] = request.app[NODE].revision  # what to retry against
    return json_response(body, status)


def _query(request: web.Request, body: bytes | None = None) -> Query:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return Query(
        params=request.query,
        peer=peer[0] if peer else None,
        forwarded_for=request.headers.get("X-Forwarded-For"),
        account=request.match_info.get("account"),
        body=body,
        content_type=request.content_type if body is not None else None,
        method=request.method,
    )


def _respond(reply: Reply) -> web.Response:
    resp = web.Response(body=reply.body, status=reply.status)
    resp.headers["Content-Type"] = reply.content_type
    resp.headers["Access-Control-Allow-Origin"] = "*"  # public answers, readable by any page
    for k, v in reply.headers:
        resp.headers[k] = v
    return resp


def _route(fn: Callable[[Query, Context], Reply]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return _respond(fn(_query(request), request.app[CONTEXT]))

    return handler


async def _doh_post(request: web.Request) -> web.StreamResponse:
    if request.content_length is not None and request.content_length > dialects.doh.MAX_MESSAGE:
        raise PayloadTooLarge(f"a DNS message is at most {dialects.doh.MAX_MESSAGE} bytes")
    ctype = request.content_type
    if ctype != dialects.doh.MEDIA_TYPE:
        # refuse before reading the body
        return _respond(dialects.resolve_doh(_query(request, b""), request.app[CONTEXT]))
    body = await request.content.read(dialects.doh.MAX_MESSAGE + 1)
    return _respond(dialects.resolve_doh(_query(request, body), request.app[CONTEXT]))


async def _preflight(request: web.Request) -> web.StreamResponse:
    """CORS preflight for browser DoH POSTs (application/dns-message is not a simple type)."""
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": "GET, POST",
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": "86400",
        },
    )


async def _healthz(request: web.Request) -> web.StreamResponse:
    body = request.app[NODE].health()
    return json_response(body, 503 if body["status"] == "unavailable" else 200)


def _signed(fn: Callable[[Query, Context, bool], Reply]) -> Callable[[Query, Context], Reply]:
    return lambda q, ctx: fn(q, ctx, True)


def make_app(node: Node, config: Config) -> web.Application:
    """The whole HTTP application for one node."""
    from .admin import add_admin_routes

    app = web.Application(middlewares=[error_middleware], client_max_size=1 << 20)
    app[NODE] = node
    app[CONFIG] = config
    app[CONTEXT] = Context(node.table, config)
    r = app.router
    r.add_get("/healthz", _healthz)
    r.add_get("/d", _route(dialects.resolve_d))
    r.add_get("/resolve", _route(dialects.resolve_json))
    r.add_get("/dns-query", _route(dialects.resolve_doh))
    r.add_post("/dns-query", _doh_post)
    r.add_route("OPTIONS", "/dns-query", _preflight)
    add_admin_routes(app)
    r.add_get("/{account}/d", _route(dialects.resolve_one))
    r.add_get("/{account}/resolve", _route(dialects.resolve_many))
    r.add_get("/{account}/sign_d", _route(_signed(dialects.resolve_one)))
    r.add_get("/{account}/sign_resolve", _route(_signed(dialects.resolve_many)))
    return app
