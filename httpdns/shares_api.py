"""``GET /api/v1/services/{name}/shares?window=60s``: what the fleet answered for a service;
``GET /api/v1/shares?window=60s``: the same per datacenter over every service.

Every node process publishes, with its heartbeat in the store, what it answered
in each of ``metrics.WINDOWS`` (``NodeMetrics.published_answers``); this route
reads every live node's heartbeat, takes the smallest published window at least
as long as the one asked for, sums the answers of the service and sets them
beside the configured split (``httpdns.shares``). No Prometheus needed. Without
heartbeats in the store (or none carrying answers yet) it reports this process
alone, and says so (``"source": "this node"``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from registry.errors import NotFoundError, RegistryError
from registry.liveness import dns_nodes
from registry.model import Service
from registry.snapshot import Snapshot
from registry.validation import dns_name

from .errors import BadRequest
from .handlers import NODE, authorize, json_response
from .metrics import WINDOWS, NodeMetrics
from .routes import Route
from .shares import Answer, configured_dcs, configured_versions, observe, report

METRICS = web.AppKey("metrics", NodeMetrics)
_WINDOW = re.compile(r"^(\d{1,5})(s|m)?$")


def parse_window(text: str) -> int:
    """``60s``, ``60`` or ``5m`` as seconds (1 s to 1 day); BadRequest otherwise."""
    m = _WINDOW.match(text.strip())
    if m is None:
        raise BadRequest(f"window: {text[:40]!r} is not a duration like 60s or 5m")
    seconds = int(m.group(1)) * (60 if m.group(2) == "m" else 1)
    if not 1 <= seconds <= 86400:
        raise BadRequest("window: between 1s and 1 day")
    return seconds


def pick_window(seconds: int) -> int:
    """The smallest published window at least ``seconds`` long (else the longest)."""
    return next((w for w in WINDOWS if w >= seconds), WINDOWS[-1])


def usable_dcs(snap: Snapshot, svc: Service) -> list[str]:
    """Datacenters that can answer for ``svc``: known, not drained, writable for a ``rw``
    service, with a healthy endpoint of a version in play."""
    release = snap.releases.get(svc.name)
    versions = {release.stable, release.canary} if release is not None else set()
    healthy = {
        e.dc
        for e in snap.endpoints_of(svc.name).values()
        if e.healthy and (not versions - {None} or e.version in versions)
    }
    out = []
    for name, dc in snap.datacenters.items():
        if dc.drained or (svc.access == "rw" and not dc.writable) or name not in healthy:
            continue
        out.append(name)
    return out


def published(
    heartbeats: list[Mapping[str, Any]], window: int
) -> tuple[dict[str, dict[Answer, int]], float]:
    """Per node id, its answers in ``window`` (as published), and the longest real span."""
    after: dict[str, dict[Answer, int]] = {}
    span = 0.0
    for hb in heartbeats:
        answers = hb.get("answers")
        if not isinstance(answers, Mapping):
            continue
        pub = answers.get("windows", {}).get(str(window))
        if not isinstance(pub, Mapping):
            continue
        rows: dict[Answer, int] = {}
        for row in pub.get("rows", []):
            if isinstance(row, list) and len(row) == 5:
                rows[(str(row[0]), str(row[1]), str(row[2]), str(row[3]))] = int(row[4])
        after[str(hb.get("id"))] = rows
        span = max(span, float(pub.get("seconds") or 0.0))
    return after, span


async def _fleet(request: web.Request) -> list[Mapping[str, Any]]:
    nodes = getattr(request.app[NODE].store, "nodes", None)
    if nodes is None:
        return []
    try:
        found: list[Mapping[str, Any]] = dns_nodes(await nodes())
    except RegistryError:
        return []
    return found


async def _window(
    request: web.Request,
) -> tuple[int, int, str, dict[str, dict[Answer, int]], float]:
    """The window asked for and the one used, the source, and the answers published in it
    (the fleet's heartbeats, else this process's own)."""
    asked = parse_window(request.query.get("window", "60s"))
    window = pick_window(asked)
    source = "fleet"
    after, span = published(await _fleet(request), window)
    if not after:
        source = "this node"
        own = request.app[METRICS].published_answers()
        after, span = published([{"id": "self", "answers": own}], window)
    return asked, window, source, after, span


async def _shares(request: web.Request) -> web.Response:
    authorize(request)
    node = request.app[NODE]
    name = dns_name("name", request.match_info["name"])
    snap = node.table.snapshot
    svc = snap.services.get(name)
    if svc is None:
        raise NotFoundError(f"service {name!r} does not exist")
    asked, window, source, after, span = await _window(request)
    observed = observe(name, {}, after, span)
    release = snap.releases.get(name)
    versions = configured_versions(
        release.stable if release else None,
        release.canary if release else None,
        release.canary_percent if release else 0.0,
    )
    dcs = configured_dcs(svc.traffic.get("default", {}), usable_dcs(snap, svc))
    body = report(observed, dcs, versions)
    return json_response(
        {"revision": node.revision, "window": window, "asked": asked, "source": source, **body}
    )


async def _fleet_shares(request: web.Request) -> web.Response:
    """Answers per datacenter over every service the registry holds (the console's
    overview sets them beside the configured global share)."""
    authorize(request)
    node = request.app[NODE]
    services = node.table.snapshot.services
    asked, window, source, after, span = await _window(request)
    by_dc: dict[str, float] = {}
    for rows in after.values():
        for (service, dc, _version, _cohort), n in rows.items():
            if service in services and n > 0:
                by_dc[dc] = by_dc.get(dc, 0) + n
    total = sum(by_dc.values())
    dcs = [
        {"name": dc, "answers": n, "percent": round(100.0 * n / total, 2)}
        for dc, n in sorted(by_dc.items())
    ]
    return json_response({
        "revision": node.revision, "window": window, "asked": asked, "source": source,
        "window_seconds": round(span, 3), "nodes": len(after), "answers": total,
        "datacenters": dcs,
    })  # fmt: skip


FLEET_SHARES_ROUTE = Route(
    "GET",
    "/api/v1/shares",
    handler=_fleet_shares,
    query=("window",),
    summary="answers the fleet gave over every service, per datacenter",
)

SHARES_ROUTE = Route(
    "GET",
    "/api/v1/services/{name}/shares",
    handler=_shares,
    query=("window",),
    summary="answers the fleet gave for a service, per datacenter and version, vs configured",
)
