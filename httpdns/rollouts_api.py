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
are mapped to the same ``{"error","detail"}`` bodies as every other error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from deployer import intents
from deployer.errors import DeployerError, NoRolloutError
from deployer.spec import ReleaseSpec
from deployer.status import history_entry, summary
from registry.changes import Change
from registry.errors import ConflictError, ValidationError
from registry.model import Rollout
from registry.snapshot import Snapshot
from registry.validation import dns_name, token

from .admin import _actor, _authorize, _body, _expected_revision
from .errors import HttpdnsError
from .openapi import OPENAPI, _op
from .web import NODE, json_response

P = "/api/v1/rollouts"
RETRIES = 5


class RolloutError(HttpdnsError):
    """A deployer error, carried with its own status and code."""

    def __init__(self, exc: DeployerError) -> None:
        super().__init__(exc.detail)
        self.status = exc.status
        self.code = exc.code


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
    expected = _expected_revision(request)
    for attempt in range(RETRIES):
        snap = await _snapshot(request)
        if expected is not None and expected != snap.revision:
            raise ConflictError(f"expected revision {expected}, the registry is at {snap.revision}")
        try:
            changes = build(snap)
        except DeployerError as exc:
            raise RolloutError(exc) from None
        try:
            cs = await node.write(changes, expected_revision=snap.revision, actor=_actor(request))
        except ConflictError:
            if expected is not None or attempt == RETRIES - 1:
                raise
            continue
        return snap, cs.revision
    raise AssertionError("unreachable")


def _current(snap: Snapshot, service: str) -> Rollout | None:
    return intents.active(snap, service) or intents.latest(snap, service)


async def _list(request: web.Request) -> web.Response:
    _authorize(request)
    snap = await _snapshot(request)
    rows = []
    for service in sorted({r.service for r in snap.rollouts.values()}):
        r = _current(snap, service)
        if r is not None:
            rows.append(summary(snap, r))
    return json_response({"revision": snap.revision, "rollouts": rows})


async def _status(request: web.Request) -> web.Response:
    _authorize(request)
    service = _name(request)
    snap = await _snapshot(request)
    r = _current(snap, service)
    if r is None:
        raise RolloutError(NoRolloutError(f"service {service!r} has no rollouts"))
    return json_response({"revision": snap.revision, "rollout": summary(snap, r)})


async def _history(request: web.Request) -> web.Response:
    _authorize(request)
    service = _name(request)
    snap = await _snapshot(request)
    entries = [history_entry(r) for r in intents.history(snap, service)]
    return json_response({"revision": snap.revision, "rollouts": entries})


async def _deploy(request: web.Request) -> web.Response:
    _authorize(request)
    service = _name(request)
    body = await _body(request)
    if not isinstance(body, dict) or set(body) - {"version", "spec"} or "spec" not in body:
        raise ValidationError("body", 'must be {"version": V, "spec": {...}}')
    version = token("version", body.get("version"))
    raw: Any = body["spec"]
    if not isinstance(raw, dict):
        raise ValidationError("spec", "must be an object (a complete release spec)")
    try:
        spec = ReleaseSpec.from_dict({**raw, "service": raw.get("service", service)})
    except DeployerError as exc:
        raise RolloutError(exc) from None
    if spec.service != service:
        raise ValidationError("spec.service", f"names {spec.service!r}, the path {service!r}")
    created: list[Rollout] = []

    def build(snap: Snapshot) -> list[Change]:
        rollout, changes = intents.deploy(snap, spec, version, time.time(), _actor(request))
        created[:] = [rollout]
        return changes

    _, revision = await _record(request, build)
    return json_response({"revision": revision, "rollout": created[0].to_dict()}, 201)


def _intent(fn: Callable[[Snapshot, str, float, str], list[Change]], what: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        _authorize(request)
        service = _name(request)
        _, revision = await _record(
            request, lambda snap: fn(snap, service, time.time(), _actor(request))
        )
        return json_response({"revision": revision, "service": service, "recorded": what})

    return handler


async def _promote(request: web.Request) -> web.Response:
    _authorize(request)
    service = _name(request)
    full = False
    if await request.read():
        body = await _body(request)
        if not isinstance(body, dict) or set(body) - {"full"}:
            raise ValidationError("body", 'must be {"full": true|false} or empty')
        full = body.get("full", False)
        if not isinstance(full, bool):
            raise ValidationError("full", "must be true or false")
    _, revision = await _record(
        request, lambda snap: intents.promote(snap, service, time.time(), full, _actor(request))
    )
    what = "promote-full" if full else "promote"
    return json_response({"revision": revision, "service": service, "recorded": what})


async def _rollback(request: web.Request) -> web.Response:
    _authorize(request)
    service = _name(request)
    created: list[Rollout | None] = [None]

    def build(snap: Snapshot) -> list[Change]:
        new, changes = intents.rollback(snap, service, time.time(), _actor(request))
        created[0] = new
        return changes

    _, revision = await _record(request, build)
    new = created[0]
    return json_response({
        "revision": revision, "service": service, "recorded": "rollback",
        "redeploy": None if new is None else new.to_dict(),
    })  # fmt: skip


def add_rollout_routes(app: web.Application) -> None:
    """Register ``/api/v1/rollouts`` on ``app``."""
    r = app.router
    r.add_get(P, _list)
    r.add_get(f"{P}/{{name}}", _status)
    r.add_post(f"{P}/{{name}}", _deploy)
    r.add_get(f"{P}/{{name}}/history", _history)
    r.add_post(f"{P}/{{name}}/pause", _intent(intents.pause, "pause"))
    r.add_post(f"{P}/{{name}}/resume", _intent(intents.resume, "resume"))
    r.add_post(f"{P}/{{name}}/abort", _intent(intents.abort, "abort"))
    r.add_post(f"{P}/{{name}}/promote", _promote)
    r.add_post(f"{P}/{{name}}/rollback", _rollback)


OPENAPI["paths"].update({
    P: {"get": _op("status of every service's current rollout")},
    f"{P}/{{name}}": {
        "get": _op("status of the service's current rollout", None, ["name"]),
        "post": _op("deploy: record a rollout of a version from a complete release spec",
                    None, ["name"], True)},
    f"{P}/{{name}}/history": {"get": _op("rollouts of the service, newest first", None, ["name"])},
    **{f"{P}/{{name}}/{verb}": {"post": _op(text, None, ["name"], True)} for verb, text in (
        ("pause", "hold the rollout at its step"),
        ("resume", "let a paused rollout go on"),
        ("abort", "canary to 0 % at once, then remove the new containers"),
        ("promote", "next canary step; body {\"full\": true} makes the release stable"),
        ("rollback", "back to the previous version (flip while warm, else redeploy)"),
    )},
})  # fmt: skip
