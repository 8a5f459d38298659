"""The aiohttp application of a node, built from the route table.

It serves every route: the query routes (the same dialect functions as the
fast path, for connections the fast path hands over), ``/healthz``, the admin
API, plugin routes and the OpenAPI document. Every error of any kind becomes
``{"error","detail"}`` through ``errors.reply_for`` in ``error_middleware``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, cast

from aiohttp import web

from .admin import ADMIN_ROUTES
from .config import Config
from .dialects import Context, Query, Reply
from .errors import MethodNotAllowed, NotFound, PayloadTooLarge, reply_for
from .events import ROUTES as EVENT_ROUTES
from .events import close_streams
from .handlers import CONFIG, CONTEXT, MAX_BODY, NODE, ROLE_OF, json_response, route_role
from .metrics import SAMPLE, Exposition, NodeMetrics, Recorder, rcode_of
from .node import Node
from .openapi import document
from .routes import EXPOSITION, QUERY_ROUTES, Dialect, Handler, Route, reply_headers
from .shares_api import METRICS
from .table import RoutingTable
from .ui import UI_ROUTES

MAX_QUERY_BODY = 65535  # a DNS message (DoH POST)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map every error to a JSON ``{"error","detail"}`` response; never a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        status, body = reply_for(_http_error(exc, request), request.path)
    except Exception as exc:  # the one place: known errors by kind, bugs as 500 (logged)
        status, body = reply_for(exc, f"{request.method} {request.path[:200]}")
    if request.path.startswith("/api/"):
        body["revision"] = request.app[NODE].revision  # what to retry against
    return json_response(body, status)


def _http_error(exc: web.HTTPException, request: web.Request) -> Exception:
    """aiohttp's own errors (routing, body size) as the node's."""
    if exc.status == 404:
        return NotFound(f"no route for {request.path[:200]}")
    if exc.status == 405:
        return MethodNotAllowed(f"{request.method} is not allowed on {request.path[:200]}")
    if exc.status == 413:
        return PayloadTooLarge()
    err = NotFound(exc.text or "")
    err.status = exc.status
    err.code = (exc.reason or "error").lower().replace(" ", "_")
    return err


def _query(request: web.Request, body: bytes | None) -> Query:
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


def _respond(route: Route, reply: Reply) -> web.Response:
    resp = web.Response(body=reply.body, status=reply.status)
    resp.headers["Content-Type"] = reply.content_type
    for k, v in reply_headers(route, reply):
        resp.headers[k] = v
    return resp


class _Counting:
    """The aiohttp path's share of the query metrics: a recorder over the table, counts
    straight into the totals, and the same one-in-``SAMPLE`` latency sampling."""

    def __init__(self, metrics: NodeMetrics, context: Context) -> None:
        self.stats = metrics.stats
        self.recorder = Recorder(context.table)
        self.context = replace(context, table=cast(RoutingTable, self.recorder))
        self.countdown = SAMPLE


_COUNTING = web.AppKey("counting", _Counting)


def _query_handler(route: Route, fn: Dialect) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        body = None
        if request.method == "POST":
            if request.content_length is not None and request.content_length > MAX_QUERY_BODY:
                raise PayloadTooLarge(f"a DNS message is at most {MAX_QUERY_BODY} bytes")
            body = await request.content.read(MAX_QUERY_BODY + 1)
        dialect = route.metric
        if not dialect:
            return _respond(route, fn(_query(request, body), request.app[CONTEXT]))
        counting = request.app[_COUNTING]
        counting.countdown -= 1
        start = time.perf_counter() if not counting.countdown else 0.0
        recorder = counting.recorder
        recorder.reset()
        try:
            reply = fn(_query(request, body), counting.context)
        except Exception as exc:  # counted by status, then mapped by error_middleware
            counting.stats.count(dialect, f"http_{getattr(exc, 'status', 500)}")
            raise
        rcode = rcode_of(dialect, reply.status, reply.body, recorder.unanswered)
        counting.stats.count(dialect, rcode, recorder.answers)
        if start:
            counting.countdown = SAMPLE
            counting.stats.observe(dialect, time.perf_counter() - start)
        return _respond(route, reply)

    return handler


def make_app(
    node: Node,
    config: Config,
    routes: Sequence[Route] | None = None,
    schemas: Mapping[str, Any] | None = None,
    metrics: NodeMetrics | None = None,
) -> web.Application:
    """The whole HTTP application for one node: ``routes`` (default: the query routes
    the admin API, its event stream and the console; the wiring adds plugin routes), the
    OpenAPI document and ``/metrics`` (``metrics``: the node's, shared with the other front
    ends)."""
    default = (*QUERY_ROUTES, *ADMIN_ROUTES, *EVENT_ROUTES, *UI_ROUTES)
    routes = list(routes if routes is not None else default)
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY)
    app[NODE] = node
    app[CONFIG] = config
    app[CONTEXT] = Context(node.table, config, health=node.health)
    app.on_shutdown.append(close_streams)  # event streams never end by themselves
    app[ROLE_OF] = {(r.method, r.path): route_role(r.method, r.role) for r in routes}
    if metrics is None:
        metrics = NodeMetrics()
        metrics.health, metrics.node = node.health, node
    app[_COUNTING] = _Counting(metrics, app[CONTEXT])
    app[EXPOSITION] = Exposition(metrics)
    app[METRICS] = metrics
    openapi = document(routes, schemas)

    async def _openapi(request: web.Request) -> web.StreamResponse:
        return json_response(openapi)

    app.router.add_get("/api/v1/openapi.json", _openapi)
    # Literal paths first: "/{account}/resolve" must not shadow "/api/v1/..." routes.
    for r in sorted(routes, key=lambda r: r.path.startswith("/{")):
        if r.handler is not None:
            app.router.add_route(r.method, r.path, r.handler)
        elif r.dialect is not None:
            app.router.add_route(r.method, r.path, _query_handler(r, r.dialect))
        else:
            raise ValueError(f"route {r.method} {r.path} has nothing to serve")
    return app
