"""Rollout intents in the admin API, ``/api/v1/rollouts`` (the deployer, DESIGN §8).

The node only records intents in the registry — the ``rolling controller`` carries
them out — so these handlers are the ``rolling`` CLI's intents over HTTP::

    GET  /api/v1/rollouts                     status of every service's current rollout
    GET  /api/v1/rollouts/{name}              status of the current rollout of a service
    POST /api/v1/rollouts/{name}              deploy: {"version", "spec": complete release spec}
    GET  /api/v1/rollouts/{name}/history      rollouts of the service, newest first
    POST /api/v1/rollouts/{name}/pause|resume|abort|rollback
    POST /api/v1/rollouts/{name}/promote      optional body {"full": true}

Each intent is computed from the store's latest snapshot and written at that
revision (compare-and-set; ``If-Match`` must equal it when given). Deployer errors
carry their status and code and are mapped by the node like every other error.
These routes join a node through ``deployer.plugin`` (the node never imports them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from httpdns.handlers import NODE, actor, authorize, expected_revision, json_body, json_response
from httpdns.routes import Route
from registry.changes import Change
from registry.errors import ValidationError
from registry.model import Rollout
from registry.retry import record
from registry.snapshot import Snapshot
from registry.validation import dns_name, token

from . import intents
from .errors import NoRolloutError
from .spec import ReleaseSpec
from .status import history_entry, summary

P = "/api/v1/rollouts"


def _name(request: web.Request) -> str:
    return dns_name("name", request.match_info["name"])


async def _snapshot(request: web.Request) -> Snapshot:
    return await request.app[NODE].store.snapshot()


async def _record(
    request: web.Request, build: Callable[[Snapshot], list[Change]]
) -> tuple[Snapshot, int]:
    """Compute the intent on the latest snapshot and write it at that revision; without
    ``If-Match``, recompute when the registry moved meanwhile (the controller writes too)."""
    node = request.app[NODE]
    snap, cs = await record(
        node.store.snapshot, node.write, build, actor(request),
        expected_revision=expected_revision(request),
    )  # fmt: skip
    return snap, cs.revision


def _current(snap: Snapshot, service: str) -> Rollout | None:
    return intents.active(snap, service) or intents.latest(snap, service)


async def _list(request: web.Request) -> web.Response:
    authorize(request)
    snap = await _snapshot(request)
    rows = []
    for service in sorted({r.service for r in snap.rollouts.values()}):
        r = _current(snap, service)
        if r is not None:
            rows.append(summary(snap, r))
    return json_response({"revision": snap.revision, "rollouts": rows})


async def _status(request: web.Request) -> web.Response:
    authorize(request)
    service = _name(request)
    snap = await _snapshot(request)
    r = _current(snap, service)
    if r is None:
        raise NoRolloutError(f"service {service!r} has no rollouts")
    return json_response({"revision": snap.revision, "rollout": summary(snap, r)})


async def _history(request: web.Request) -> web.Response:
    authorize(request)
    service = _name(request)
    snap = await _snapshot(request)
    entries = [history_entry(r) for r in intents.history(snap, service)]
    return json_response({"revision": snap.revision, "rollouts": entries})


async def _deploy(request: web.Request) -> web.Response:
    authorize(request)
    service = _name(request)
    body = await json_body(request)
    if not isinstance(body, dict) or set(body) - {"version", "spec"} or "spec" not in body:
        raise ValidationError("body", 'must be {"version": V, "spec": {...}}')
    version = token("version", body.get("version"))
    raw: Any = body["spec"]
    if not isinstance(raw, dict):
        raise ValidationError("spec", "must be an object (a complete release spec)")
    spec = ReleaseSpec.from_dict({**raw, "service": raw.get("service", service)})
    if spec.service != service:
        raise ValidationError("spec.service", f"names {spec.service!r}, the path {service!r}")
    created: list[Rollout] = []

    def build(snap: Snapshot) -> list[Change]:
        rollout, changes = intents.deploy(snap, spec, version, time.time(), actor(request))
        created[:] = [rollout]
        return changes

    _, revision = await _record(request, build)
    return json_response({"revision": revision, "rollout": created[0].to_dict()}, 201)


def _intent(fn: Callable[[Snapshot, str, float, str], list[Change]], what: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        authorize(request)
        service = _name(request)
        _, revision = await _record(
            request, lambda snap: fn(snap, service, time.time(), actor(request))
        )
        return json_response({"revision": revision, "service": service, "recorded": what})

    return handler


async def _promote(request: web.Request) -> web.Response:
    authorize(request)
    service = _name(request)
    full = False
    if await request.read():
        body = await json_body(request)
        if not isinstance(body, dict) or set(body) - {"full"}:
            raise ValidationError("body", 'must be {"full": true|false} or empty')
        full = body.get("full", False)
        if not isinstance(full, bool):
            raise ValidationError("full", "must be true or false")
    _, revision = await _record(
        request, lambda snap: intents.promote(snap, service, time.time(), full, actor(request))
    )
    what = "promote-full" if full else "promote"
    return json_response({"revision": revision, "service": service, "recorded": what})


async def _rollback(request: web.Request) -> web.Response:
    authorize(request)
    service = _name(request)
    created: list[Rollout | None] = [None]

    def build(snap: Snapshot) -> list[Change]:
        new, changes = intents.rollback(snap, service, time.time(), actor(request))
        created[0] = new
        return changes

    _, revision = await _record(request, build)
    new = created[0]
    return json_response({
        "revision": revision, "service": service, "recorded": "rollback",
        "redeploy": None if new is None else new.to_dict(),
    })  # fmt: skip


async def _scale(request: web.Request) -> web.Response:
    authorize(request)
    service = _name(request)
    body = await json_body(request)
    replicas = (
        body.get("replicas") if isinstance(body, dict) and set(body) == {"replicas"} else None
    )
    if not isinstance(replicas, dict) or not replicas:
        raise ValidationError("body", 'must be {"replicas": {"DC": N, ...}}')
    counts: dict[str, int] = {}
    for dc, n in replicas.items():
        if isinstance(n, bool) or not isinstance(n, int):
            raise ValidationError(f"replicas.{dc}", "must be an integer")
        counts[token("replicas", dc)] = n
    _, revision = await _record(
        request, lambda snap: intents.scale(snap, service, time.time(), counts, actor(request))
    )
    return json_response({"revision": revision, "service": service, "recorded": "scale",
                          "replicas": counts})  # fmt: skip


_VERBS = (
    ("pause", "hold the rollout at its step"),
    ("resume", "let a paused rollout go on"),
    ("abort", "canary to 0 % at once, then remove the new containers"),
)

ROUTES: tuple[Route, ...] = (
    Route("GET", P, handler=_list, summary="status of every service's current rollout"),
    Route("GET", f"{P}/{{name}}", handler=_status,
          summary="status of the service's current rollout"),
    Route("POST", f"{P}/{{name}}", handler=_deploy, write=True, role="deployer",
          summary="deploy: record a rollout of a version from a complete release spec"),
    Route("GET", f"{P}/{{name}}/history", handler=_history,
          summary="rollouts of the service, newest first"),
    *(Route("POST", f"{P}/{{name}}/{verb}", handler=_intent(getattr(intents, verb), verb),
            write=True, role="deployer", summary=text) for verb, text in _VERBS),
    Route("POST", f"{P}/{{name}}/promote", handler=_promote, write=True, role="deployer",
          summary='next canary step; body {"full": true} makes the release stable'),
    Route("POST", f"{P}/{{name}}/rollback", handler=_rollback, write=True, role="deployer",
          summary="back to the previous version (flip while warm, else redeploy)"),
    Route("POST", f"{P}/{{name}}/scale", handler=_scale, write=True,
          summary='replicas per datacenter: {"replicas": {"idc": 3}}'),
)  # fmt: skip
