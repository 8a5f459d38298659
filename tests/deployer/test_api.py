"""``/api/v1/rollouts``: the same intents through the admin API of a node."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from deployer.api import ROUTES
from httpdns import config as config_mod
from httpdns.admin import ADMIN_ROUTES
from httpdns.node import Node
from httpdns.routes import QUERY_ROUTES
from httpdns.web import make_app
from registry import Change, Datacenter, Service
from registry.store import open_store
from tests.deployer.fakes import SERVICE, spec

ADMIN = {"Authorization": "Bearer T"}
P = "/api/v1/rollouts"


@pytest.fixture
async def client(aiohttp_client: Callable[..., Awaitable[TestClient]]) -> AsyncIterator[TestClient]:
    store = await open_store("sqlite://:memory:")
    await store.apply([Change.put(Datacenter("idc")), Change.put(Datacenter("cloud")),
                       Change.put(Service(SERVICE, {"default": {"idc": 1}}))])  # fmt: skip
    node = await Node.start(store)
    try:
        config = config_mod.load(None, env={}, admin_token="T")
        yield await aiohttp_client(make_app(node, config, [*QUERY_ROUTES, *ADMIN_ROUTES, *ROUTES]))
    finally:
        await node.stop()
        await store.close()


async def call(client: TestClient, method: str, path: str, body: Any = None,
               status: int = 200, **headers: str) -> dict[str, Any]:  # fmt: skip
    data = None if body is None else json.dumps(body)
    resp = await client.request(method, path, data=data, headers={**ADMIN, **headers})
    text = await resp.text()
    assert resp.status == status, text
    return json.loads(text)  # type: ignore[no-any-return]


async def test_deploy_and_every_intent(client: TestClient) -> None:
    body = {"version": "v1", "spec": spec("v1").to_dict()}
    created = await call(client, "POST", f"{P}/{SERVICE}", body, 201)
    assert created["rollout"]["phase"] == "pending" and created["revision"] == 2
    status = await call(client, "GET", f"{P}/{SERVICE}")
    assert status["rollout"]["version"] == "v1"
    assert status["rollout"]["datacenters"] == {"cloud": {"healthy": 0, "total": 1},
                                                "idc": {"healthy": 0, "total": 2}}  # fmt: skip
    for verb in ("pause", "resume"):
        assert (await call(client, "POST", f"{P}/{SERVICE}/{verb}"))["recorded"] == verb
    scaled = await call(client, "POST", f"{P}/{SERVICE}/scale", {"replicas": {"idc": 3}})
    assert scaled["recorded"] == "scale" and scaled["replicas"] == {"idc": 3}
    status = await call(client, "GET", f"{P}/{SERVICE}")
    assert status["rollout"]["datacenters"]["idc"]["total"] == 3
    await call(client, "POST", f"{P}/{SERVICE}/scale", {"replicas": {"mars": 1}}, 400)
    await call(client, "POST", f"{P}/{SERVICE}/scale", {"replicas": {"idc": "3"}}, 400)
    assert (await call(client, "POST", f"{P}/{SERVICE}/promote", {"full": True}))["recorded"] == (
        "promote-full"
    )
    await call(client, "POST", f"{P}/{SERVICE}/rollback")  # before promotion: an abort
    listing = await call(client, "GET", P)
    assert [r["service"] for r in listing["rollouts"]] == [SERVICE]
    history = await call(client, "GET", f"{P}/{SERVICE}/history")
    assert history["rollouts"][0]["events"][-1]["text"].startswith("rollback (abort)")
    state = await call(client, "GET", "/api/v1/state")
    assert list(state["rollouts"]) == [f"{SERVICE}/r2"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", f"{P}/{SERVICE}/pause", None, 404, "no_rollout"),
        ("GET", f"{P}/{SERVICE}", None, 404, "no_rollout"),
        ("POST", f"{P}/{SERVICE}", {"version": "v1"}, 400, "invalid"),
        ("POST", f"{P}/{SERVICE}", {"version": "v1", "spec": {"service": SERVICE}}, 400,
         "invalid_spec"),
        ("POST", f"{P}/nope.example.com", {"version": "v1", "spec": spec("v1").to_dict()}, 400,
         "invalid"),
        ("POST", f"{P}/{SERVICE}/promote", {"full": "yes"}, 400, "invalid"),
        ("POST", f"{P}/bad name/pause", None, 400, "invalid"),
    ],
)  # fmt: skip
async def test_errors_map_to_json(client: TestClient, method: str, path: str, body: Any,
                                  status: int, code: str) -> None:  # fmt: skip
    answer = await call(client, method, path, body, status)
    assert answer["error"] == code and answer["detail"]


async def test_writes_need_the_token_and_honour_if_match(client: TestClient) -> None:
    resp = await client.post(f"{P}/{SERVICE}/pause")
    assert resp.status == 401
    body = {"version": "v1", "spec": spec("v1").to_dict()}
    answer = await call(client, "POST", f"{P}/{SERVICE}", body, 409, **{"If-Match": "7"})
    assert answer["error"] == "conflict"
    await call(client, "POST", f"{P}/{SERVICE}", body, 201, **{"If-Match": "1"})
    answer = await call(client, "POST", f"{P}/{SERVICE}", body, 409)
    assert answer["error"] == "intent_refused"
