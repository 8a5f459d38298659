"""The one table of HTTP routes of a node.

A ``Route`` is data: method, path pattern, and either a query dialect (a pure
``(Query, Context) -> Reply`` function that both HTTP front ends serve — the
lean fast path and the aiohttp application) or an aiohttp handler (admin API,
plugin routes), plus what the OpenAPI document says about it. The fast path,
the aiohttp application and ``openapi.document`` are all built from the same
list; plugins (the deployer) contribute routes of their own through
``httpdns.plugins``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import orjson
from aiohttp import web

from . import dialects
from .dialects import Context, Query, Reply
from .metrics import CONTENT_TYPE, Exposition

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Dialect = Callable[[Query, Context], Reply]

# Query answers are public: web pages on any origin may read them (browser clients).
# Admin routes never carry it (same-origin only).
CORS = (("Access-Control-Allow-Origin", "*"),)


@dataclass(frozen=True, slots=True)
class Route:
    """One route: ``dialect`` (query routes, both front ends) or ``handler`` (aiohttp)."""

    method: str
    path: str
    dialect: Dialect | None = None
    handler: Handler | None = None
    # The parameters that change a query's answer: a request naming only these may be
    # kept by the front cache (anything else is answered, never cached).
    params: tuple[str, ...] = ()
    cacheable: bool = False  # answers may be kept while their services are unchanged
    metric: str = ""  # the ``dialect`` label of httpdns_queries_total ("" = not counted)
    # OpenAPI
    summary: str = ""
    body: str | None = None  # request body schema (components/schemas)
    write: bool = False  # takes If-Match, may answer 409/503
    query: tuple[str, ...] = ()  # documented query parameters
    public: bool = False  # no bearer token
    # The least token role admitted (read < ops < deployer < admin); None: "read" for GET,
    # "admin" for anything else. Checked by ``handlers.authorize``.
    role: str | None = None

    @property
    def is_query(self) -> bool:
        """Served by the fast path too."""
        return self.dialect is not None


def _signed(fn: Callable[[Query, Context, bool], Reply]) -> Dialect:
    def signed(q: Query, ctx: Context) -> Reply:
        return fn(q, ctx, True)

    return signed


def health(q: Query, ctx: Context) -> Reply:
    """``/healthz``: 200 while the node has a table to answer from, else 503."""
    body = ctx.health()
    status = 503 if body.get("status") == "unavailable" else 200
    return Reply(status, "application/json", orjson.dumps(body))


# The node's /metrics renderer (``web.make_app`` sets it).
EXPOSITION = web.AppKey("exposition", Exposition)


async def _metrics(request: web.Request) -> web.StreamResponse:
    """``/metrics``: Prometheus text exposition, public like ``/healthz`` (README "Monitoring":
    no client addresses in it; keep it off the internet at the load balancer if you must)."""
    return web.Response(
        body=request.app[EXPOSITION].render(),
        headers={"Content-Type": CONTENT_TYPE},
    )


async def _preflight(request: web.Request) -> web.StreamResponse:
    """CORS preflight for browser DoH POSTs (application/dns-message is not a simple type)."""
    return web.Response(
        status=204,
        headers={
            **dict(CORS),
            "Access-Control-Allow-Methods": "GET, POST",
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": "86400",
        },
    )


_COMMON = ("ip", "uid")
_DNSPOD = ("dn", "type", "ttl", "clientip", "id", "alg", *_COMMON)  # id, alg: encrypted
_ALIYUN = ("host", "query", *_COMMON)
_GOOGLE = ("name", "type", "cd", "do", "edns_client_subnet", *_COMMON)
_DOH = ("dns", *_COMMON)

QUERY_ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", health, summary="node health", public=True),
    # Not in the OpenAPI document (no summary): it is text, not the admin API's JSON.
    Route("GET", "/metrics", handler=_metrics, public=True),
    Route("GET", "/d", dialects.resolve_d, params=_DNSPOD, cacheable=True, metric="dnspod"),
    Route(
        "GET", "/resolve", dialects.resolve_json, params=_GOOGLE, cacheable=True, metric="google"
    ),
    Route("GET", "/dns-query", dialects.resolve_doh, params=_DOH, cacheable=True, metric="doh"),
    Route("POST", "/dns-query", dialects.resolve_doh, params=_DOH, metric="doh"),
    Route("OPTIONS", "/dns-query", handler=_preflight),
    Route(
        "GET", "/{account}/d", dialects.resolve_one, params=_ALIYUN, cacheable=True, metric="aliyun"
    ),
    Route(
        "GET",
        "/{account}/resolve",
        dialects.resolve_many,
        params=_ALIYUN,
        cacheable=True,
        metric="aliyun",
    ),
    # Signed answers are never kept: each must be checked against its expiry.
    Route("GET", "/{account}/sign_d", _signed(dialects.resolve_one), metric="aliyun"),
    Route("GET", "/{account}/sign_resolve", _signed(dialects.resolve_many), metric="aliyun"),
)


def reply_headers(route: Route, reply: Reply) -> list[tuple[str, str]]:
    """Every header a query reply carries besides Content-Type and Content-Length."""
    return [*CORS, *reply.headers] if route.is_query else list(reply.headers)


class Router:
    """Matches (method, path) to a query route, for the fast path.

    Patterns are literal paths or ``/{account}/LEAF`` with an alphanumeric account;
    anything else (the admin API, plugin routes) is not a fast route.
    """

    def __init__(self, routes: Sequence[Route]) -> None:
        self.exact: dict[tuple[bytes, bytes], Route] = {}
        self.account: dict[tuple[bytes, bytes], Route] = {}
        for r in routes:
            if r.dialect is None:
                continue
            key_method = r.method.encode()
            if r.path.startswith("/{account}/"):
                self.account[(key_method, r.path.split("/")[2].encode())] = r
            elif "{" not in r.path:
                self.exact[(key_method, r.path.encode())] = r
            else:
                raise ValueError(f"the fast path cannot match {r.path!r}")

    def match(self, method: bytes, path: bytes) -> tuple[Route, str | None] | None:
        """``(route, account or None)`` for a fast route, else None."""
        route = self.exact.get((method, path))
        if route is not None:
            return route, None
        if path.count(b"/") == 2:
            _, account, leaf = path.split(b"/")
            route = self.account.get((method, leaf))
            if route is not None and account.isalnum() and account.isascii():
                return route, account.decode()
        return None
