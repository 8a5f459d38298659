"""The admin API, ``/api/v1`` (DESIGN §7): bearer token, ``If-Match`` compare-and-set,
every response carrying ``revision``. Handlers validate the body into registry
records, write one atomic batch through the node and answer once the node's
own table shows the change.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from registry.changes import Change, Kind
from registry.errors import NotFoundError, ValidationError
from registry.model import Datacenter, Endpoint, Region, Release, Service, Zone
from registry.traffic import shift
from registry.validation import dns_name, identifier, token
from registry.validation import traffic as traffic_table

from . import fleet
from .dialects.base import Query, client, is_decimal
from .dialects.google import qtype_of
from .errors import BadRequest
from .handlers import CONTEXT, NODE, actor, authorize, expected_revision, json_body, json_response
from .routes import Route
from .table import AAAA, A

P = "/api/v1"


async def _write(
    request: web.Request, changes: list[Change], result: dict[str, Any], created: bool = False
) -> web.Response:
    node = request.app[NODE]
    wait = _wait_param(request)  # checked before writing: bad input applies nothing
    cs = await node.write(
        changes, expected_revision=expected_revision(request), actor=actor(request)
    )
    if wait is not None:
        result = {**result, "applied": await fleet.wait_applied(node, cs.revision, wait)}
    return json_response({"revision": cs.revision, **result}, 201 if created else 200)


def _snapshot(request: web.Request) -> Any:
    return request.app[NODE].table.snapshot


def _service(request: web.Request) -> Service:
    name = dns_name("name", request.match_info["name"])
    svc = _snapshot(request).services.get(name)
    if svc is None:
        raise NotFoundError(f"service {name!r} does not exist")
    return svc  # type: ignore[no-any-return]


async def _state(request: web.Request) -> web.Response:
    authorize(request)
    return json_response(_snapshot(request).to_dict())


async def _put_datacenter(request: web.Request) -> web.Response:
    authorize(request)
    dc = Datacenter.from_dict(request.match_info["dc"], await json_body(request))
    created = dc.name not in _snapshot(request).datacenters
    return await _write(request, [Change.put(dc)], {"datacenter": dc.to_dict()}, created)


async def _put_region(request: web.Request) -> web.Response:
    authorize(request)
    region = Region.from_dict(request.match_info["region"], await json_body(request))
    created = region.name not in _snapshot(request).regions
    return await _write(request, [Change.put(region)], {"region": region.to_dict()}, created)


async def _put_service(request: web.Request) -> web.Response:
    authorize(request)
    svc = Service.from_dict(request.match_info["name"], await json_body(request))
    created = svc.name not in _snapshot(request).services
    return await _write(request, [Change.put(svc)], {"service": svc.to_dict()}, created)


async def _put_traffic(request: web.Request) -> web.Response:
    authorize(request)
    svc = _service(request)
    new = Service(svc.name, traffic_table("traffic", await json_body(request)), svc.access, svc.ttl,
                  svc.answers, svc.all_down)  # fmt: skip
    return await _write(request, [Change.put(new)], {"service": new.to_dict()})


async def _put_release(request: web.Request) -> web.Response:
    authorize(request)
    rel = Release.from_dict(request.match_info["name"], await json_body(request))
    return await _write(request, [Change.put(rel)], {"release": rel.to_dict()})


async def _put_endpoint(request: web.Request) -> web.Response:
    authorize(request)
    ep = Endpoint.from_dict(
        request.match_info["name"], request.match_info["id"], await json_body(request)
    )
    created = ep.id not in _snapshot(request).endpoints_of(ep.service)
    return await _write(request, [Change.put(ep)], {"endpoint": ep.to_dict()}, created)


async def _put_zone(request: web.Request) -> web.Response:
    authorize(request)
    zone = Zone.from_dict(request.match_info["zone"], await json_body(request))
    created = zone.name not in _snapshot(request).zones
    return await _write(request, [Change.put(zone)], {"zone": zone.to_dict()}, created)


def _deleter(kind: Kind) -> Any:
    async def handler(request: web.Request) -> web.Response:
        authorize(request)
        info = request.match_info
        if kind == "datacenter":
            key = identifier("dc", info["dc"])
        elif kind == "region":
            key = identifier("region", info["region"])
        elif kind == "service":
            key = dns_name("name", info["name"])
        elif kind == "zone":
            key = dns_name("zone", info["zone"])
        else:
            key = f"{dns_name('name', info['name'])}/{token('id', info['id'])}"
        return await _write(request, [Change.delete(kind, key)], {"deleted": f"{kind}/{key}"})

    return handler


async def _shift(request: web.Request) -> web.Response:
    authorize(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise ValidationError("body", "must be a JSON object")
    unknown = sorted(set(body) - {"from", "to", "percent", "services"})
    if unknown:
        raise ValidationError(unknown[0], "unknown field for a traffic shift")
    source = identifier("from", body.get("from"))
    target = identifier("to", body.get("to"))
    percent = body.get("percent")
    if isinstance(percent, bool) or not isinstance(percent, int | float):
        raise ValidationError("percent", "must be a number in (0, 100]")
    snap = _snapshot(request)
    names = body.get("services")
    if names is None:
        selected = list(snap.services.values())
    elif isinstance(names, list):
        selected = []
        for i, n in enumerate(names):
            name = dns_name(f"services[{i}]", n)
            if name not in snap.services:
                raise NotFoundError(f"service {name!r} does not exist")
            selected.append(snap.services[name])
    else:
        raise ValidationError("services", "must be a list of service names or null")
    changed = shift(selected, source, target, float(percent))
    if not changed:
        raise ValidationError("from", f"no selected service gives {source!r} any weight")
    return await _write(
        request,
        [Change.put(s) for s in changed],
        {"services": {s.name: {r: dict(t) for r, t in s.traffic.items()} for s in changed}},
    )


async def _explain(request: web.Request) -> web.Response:
    authorize(request)
    q = Query(params=request.query, peer=None)
    name = dns_name("name", request.query.get("name") or "")
    qtype = qtype_of(request.query.get("type") or "A")
    if qtype not in (A, AAAA):
        raise BadRequest("type: explain covers A and AAAA")
    trace = request.app[NODE].table.explain(name, qtype, client(q, request.app[CONTEXT]))
    if trace is None:
        raise NotFoundError(f"service {name!r} does not exist")
    return json_response(trace)


async def _audit(request: web.Request) -> web.Response:
    authorize(request)
    since_text, limit_text = request.query.get("since", "0"), request.query.get("limit", "100")
    if not (is_decimal(since_text) and is_decimal(limit_text)) or len(since_text) > 18:
        raise BadRequest("since and limit must be non-negative integers")
    since, limit = int(since_text), int(limit_text)
    if since < 0 or not 1 <= limit <= 10000:
        raise BadRequest("since >= 0, limit 1-10000")
    node = request.app[NODE]
    entries = await node.store.audit(since, limit)
    return json_response({"revision": node.revision, "entries": [e.to_dict() for e in entries]})


async def _restore(request: web.Request) -> web.Response:
    authorize(request)
    revision = await request.app[NODE].restore(actor(request))
    return json_response({"revision": revision, "restored": True})


# -- the fleet view (httpdns/fleet.py) ------------------------------------------------------

WAIT_TIMEOUT = 10.0  # seconds a ``?wait=1`` write waits for the fleet at most (``?timeout=``)


def _wait_param(request: web.Request) -> float | None:
    """With ``?wait=1`` (``&timeout=S``), how long a write waits for every live node to apply
    it before answering ``"applied": {"nodes": N, "of": M}``; None without."""
    if request.query.get("wait", "0").lower() not in ("1", "true", "yes"):
        return None
    raw = request.query.get("timeout", str(WAIT_TIMEOUT))
    try:
        timeout = float(raw)
    except ValueError:
        raise BadRequest(f"timeout: {raw!r} is not a number of seconds") from None
    if not 0 <= timeout <= 300:
        raise BadRequest("timeout: 0 to 300 seconds")
    return timeout


async def _nodes(request: web.Request) -> web.Response:
    """``GET /api/v1/nodes``: every live node's heartbeat."""
    authorize(request)
    node = request.app[NODE]
    return json_response({"revision": node.revision, "nodes": await fleet.members(node)})


# Writes through ``_write`` take ``?wait=1[&timeout=S]``: the answer then says how many live
# nodes have applied the change, ``"applied": {"nodes": N, "of": M}``.
_WAIT = ("wait", "timeout")

ADMIN_ROUTES: tuple[Route, ...] = (
    Route("GET", f"{P}/state", handler=_state, summary="the whole registry snapshot"),
    Route("PUT", f"{P}/datacenters/{{dc}}", handler=_put_datacenter, body="Datacenter", write=True,
          query=_WAIT, summary="create or replace a datacenter"),
    Route("DELETE", f"{P}/datacenters/{{dc}}", handler=_deleter("datacenter"), write=True,
          query=_WAIT, summary="delete an unused datacenter"),
    Route("PUT", f"{P}/regions/{{region}}", handler=_put_region, body="Region", write=True,
          query=_WAIT, summary="create or replace a region"),
    Route("DELETE", f"{P}/regions/{{region}}", handler=_deleter("region"), write=True, query=_WAIT,
          summary="delete an unused region"),
    Route("PUT", f"{P}/services/{{name}}", handler=_put_service, body="Service", write=True,
          query=_WAIT, summary="create or replace a service"),
    Route("DELETE", f"{P}/services/{{name}}", handler=_deleter("service"), write=True, query=_WAIT,
          summary="delete a service with its endpoints and release"),
    Route("PUT", f"{P}/services/{{name}}/traffic", handler=_put_traffic, body="Traffic",
          write=True, query=_WAIT, summary="replace a service's traffic tables"),
    Route("PUT", f"{P}/services/{{name}}/release", handler=_put_release, body="Release",
          write=True, query=_WAIT, summary="set stable / canary versions"),
    Route("PUT", f"{P}/services/{{name}}/endpoints/{{id}}", handler=_put_endpoint,
          body="Endpoint", write=True, query=_WAIT, summary="create or replace an endpoint"),
    Route("DELETE", f"{P}/services/{{name}}/endpoints/{{id}}", handler=_deleter("endpoint"),
          write=True, query=_WAIT, summary="delete an endpoint"),
    Route("PUT", f"{P}/zones/{{zone}}", handler=_put_zone, body="Zone", write=True, query=_WAIT,
          summary="create or replace a zone every node serves (apex SOA and NS, glue)"),
    Route("DELETE", f"{P}/zones/{{zone}}", handler=_deleter("zone"), write=True, query=_WAIT,
          summary="stop serving a zone"),
    Route("POST", f"{P}/traffic/shift", handler=_shift, body="Shift", write=True, query=_WAIT,
          summary="move a percentage of weight between datacenters"),
    Route("GET", f"{P}/explain", handler=_explain, query=("name", "ip", "uid", "type"),
          summary="the steering trace for one query"),
    Route("GET", f"{P}/audit", handler=_audit, query=("since", "limit"),
          summary="committed changes after a revision"),
    Route("POST", f"{P}/registry/restore", handler=_restore, write=True,
          summary="re-seed a store that lost data or is damaged (Redis) from this node's snapshot"),
    Route("GET", f"{P}/nodes", handler=_nodes,
          summary="the fleet: every live node's id, address, version, revision, status, seen"),
)  # fmt: skip
