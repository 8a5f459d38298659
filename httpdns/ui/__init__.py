"""The ops console at ``/ui``: a static page (``httpdns/ui/static``, plain ES modules, no
build step, nothing from other hosts) that every node serves on its admin port.

The page talks to the admin API with the bearer token the operator types in (kept in
``sessionStorage``, never in a cookie, so no request can be forged from another site)
and follows the registry through ``GET /api/v1/events``. Every asset is served with a
strict Content-Security-Policy (scripts and styles from this origin only, no inline
script), ``nosniff`` and no CORS header: the console is same-origin only.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from ..routes import Handler, Route

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
ASSETS = ("index.html", "app.js", "api.js", "views.js", "app.css")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Small files, revalidated each time: a node upgrade shows the new console at once.
    "Cache-Control": "no-cache",
}


def asset(name: str) -> bytes:
    """The bytes of one static file of the console (shipped inside the package)."""
    return resources.files("httpdns.ui").joinpath("static", name).read_bytes()


def _serve(name: str) -> Handler:
    suffix = name[name.rindex(".") :]

    async def handler(request: web.Request) -> web.StreamResponse:
        # Read per request: cheap (a few files, a few KiB) and a package upgrade shows.
        return web.Response(body=asset(name), headers={**HEADERS, "Content-Type": _TYPES[suffix]})

    return handler


UI_ROUTES: tuple[Route, ...] = (
    Route("GET", "/ui", handler=_serve("index.html"), public=True),
    Route("GET", "/ui/", handler=_serve("index.html"), public=True),
    *(Route("GET", f"/ui/{name}", handler=_serve(name), public=True) for name in ASSETS[1:]),
)
