"""The admin API, ``/api/v1`` (DESIGN §7): bearer token, ``If-Match`` compare-and-set,
every response carrying ``revision``. Handlers validate the body into registry
records, write one atomic batch through the node and answer once the node's
own table shows the change.
"""

from __future__ import annotations

import hmac
import re
from typing import Any

import orjson
from aiohttp import web

from registry.changes import Change, Kind
from registry.errors import NotFoundError, ValidationError
from registry.model import Datacenter, Endpoint, Region, Release, Service
from registry.traffic import shift
from registry.validation import dns_name, identifier, token
from registry.validation import traffic as traffic_table

from . import fleet
from .dialects.base import Query, client
from .dialects.google import qtype_of
from .errors import AdminDisabled, BadRequest, Unauthorized
from .openapi import OPENAPI
from .table import AAAA, A
from .web import CONFIG, CONTEXT, NODE, json_response

_ACTOR = re.compile(r"^[\w.@:+-]{1,64}$")


def _authorize(request: web.Request) -> None:
    expected = request.app[CONFIG].admin_token
    if expected is None:
        if request.method in ("GET", "HEAD"):
            return  # no token configured: reads stay open (bind to loopback), writes are refused
        raise AdminDisabled()
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), expected.encode()
    ):
        raise Unauthorized()


def _expected_revision(request: web.Request) -> int | None:
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    raw = raw.strip().removeprefix("W/").strip('"')
    if not raw.isdigit():
        raise BadRequest(f"If-Match: {raw!r} is not a revision number")
    return int(raw)


def _actor(request: web.Request) -> str:
    actor = request.headers.get("X-Actor", "admin")
    return actor if _ACTOR.match(actor) else "admin"


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        raise BadRequest("the request needs a JSON body")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None


async def _write(
    request: web.Request, changes: list[Change], result: dict[str, Any], created: bool = False
) -> web.Response:
    node = request.app[NODE]
    wait = _wait_param(request)  # checked before writing: bad input applies nothing
    cs = await node.write(
        changes, expected_revision=_expected_revision(request), actor=_actor(request)
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
    _authorize(request)
    return json_response(_snapshot(request).to_dict())


async def _put_datacenter(request: web.Request) -> web.Response:
    _authorize(request)
    dc = Datacenter.from_dict(request.match_info["dc"], await _body(request))
    created = dc.name not in _snapshot(request).datacenters
    return await _write(request, [Change.put(dc)], {"datacenter": dc.to_dict()}, created)


async def _put_region(request: web.Request) -> web.Response:
    _authorize(request)
    region = Region.from_dict(request.match_info["region"], await _body(request))
    created = region.name not in _snapshot(request).regions
    return await _write(request, [Change.put(region)], {"region": region.to_dict()}, created)


async def _put_service(request: web.Request) -> web.Response:
    _authorize(request)
    svc = Service.from_dict(request.match_info["name"], await _body(request))
    created = svc.name not in _snapshot(request).services
    return await _write(request, [Change.put(svc)], {"service": svc.to_dict()}, created)


async def _put_traffic(request: web.Request) -> web.Response:
    _authorize(request)
    svc = _service(request)
    new = Service(svc.name, traffic_table("traffic", await _body(request)), svc.access, svc.ttl,
                  svc.answers, svc.all_down)  # fmt: skip
    return await _write(request, [Change.put(new)], {"service": new.to_dict()})


async def _put_release(request: web.Request) -> web.Response:
    _authorize(request)
    rel = Release.from_dict(request.match_info["name"], await _body(request))
    return await _write(request, [Change.put(rel)], {"release": rel.to_dict()})


async def _put_endpoint(request: web.Request) -> web.Response:
    _authorize(request)
    ep = Endpoint.from_dict(
        request.match_info["name"], request.match_info["id"], await _body(request)
    )
    created = ep.id not in _snapshot(request).endpoints_of(ep.service)
    return await _write(request, [Change.put(ep)], {"endpoint": ep.to_dict()}, created)


def _deleter(kind: Kind) -> Any:
    async def handler(request: web.Request) -> web.Response:
        _authorize(request)
        info = request.match_info
        if kind == "datacenter":
            key = identifier("dc", info["dc"])
        elif kind == "region":
            key = identifier("region", info["region"])
        elif kind == "service":
            key = dns_name("name", info["name"])
        else:
            key = f"{dns_name('name', info['name'])}/{token('id', info['id'])}"
        return await _write(request, [Change.delete(kind, key)], {"deleted": f"{kind}/{key}"})

    return handler


async def _shift(request: web.Request) -> web.Response:
    _authorize(request)
    body = await _body(request)
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
    _authorize(request)
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
    _authorize(request)
    try:
        since = int(request.query.get("since", "0"))
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise BadRequest("since and limit must be integers") from None
    if since < 0 or not 1 <= limit <= 10000:
        raise BadRequest("since >= 0, limit 1-10000")
    node = request.app[NODE]
    entries = await node.store.audit(since, limit)
    return json_response({"revision": node.revision, "entries": [e.to_dict() for e in entries]})


async def _restore(request: web.Request) -> web.Response:
    _authorize(request)
    revision = await request.app[NODE].restore(_actor(request))
    return json_response({"revision": revision, "restored": True})


async def _openapi(request: web.Request) -> web.Response:
    return json_response(OPENAPI)


def add_admin_routes(app: web.Application) -> None:
    """Register ``/api/v1`` on ``app``."""
    r = app.router
    p = "/api/v1"
    r.add_get(f"{p}/openapi.json", _openapi)
    r.add_get(f"{p}/state", _state)
    r.add_put(f"{p}/datacenters/{{dc}}", _put_datacenter)
    r.add_delete(f"{p}/datacenters/{{dc}}", _deleter("datacenter"))
    r.add_put(f"{p}/regions/{{region}}", _put_region)
    r.add_delete(f"{p}/regions/{{region}}", _deleter("region"))
    r.add_put(f"{p}/services/{{name}}", _put_service)
    r.add_delete(f"{p}/services/{{name}}", _deleter("service"))
    r.add_put(f"{p}/services/{{name}}/traffic", _put_traffic)
    r.add_put(f"{p}/services/{{name}}/release", _put_release)
    r.add_put(f"{p}/services/{{name}}/endpoints/{{id}}", _put_endpoint)
    r.add_delete(f"{p}/services/{{name}}/endpoints/{{id}}", _deleter("endpoint"))
    r.add_post(f"{p}/traffic/shift", _shift)
    r.add_get(f"{p}/explain", _explain)
    r.add_get(f"{p}/audit", _audit)
    r.add_post(f"{p}/registry/restore", _restore)
    r.add_get(f"{p}/nodes", _nodes)
    from .rollouts_api import add_rollout_routes  # the deployer's intents (imports this module)

    add_rollout_routes(app)


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
    _authorize(request)
    node = request.app[NODE]
    return json_response({"revision": node.revision, "nodes": await fleet.members(node)})
