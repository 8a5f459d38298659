"""The admin API, ``/api/v1`` (DESIGN §7): bearer tokens with roles, ``If-Match``
compare-and-set, every response carrying ``revision``. Handlers validate the body into
registry records and hand one batch to ``_commit``, which checks it against the node's
snapshot with the store's own validation and the real steering code (``impact``):
``?dry_run=1`` answers what would happen and writes nothing; a batch that would leave a
service answering nobody in some region is refused (409 ``would_empty``) unless
``?force=1``; a release of a version without endpoints is refused unless
``?allow_empty=1``; weights that can never apply come back as ``warnings``. Then it
writes the batch through the node and answers once the node's own table shows it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from registry.changes import Change, Kind
from registry.errors import ConflictError, NotFoundError, ValidationError
from registry.model import Datacenter, Endpoint, Region, Release, Service, Zone
from registry.snapshot import Snapshot, declared, diff, undo
from registry.traffic import shift
from registry.validation import dns_name, identifier, token
from registry.validation import traffic as traffic_table

from . import fleet, impact
from .dialects.base import Query, client, is_decimal
from .dialects.google import qtype_of
from .errors import BadRequest, HttpdnsError
from .handlers import (
    CONFIG,
    CONTEXT,
    NODE,
    actor,
    authorize,
    expected_revision,
    json_body,
    json_response,
)
from .routes import Route
from .shares_api import FLEET_SHARES_ROUTE, SHARES_ROUTE
from .table import AAAA, A

P = "/api/v1"
MAX_REVERT = 10_000  # revisions a revert may reach back (the audit keeps them all)


class WouldEmpty(HttpdnsError):
    """The change would leave services answering nobody in some region."""

    status = 409
    code = "would_empty"

    def __init__(self, empty: Mapping[str, list[str]], hint: str) -> None:
        super().__init__(
            f"would leave {impact.describe_empty(empty)} answering empty; {hint}, or force it"
        )
        self.extra = {"affected": [{"service": s, "regions": r} for s, r in sorted(empty.items())]}


class NoEndpoints(HttpdnsError):
    """The release names a version that has no endpoints."""

    status = 409
    code = "no_endpoints"


def _flag(request: web.Request, name: str) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return False
    if raw.lower() in ("", "0", "false", "no"):
        return raw == ""  # "?force" alone means yes
    if raw.lower() in ("1", "true", "yes"):
        return True
    raise BadRequest(f"{name}: {raw[:20]!r} is not 1/0 or true/false")


def _snapshot(request: web.Request) -> Snapshot:
    return request.app[NODE].table.snapshot


async def _latest(request: web.Request) -> Snapshot:
    """The registry a write is checked against: the store's latest (another node or
    worker may have written since this node's table last moved), or this node's table
    when the store is behind it (the write is then refused as regressed)."""
    node = request.app[NODE]
    snap = await node.store.snapshot()
    return snap if snap.revision >= node.revision else node.table.snapshot


def _hint(changes: Sequence[Change]) -> str:
    """How to fix a change that would empty services (the error's advice)."""
    kinds = {c.kind for c in changes}
    verbs = {c.verb for c in changes}
    if "drain" in verbs:
        return "give the services weight in another eligible datacenter first"
    if "endpoint" in kinds:
        return "add endpoints in another eligible datacenter first"
    if "datacenter" in kinds:
        return "add weight in another eligible datacenter first"
    return "add weight in an eligible datacenter with endpoints"


async def _commit(
    request: web.Request,
    changes: list[Change],
    result: dict[str, Any],
    verb: str,
    created: bool = False,
    snap: Snapshot | None = None,
) -> web.Response:
    """Check ``changes`` against ``snap`` (default: the latest registry) — guard rails,
    warnings, impact — then write them or, for a dry run, answer what they would do."""
    node = request.app[NODE]
    expected = expected_revision(request)
    before = snap or await _latest(request)
    if expected is not None and expected != before.revision:
        raise ConflictError(f"expected revision {expected}, the registry is at {before.revision}")
    changes = [c if c.verb else c.named(verb) for c in changes]
    after, effective = before.apply(changes, before.revision + 1)  # the store's validation
    names = sorted(set(impact.touched(effective, after)) | set(impact.touched(effective, before)))
    warnings = impact.warnings(after, names)
    dry_run = _flag(request, "dry_run")
    wait = _wait_param(request)  # checked before writing: bad input applies nothing
    unversioned = impact.empty_versions(after, effective)
    if unversioned and not _flag(request, "allow_empty"):
        raise NoEndpoints("; ".join(unversioned) + " (deploy them first, or allow_empty)")
    empty = impact.newly_empty(before, after, names)
    if empty and not _flag(request, "force"):
        raise WouldEmpty(empty, _hint(effective))
    if dry_run:
        return json_response({
            "revision": before.revision, "dry_run": True, **result,
            "changes": [_change(c) for c in effective], "warnings": warnings,
            "empty": empty, "impact": impact.impact(before, after, names),
        })  # fmt: skip
    cs = await node.write(
        changes, expected_revision=expected, actor=actor(request), prepared=(before, after)
    )
    body = {"revision": cs.revision, **result, "warnings": warnings,
            "changes": [_change(c) for c in cs.changes]}  # fmt: skip
    if wait is not None:
        body["applied"] = await fleet.wait_applied(node, cs.revision, wait)
    if empty:
        body["empty"] = empty  # forced: say what now answers nobody
    return json_response(body, 201 if created else 200)


def _change(c: Change) -> dict[str, Any]:
    """A change as the API shows it: ``before`` and ``after`` side by side."""
    d = c.to_dict()
    d["after"] = d["value"]
    return d


def _service(request: web.Request, snap: Snapshot | None = None) -> Service:
    name = dns_name("name", request.match_info["name"])
    svc = (snap or _snapshot(request)).services.get(name)
    if svc is None:
        raise NotFoundError(f"service {name!r} does not exist")
    return svc


async def _state(request: web.Request) -> web.Response:
    authorize(request)
    return json_response(_snapshot(request).to_dict())


async def _put_datacenter(request: web.Request) -> web.Response:
    authorize(request)
    dc = Datacenter.from_dict(request.match_info["dc"], await json_body(request))
    created = dc.name not in _snapshot(request).datacenters
    return await _commit(request, [Change.put(dc)], {"datacenter": dc.to_dict()}, "set", created)


def _drainer(drained: bool) -> Any:
    async def handler(request: web.Request) -> web.Response:
        authorize(request)
        name = identifier("dc", request.match_info["dc"])
        snap = await _latest(request)
        current = snap.datacenters.get(name)
        if current is None:
            raise NotFoundError(f"datacenter {name!r} does not exist")
        dc = Datacenter(name, current.kind, current.writable, drained, current.labels)
        verb = "drain" if drained else "undrain"
        return await _commit(request, [Change.put(dc)], {"datacenter": dc.to_dict()}, verb,
                             snap=snap)  # fmt: skip

    return handler


async def _put_region(request: web.Request) -> web.Response:
    authorize(request)
    region = Region.from_dict(request.match_info["region"], await json_body(request))
    created = region.name not in _snapshot(request).regions
    return await _commit(request, [Change.put(region)], {"region": region.to_dict()}, "set",
                         created)  # fmt: skip


async def _put_service(request: web.Request) -> web.Response:
    authorize(request)
    svc = Service.from_dict(request.match_info["name"], await json_body(request))
    created = svc.name not in _snapshot(request).services
    return await _commit(request, [Change.put(svc)], {"service": svc.to_dict()}, "set", created)


async def _put_traffic(request: web.Request) -> web.Response:
    authorize(request)
    body = await json_body(request)
    snap = await _latest(request)
    svc = _service(request, snap)
    new = Service(svc.name, traffic_table("traffic", body), svc.access, svc.ttl, svc.answers,
                  svc.all_down)  # fmt: skip
    return await _commit(request, [Change.put(new)], {"service": new.to_dict()}, "set", snap=snap)


async def _put_release(request: web.Request) -> web.Response:
    authorize(request)
    rel = Release.from_dict(request.match_info["name"], await json_body(request))
    return await _commit(request, [Change.put(rel)], {"release": rel.to_dict()}, "release")


async def _put_endpoint(request: web.Request) -> web.Response:
    authorize(request)
    ep = Endpoint.from_dict(
        request.match_info["name"], request.match_info["id"], await json_body(request)
    )
    created = ep.id not in _snapshot(request).endpoints_of(ep.service)
    return await _commit(request, [Change.put(ep)], {"endpoint": ep.to_dict()}, "set", created)


async def _put_zone(request: web.Request) -> web.Response:
    authorize(request)
    zone = Zone.from_dict(request.match_info["zone"], await json_body(request))
    created = zone.name not in _snapshot(request).zones
    return await _commit(request, [Change.put(zone)], {"zone": zone.to_dict()}, "set", created)


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
        change = Change.delete(kind, key)
        return await _commit(request, [change], {"deleted": f"{kind}/{key}"}, "delete")

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
    snap = await _latest(request)
    for role, dc in (("from", source), ("to", target)):
        if dc not in snap.datacenters:
            raise ValidationError(role, f"datacenter {dc!r} does not exist")
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
    done = shift(selected, source, target, float(percent), snap.datacenters,
                 selected=names is not None)  # fmt: skip
    if not done.services:
        reasons = "; ".join(
            f"{s.service}{f' ({s.region})' if s.region else ''}: {s.reason}" for s in done.skipped
        )
        raise ValidationError(
            "from", f"nothing to shift from {source!r}: {reasons or 'no services'}"
        )
    result = {
        "services": {s.name: {r: dict(t) for r, t in s.traffic.items()} for s in done.services},
        "moves": [m.to_dict() for m in done.moves],
        "skipped": [s.to_dict() for s in done.skipped],
    }
    changes = [Change.put(s) for s in done.services]
    return await _commit(request, changes, result, "shift", snap=snap)


async def _split(request: web.Request) -> web.Response:
    """The effective split of a service per region, measured on the client sample."""
    authorize(request)
    svc = _service(request)
    table = request.app[NODE].table
    body = impact.shares(table.snapshot, svc.name, table.services.get(svc.name))
    return json_response({"revision": table.revision, "service": svc.name, **body})


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


def _number(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not is_decimal(text) or len(text) > 18 or not low <= int(text) <= high:
        raise BadRequest(f"{name} must be an integer {low}-{high}")
    return int(text)


async def _audit(request: web.Request) -> web.Response:
    """Newest first (``limit``), or oldest first after ``since``; ``service`` keeps only
    the changes of one service (its history)."""
    authorize(request)
    limit = _number(request, "limit", 100, 1, 10000)
    node = request.app[NODE]
    service = request.query.get("service")
    name = dns_name("service", service) if service is not None else None
    if "since" in request.query:
        since = _number(request, "since", 0, 0, 10**18)
        entries = await node.store.audit(since, limit if name is None else MAX_REVERT)
    else:
        # Revisions are consecutive: the newest N batches are the ones after revision - N.
        reach = limit if name is None else MAX_REVERT
        entries = list(reversed(await node.store.audit(max(0, node.revision - reach), reach)))
    out = []
    for cs in entries:
        changes = [c for c in cs.changes if name is None or c.service == name]
        if changes:
            out.append({**cs.to_dict(), "changes": [_change(c) for c in changes]})
    return json_response({"revision": node.revision, "entries": out[:limit]})


async def _revert(request: web.Request) -> web.Response:
    """Restore the records (not the deployer's bookkeeping) as they were at revision
    ``to``, as one new revision."""
    authorize(request)
    body = await json_body(request)
    if not isinstance(body, dict) or set(body) != {"to"}:
        raise ValidationError("body", 'must be {"to": REVISION}')
    to = body["to"]
    snap = await _latest(request)
    if isinstance(to, bool) or not isinstance(to, int) or not 0 <= to <= snap.revision:
        raise ValidationError("to", f"must be a revision 0-{snap.revision}")
    if snap.revision - to > MAX_REVERT:
        raise ValidationError("to", f"reaches back more than {MAX_REVERT} revisions")
    entries = await request.app[NODE].store.audit(to, snap.revision - to)
    if [e.revision for e in entries] != list(range(to + 1, snap.revision + 1)):
        raise ValidationError(
            "to", f"the audit log no longer holds every revision after {to}; revert is not possible"
        )
    target = undo(snap, entries)
    changes = diff(snap, target)
    if not changes:
        return json_response({"revision": snap.revision, "to": to, "changes": []})
    return await _commit(request, changes, {"to": to}, "revert", snap=snap)


async def _registry(request: web.Request) -> web.Response:
    """The registry in the declarative shape ``PUT`` takes (``httpdns export``)."""
    authorize(request)
    snap = _snapshot(request)
    return json_response({"revision": snap.revision, "registry": declared_form(snap)})


def _zone_body(d: dict[str, Any]) -> dict[str, Any]:
    """A zone as its admin body, without the unset SOA fields (TOML has no null)."""
    soa = {k: v for k, v in (d.get("soa") or {}).items() if v is not None}
    return {"nameservers": d["nameservers"], **({"soa": soa} if soa else {})}


def declared_form(snap: Snapshot) -> dict[str, Any]:
    """Datacenters, regions and services (with endpoints and release) as admin bodies."""
    services = {}
    for name, s in sorted(snap.services.items()):
        body = {k: v for k, v in s.to_dict().items() if k != "name"}
        eps = snap.endpoints_of(name)
        if eps:
            body["endpoints"] = {
                i: {k: v for k, v in e.to_dict().items() if k not in ("service", "id")}
                for i, e in sorted(eps.items())
            }
        rel = snap.releases.get(name)
        if rel is not None:
            body["release"] = {k: v for k, v in rel.to_dict().items()
                               if k != "service" and v is not None}  # fmt: skip
        services[name] = body
    return {
        "datacenters": {n: {k: v for k, v in d.to_dict().items() if k != "name"}
                        for n, d in sorted(snap.datacenters.items())},
        "regions": {n: {"cidrs": list(r.cidrs)} for n, r in sorted(snap.regions.items())},
        "zones": {n: _zone_body(z.to_dict()) for n, z in sorted(snap.zones.items())},
        "services": services,
    }  # fmt: skip


async def _apply(request: web.Request) -> web.Response:
    """Declarative apply: make the registry match the body, as one revision (none when it
    already does); ``?prune=1`` deletes what the body does not name."""
    authorize(request)  # before reading: only an admitted caller may send a large body
    body = await json_body(request, request.app[CONFIG].max_apply_bytes)
    snap = await _latest(request)
    # validating and diffing a large registry takes seconds: in a thread, so that the
    # event loop keeps answering queries meanwhile (snapshots are immutable)
    changes = await asyncio.to_thread(_declared_diff, snap, body, _flag(request, "prune"))
    if not changes:
        expected = expected_revision(request)
        if expected is not None and expected != snap.revision:
            raise ConflictError(f"expected revision {expected}, the registry is at {snap.revision}")
        return json_response({"revision": snap.revision, "changes": [], "unchanged": True})
    return await _commit(request, changes, {}, "apply", snap=snap)


def _declared_diff(snap: Snapshot, body: Any, prune: bool) -> list[Change]:
    return diff(snap, declared(snap, body, prune=prune))


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


# The query flags of every write: a dry run, past the guard rails, and (``wait``) an answer
# saying how many live nodes have applied it, ``"applied": {"nodes": N, "of": M}``.
_W = ("dry_run", "force", "allow_empty", "wait", "timeout")

ADMIN_ROUTES: tuple[Route, ...] = (
    Route("GET", f"{P}/state", handler=_state, summary="the whole registry snapshot"),
    Route("PUT", f"{P}/datacenters/{{dc}}", handler=_put_datacenter, body="Datacenter", write=True,
          summary="create or replace a datacenter", query=_W, role="admin"),
    Route("POST", f"{P}/datacenters/{{dc}}/drain", handler=_drainer(True), write=True,
          summary="send a datacenter no new traffic", query=_W, role="ops"),
    Route("POST", f"{P}/datacenters/{{dc}}/undrain", handler=_drainer(False), write=True,
          summary="send a drained datacenter traffic again", query=_W, role="ops"),
    Route("DELETE", f"{P}/datacenters/{{dc}}", handler=_deleter("datacenter"), write=True,
          summary="delete an unused datacenter", query=_W, role="admin"),
    Route("PUT", f"{P}/regions/{{region}}", handler=_put_region, body="Region", write=True,
          summary="create or replace a region", query=_W, role="admin"),
    Route("DELETE", f"{P}/regions/{{region}}", handler=_deleter("region"), write=True,
          summary="delete an unused region", query=_W, role="admin"),
    Route("PUT", f"{P}/services/{{name}}", handler=_put_service, body="Service", write=True,
          summary="create or replace a service", query=_W, role="admin"),
    Route("DELETE", f"{P}/services/{{name}}", handler=_deleter("service"), write=True,
          summary="delete a service with its endpoints and release", query=_W, role="admin"),
    Route("PUT", f"{P}/services/{{name}}/traffic", handler=_put_traffic, body="Traffic",
          write=True, summary="replace a service's traffic tables", query=_W, role="ops"),
    Route("PUT", f"{P}/services/{{name}}/release", handler=_put_release, body="Release",
          write=True, summary="set stable / canary versions", query=_W, role="ops"),
    Route("PUT", f"{P}/services/{{name}}/endpoints/{{id}}", handler=_put_endpoint,
          body="Endpoint", write=True, summary="create or replace an endpoint", query=_W,
          role="deployer"),
    Route("DELETE", f"{P}/services/{{name}}/endpoints/{{id}}", handler=_deleter("endpoint"),
          write=True, summary="delete an endpoint", query=_W, role="deployer"),
    Route("POST", f"{P}/traffic/shift", handler=_shift, body="Shift", write=True,
          summary="move a share of the source's weight to another datacenter", query=_W,
          role="ops"),
    Route("PUT", f"{P}/zones/{{zone}}", handler=_put_zone, body="Zone", write=True, query=_W,
          summary="create or replace a zone every node serves (apex SOA and NS, glue)",
          role="admin"),
    Route("DELETE", f"{P}/zones/{{zone}}", handler=_deleter("zone"), write=True, query=_W,
          summary="stop serving a zone", role="admin"),
    Route("GET", f"{P}/services/{{name}}/split", handler=_split,
          summary="the effective split per region, measured on a sample of client buckets"),
    Route("GET", f"{P}/explain", handler=_explain, query=("name", "ip", "uid", "type"),
          summary="the steering trace for one query"),
    Route("GET", f"{P}/audit", handler=_audit, query=("since", "limit", "service"),
          summary="committed changes: newest first, or oldest first after a revision"),
    Route("GET", f"{P}/registry", handler=_registry,
          summary="the registry in the declarative shape PUT takes"),
    Route("PUT", f"{P}/registry", handler=_apply, body="Registry", write=True, query=(*_W, "prune"),
          summary="make the registry match the body, as one revision", role="admin"),
    Route("POST", f"{P}/registry/revert", handler=_revert, body="Revert", write=True, query=_W,
          summary="restore the records as at a revision, as one new revision", role="admin"),
    Route("POST", f"{P}/registry/restore", handler=_restore, write=True,
          summary="re-seed a store that lost data or is damaged (Redis) from this node's snapshot",
          role="admin"),
    Route("GET", f"{P}/nodes", handler=_nodes,
          summary="the fleet: every live node's id, address, version, revision, status, seen"),
    SHARES_ROUTE,
    FLEET_SHARES_ROUTE,
)  # fmt: skip
