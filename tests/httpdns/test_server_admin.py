"""The admin API (DESIGN §7) against the real application: auth, compare-and-set,
create/replace/delete of every record kind, traffic shift, explain, audit, OpenAPI
and /healthz."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from httpdns.node import Node
from httpdns.web import make_app

from .conftest import (
    ADMIN,
    MOBILE_CIDRS,
    PAY,
    SHOP,
    SHOP_CANARY_V4,
    SHOP_TTL,
    ClientFactory,
    admin,
    dc_of,
    make_config,
)

API = "/api/v1"


async def state(client: TestClient) -> dict[str, Any]:
    return await admin(client, "GET", f"{API}/state", expect=200)


async def health(client: TestClient) -> dict[str, Any]:
    resp = await client.get("/healthz")
    assert resp.status == 200
    return dict(await resp.json())


async def d(client: TestClient, name: str, ip: str) -> list[str]:
    resp = await client.get("/d", params={"dn": name, "ip": ip})
    assert resp.status == 200
    text = await resp.text()
    return text.split(";") if text else []


# -- authentication -------------------------------------------------------------------------------

ROUTES = [
    ("GET", f"{API}/state", None),
    ("PUT", f"{API}/datacenters/idc", {"kind": "idc"}),
    ("DELETE", f"{API}/datacenters/cloud", None),
    ("PUT", f"{API}/regions/mobile", {"cidrs": []}),
    ("DELETE", f"{API}/regions/mobile", None),
    ("PUT", f"{API}/services/{SHOP}", {"traffic": {"default": {"idc": 1}}}),
    ("DELETE", f"{API}/services/{SHOP}", None),
    ("PUT", f"{API}/services/{SHOP}/traffic", {"default": {"idc": 1}}),
    ("PUT", f"{API}/services/{SHOP}/release", {"stable": "v1"}),
    ("PUT", f"{API}/services/{SHOP}/endpoints/e1", {"dc": "idc", "address": "192.0.2.50"}),
    ("DELETE", f"{API}/services/{SHOP}/endpoints/idc-v4-0", None),
    ("POST", f"{API}/traffic/shift", {"from": "idc", "to": "cloud", "percent": 10}),
    ("GET", f"{API}/explain?name={SHOP}", None),
    ("GET", f"{API}/audit?since=0", None),
    ("POST", f"{API}/registry/restore", None),
]
WRITES = [r for r in ROUTES if r[0] != "GET"]


@pytest.mark.parametrize("method,path,body", ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
async def test_token_is_required(served: TestClient, method: str, path: str, body: Any) -> None:
    before = await state(served)
    data = None if body is None else json.dumps(body)
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer TT"},
        {"Authorization": "Basic T"},
        {"Authorization": "T"},
        {"Authorization": "Bearer "},
    ):
        resp = await served.request(method, path, data=data, headers=headers)
        assert resp.status == 401, (headers, await resp.text())
        err = await resp.json()
        assert err["error"] == "unauthorized" and err["detail"]
    assert (await state(served)) == before  # nothing was written


async def test_token_scheme_is_case_insensitive(served: TestClient) -> None:
    resp = await served.get(f"{API}/state", headers={"Authorization": "bearer T"})
    assert resp.status == 200


@pytest.mark.parametrize("method,path,body", WRITES, ids=[f"{m} {p}" for m, p, _ in WRITES])
async def test_writes_are_disabled_without_a_configured_token(
    aiohttp_client: ClientFactory, node: Node, method: str, path: str, body: Any
) -> None:
    config = make_config(admin_token=None)
    assert config.admin_token is None
    client = await aiohttp_client(make_app(node, config))
    data = None if body is None else json.dumps(body)
    for headers in ({}, ADMIN):
        resp = await client.request(method, path, data=data, headers=headers)
        assert resp.status == 403, await resp.text()
        err = await resp.json()
        assert err["error"] == "admin_disabled"
        assert err["detail"]
    assert node.revision == 0
    # reads stay open (the node binds to loopback by default)
    resp = await client.get(f"{API}/state")
    assert resp.status == 200
    assert (await resp.json())["revision"] == 0


# -- compare-and-set ------------------------------------------------------------------------------


async def test_if_match_stale_is_409_and_changes_nothing(served: TestClient) -> None:
    before = await state(served)
    rev = before["revision"]
    for stale in (str(rev - 1), "0", f'"{rev - 3}"'):
        err = await admin(
            served,
            "PUT",
            f"{API}/datacenters/cloud",
            {"kind": "cloud", "writable": False, "drained": True},
            expect=409,
            headers={"If-Match": stale},
        )
        assert err["error"] == "conflict" and err["detail"]
    err = await admin(
        served,
        "POST",
        f"{API}/traffic/shift",
        {"from": "idc", "to": "cloud", "percent": 10},
        expect=409,
        headers={"If-Match": str(rev + 5)},
    )
    assert err["error"] == "conflict"
    after = await state(served)
    assert after == before
    assert (await health(served))["revision"] == rev

    ok = await admin(
        served,
        "PUT",
        f"{API}/datacenters/cloud",
        {"kind": "cloud", "writable": False, "drained": True},
        expect=200,
        headers={"If-Match": str(rev)},
    )
    assert ok["revision"] == rev + 1
    assert ok["datacenter"]["drained"] is True
    # weak/quoted ETag forms of the current revision are accepted too
    ok2 = await admin(
        served,
        "PUT",
        f"{API}/datacenters/cloud",
        {"kind": "cloud", "writable": False},
        expect=200,
        headers={"If-Match": f'W/"{rev + 1}"'},
    )
    assert ok2["revision"] == rev + 2


async def test_conflict_response_carries_the_current_revision(served: TestClient) -> None:
    rev = (await state(served))["revision"]
    err = await admin(
        served,
        "PUT",
        f"{API}/datacenters/idc",
        {"kind": "idc"},
        expect=409,
        headers={"If-Match": str(rev - 1)},
    )
    assert err.get("revision") == rev


# -- create / replace / delete --------------------------------------------------------------------


async def test_every_write_returns_201_or_200_and_the_revision(served: TestClient) -> None:
    rev = (await state(served))["revision"]

    async def write(method: str, path: str, body: Any, status: int) -> dict[str, Any]:
        nonlocal rev
        out = await admin(served, method, path, body, expect=status)
        rev += 1
        assert out["revision"] == rev, (path, out)
        assert (await health(served))["revision"] == rev
        return out

    dc = await write("PUT", f"{API}/datacenters/edge", {"kind": "cloud", "writable": False}, 201)
    assert dc["datacenter"] == {
        "name": "edge",
        "kind": "cloud",
        "writable": False,
        "drained": False,
        "labels": {},
    }
    dc = await write("PUT", f"{API}/datacenters/edge", {"labels": {"city": "x"}}, 200)
    assert dc["datacenter"]["kind"] == "idc" and dc["datacenter"]["labels"] == {"city": "x"}

    region = await write("PUT", f"{API}/regions/north", {"cidrs": ["10.200.0.0/16"]}, 201)
    assert region["region"] == {"name": "north", "cidrs": ["10.200.0.0/16"]}
    region = await write("PUT", f"{API}/regions/north", {"cidrs": ["10.201.0.0/16"]}, 200)
    assert region["region"]["cidrs"] == ["10.201.0.0/16"]

    svc_body = {"access": "rw", "ttl": 15, "answers": 1, "traffic": {"default": {"edge": 5}}}
    svc = await write("PUT", f"{API}/services/api.example.org", svc_body, 201)
    assert svc["service"] == {
        "name": "api.example.org",
        "access": "rw",
        "ttl": 15,
        "answers": 1,
        "all_down": "fail-open",
        "traffic": {"default": {"edge": 5}},
    }
    svc_body["all_down"] = "fail-closed"
    svc = await write("PUT", f"{API}/services/API.Example.org.", svc_body, 200)
    assert svc["service"]["name"] == "api.example.org"
    assert svc["service"]["all_down"] == "fail-closed"

    ep_body = {"dc": "edge", "address": "192.0.2.77", "port": 8443, "version": "v3"}
    ep = await write("PUT", f"{API}/services/api.example.org/endpoints/a1", ep_body, 201)
    assert ep["endpoint"]["address"] == "192.0.2.77"
    assert ep["endpoint"]["weight"] == 100 and ep["endpoint"]["healthy"] is True
    ep = await write(
        "PUT", f"{API}/services/api.example.org/endpoints/a1", {**ep_body, "weight": 7}, 200
    )
    assert ep["endpoint"]["weight"] == 7

    rel = await write("PUT", f"{API}/services/api.example.org/release", {"stable": "v3"}, 200)
    assert rel["release"] == {
        "service": "api.example.org",
        "stable": "v3",
        "canary": None,
        "canary_percent": 0.0,
    }
    tr = await write(
        "PUT", f"{API}/services/api.example.org/traffic", {"default": {"edge": 9}}, 200
    )
    assert tr["service"]["traffic"] == {"default": {"edge": 9}}
    assert tr["service"]["ttl"] == 15  # other fields are kept

    snap = await state(served)
    assert snap["revision"] == rev
    svc_state = snap["services"]["api.example.org"]
    assert svc_state["traffic"] == {"default": {"edge": 9}}
    assert svc_state["release"]["stable"] == "v3"
    assert svc_state["endpoints"]["a1"]["port"] == 8443
    assert snap["regions"]["north"]["cidrs"] == ["10.201.0.0/16"]
    assert snap["datacenters"]["edge"]["labels"] == {"city": "x"}
    assert await d(served, "api.example.org", "10.1.1.1") == ["192.0.2.77"]


async def test_delete_endpoint(served: TestClient) -> None:
    path = f"{API}/services/{SHOP}/endpoints/idc-v4-0"
    out = await admin(served, "DELETE", path, expect=200)
    assert isinstance(out["revision"], int) and out["deleted"]
    snap = await state(served)
    assert "idc-v4-0" not in snap["services"][SHOP]["endpoints"]
    assert snap["revision"] == out["revision"]
    # the address is never answered again
    for i in range(1, 60):
        assert "192.0.2.1" not in await d(served, SHOP, f"10.{i}.0.1")
    err = await admin(served, "DELETE", path, expect=404)
    assert err["error"] == "not_found"


async def test_delete_service(served: TestClient) -> None:
    assert await d(served, PAY, "10.0.0.1")
    out = await admin(served, "DELETE", f"{API}/services/{PAY}", expect=200)
    assert isinstance(out["revision"], int)
    snap = await state(served)
    assert PAY not in snap["services"]
    assert await d(served, PAY, "10.0.0.1") == []
    resp = await served.get("/resolve", params={"name": PAY})
    assert (await resp.json())["Status"] == 3
    err = await admin(served, "DELETE", f"{API}/services/{PAY}", expect=404)
    assert err["error"] == "not_found"


async def test_delete_datacenter_and_region(served: TestClient) -> None:
    before = await state(served)
    err = await admin(served, "DELETE", f"{API}/datacenters/cloud", expect=409)
    assert err["error"] == "in_use" and "cloud" in err["detail"]
    err = await admin(served, "DELETE", f"{API}/regions/mobile", expect=409)
    assert err["error"] == "in_use"
    assert await state(served) == before

    await admin(served, "PUT", f"{API}/datacenters/spare", {"kind": "cloud"}, expect=201)
    out = await admin(served, "DELETE", f"{API}/datacenters/spare", expect=200)
    assert out["revision"] == before["revision"] + 2
    assert "spare" not in (await state(served))["datacenters"]
    await admin(served, "PUT", f"{API}/regions/spare", {"cidrs": ["10.9.0.0/16"]}, expect=201)
    out = await admin(served, "DELETE", f"{API}/regions/spare", expect=200)
    assert "spare" not in (await state(served))["regions"]
    for path in (f"{API}/datacenters/spare", f"{API}/regions/spare"):
        err = await admin(served, "DELETE", path, expect=404)
        assert err["error"] == "not_found"

    # once nothing refers to it, the cloud datacenter can go
    await admin(
        served,
        "PUT",
        f"{API}/services/{SHOP}",
        {"ttl": SHOP_TTL, "traffic": {"default": {"idc": 1}}},
        expect=200,
    )
    await admin(served, "DELETE", f"{API}/services/{PAY}", expect=200)
    endpoints = (await state(served))["services"][SHOP]["endpoints"]
    for eid, ep in endpoints.items():
        if ep["dc"] == "cloud":
            await admin(served, "DELETE", f"{API}/services/{SHOP}/endpoints/{eid}", expect=200)
    await admin(served, "DELETE", f"{API}/datacenters/cloud", expect=200)
    assert "cloud" not in (await state(served))["datacenters"]


async def test_release_canary_percent_steers_the_cohort(served: TestClient) -> None:
    await admin(
        served,
        "PUT",
        f"{API}/services/{SHOP}/release",
        {"stable": "v1", "canary": "v2", "canary_percent": 100},
        expect=200,
    )
    for i in range(1, 20):
        answer = await d(served, SHOP, f"10.{i}.0.1")
        assert answer == [SHOP_CANARY_V4[dc_of(answer[0])]]
    await admin(
        served,
        "PUT",
        f"{API}/services/{SHOP}/release",
        {"stable": "v1", "canary": None, "canary_percent": 0},
        expect=200,
    )
    for i in range(1, 20):
        assert not set(await d(served, SHOP, f"10.{i}.0.1")) & set(SHOP_CANARY_V4.values())


# -- traffic shift --------------------------------------------------------------------------------


async def _two_services(client: TestClient) -> None:
    for name in ("a.example.org", "b.example.org"):
        await admin(
            client,
            "PUT",
            f"{API}/services/{name}",
            {"traffic": {"default": {"idc": 60, "cloud": 40}, "mobile": {"idc": 100}}},
            expect=201,
        )


async def test_traffic_shift_all_services(served: TestClient) -> None:
    await _two_services(served)
    out = await admin(
        served,
        "POST",
        f"{API}/traffic/shift",
        {"from": "idc", "to": "cloud", "percent": 20},
        expect=200,
    )
    assert isinstance(out["revision"], int)
    # 20 % of idc's 60 moves: 12 points
    assert out["services"]["a.example.org"]["default"] == {"idc": 48, "cloud": 52}
    assert out["services"]["b.example.org"]["default"] == {"idc": 48, "cloud": 52}
    # without a service list, a table that never had the target is left alone and named
    assert out["services"]["a.example.org"]["mobile"] == {"idc": 100}
    assert {"service": "a.example.org", "region": "mobile",
            "reason": "the table has no cloud"} in out["skipped"]  # fmt: skip
    # the test registry's ro service moved too (50/50 -> 40/60); the rw one did not:
    # cloud is read-only, so the target is not eligible for it
    assert out["services"][SHOP]["default"] == {"idc": 40, "cloud": 60}
    assert PAY not in out["services"]
    assert {"service": PAY, "region": None,
            "reason": "cloud is read-only and the service is rw"} in out["skipped"]  # fmt: skip
    move = next(m for m in out["moves"] if m["service"] == SHOP and m["region"] == "default")
    assert move == {"service": SHOP, "region": "default", "before": {"idc": 50, "cloud": 50},
                    "after": {"idc": 40, "cloud": 60}, "asked": 10, "moved": 10}  # fmt: skip
    snap = await state(served)
    assert snap["services"]["b.example.org"]["traffic"]["default"] == {"idc": 48, "cloud": 52}
    assert snap["services"][PAY]["traffic"]["default"] == {"idc": 50, "cloud": 50}
    assert snap["revision"] == out["revision"]


async def test_traffic_shift_moves_a_share_of_the_source(served: TestClient) -> None:
    """The issue's example: idc=60 cloud=40 shifted by 50 % gives idc=30 cloud=70."""
    name = "rush.example.org"
    await admin(served, "PUT", f"{API}/services/{name}",
                {"traffic": {"default": {"idc": 60, "cloud": 40}}}, expect=201)  # fmt: skip
    out = await admin(served, "POST", f"{API}/traffic/shift",
                      {"from": "idc", "to": "cloud", "percent": 50, "services": [name]},
                      expect=200)  # fmt: skip
    assert out["services"][name]["default"] == {"idc": 30, "cloud": 70}
    assert out["moves"] == [{"service": name, "region": "default", "before": {"idc": 60, "cloud": 40},
                             "after": {"idc": 30, "cloud": 70}, "asked": 30, "moved": 30}]  # fmt: skip


async def test_traffic_shift_capped_table_is_named(served: TestClient) -> None:
    name = "cap.example.org"
    await admin(served, "PUT", f"{API}/services/{name}",
                {"traffic": {"default": {"idc": 1000, "cloud": 9990}}}, expect=201)  # fmt: skip
    out = await admin(served, "POST", f"{API}/traffic/shift",
                      {"from": "idc", "to": "cloud", "percent": 40, "services": [name]},
                      expect=200)  # fmt: skip
    [move] = out["moves"]
    assert (move["asked"], move["moved"]) == (400, 10)
    assert "capped" in move["note"]
    assert out["services"][name]["default"] == {"idc": 990, "cloud": 10000}


async def test_traffic_shift_restricted_to_listed_services(served: TestClient) -> None:
    await _two_services(served)
    out = await admin(
        served,
        "POST",
        f"{API}/traffic/shift",
        {"from": "idc", "to": "cloud", "percent": 20, "services": ["A.example.org."]},
        expect=200,
    )
    assert set(out["services"]) == {"a.example.org"}
    snap = await state(served)
    # a named service: every table where idc has weight moves, the target added if missing
    assert snap["services"]["a.example.org"]["traffic"] == {
        "default": {"idc": 48, "cloud": 52},
        "mobile": {"idc": 80, "cloud": 20},
    }
    assert snap["services"]["b.example.org"]["traffic"]["default"] == {"idc": 60, "cloud": 40}
    assert snap["services"][SHOP]["traffic"]["default"] == {"idc": 50, "cloud": 50}


async def test_traffic_shift_unknown_service_is_404(served: TestClient) -> None:
    before = await state(served)
    err = await admin(
        served,
        "POST",
        f"{API}/traffic/shift",
        {"from": "idc", "to": "cloud", "percent": 20, "services": [SHOP, "nope.example.org"]},
        expect=404,
    )
    assert err["error"] == "not_found" and "nope.example.org" in err["detail"]
    assert await state(served) == before


# -- explain, audit -------------------------------------------------------------------------------


async def test_explain_trace(served: TestClient) -> None:
    rev = (await state(served))["revision"]
    resp = await served.get(
        f"{API}/explain", params={"name": SHOP, "ip": "100.64.9.9"}, headers=ADMIN
    )
    assert resp.status == 200
    trace = await resp.json()
    for key in ("name", "type", "revision", "client", "region", "answer", "ttl", "trace"):
        assert key in trace, key
    assert trace["name"] == SHOP and trace["type"] == "A"
    assert trace["revision"] == rev
    assert trace["region"] == "mobile"
    assert trace["ttl"] == SHOP_TTL
    assert trace["client"]["ip"] == "100.64.9.9"
    assert trace["client"]["key"] == f"4:{(100 << 16) + (64 << 8) + 9}"
    assert trace["datacenter"] == "cloud"
    assert trace["cohort"] in ("stable", "canary")
    assert {dc_of(a) for a in trace["answer"]} == {"cloud"}
    steps = [s["step"] for s in trace["trace"]]
    assert steps[:2] == ["table", "cohort"]
    assert "datacenter" in steps and "endpoints" in steps
    table = trace["trace"][0]
    assert table["table"] == "mobile" and table["weights"] == {"cloud": 100}
    dc_step = next(s for s in trace["trace"] if s["step"] == "datacenter")
    assert dc_step["eligible"] == ["cloud"] and dc_step["chosen"] == "cloud"
    assert set(dc_step["scores"]) == {"cloud"}

    # the answer agrees with every dialect for the same client
    assert await d(served, SHOP, "100.64.9.9") == trace["answer"]

    resp = await served.get(
        f"{API}/explain",
        params={"name": PAY, "ip": "10.1.2.3", "uid": "dev-1", "type": "AAAA"},
        headers=ADMIN,
    )
    pay = await resp.json()
    assert pay["type"] == "AAAA" and pay["client"]["uid"] == "dev-1"
    assert pay["client"]["key"] == "uid:dev-1"
    table = pay["trace"][0]
    assert "cloud" in table["excluded"]  # rw service, read-only cloud
    assert "cloud" not in table["weights"]

    resp = await served.get(f"{API}/explain", params={"name": "nope.example.org"}, headers=ADMIN)
    assert resp.status == 404


async def test_audit_since_and_actor(served: TestClient) -> None:
    rev = (await state(served))["revision"]
    await admin(
        served,
        "PUT",
        f"{API}/datacenters/edge",
        {"kind": "cloud"},
        headers={"X-Actor": "alice@ops"},
    )
    await admin(
        served,
        "PUT",
        f"{API}/regions/north",
        {"cidrs": ["10.200.0.0/16"]},
        headers={"X-Actor": "bob"},
    )
    await admin(served, "DELETE", f"{API}/regions/north", headers={"X-Actor": "bad actor !"})
    resp = await served.get(f"{API}/audit", params={"since": str(rev)}, headers=ADMIN)
    assert resp.status == 200
    body = await resp.json()
    assert body["revision"] == rev + 3
    entries = body["entries"]
    assert [e["revision"] for e in entries] == [rev + 1, rev + 2, rev + 3]
    assert [e["actor"] for e in entries] == ["alice@ops", "bob", "admin"]
    first = entries[0]["changes"]
    assert first[0]["op"] == "put" and first[0]["kind"] == "datacenter"
    assert first[0]["key"] == "edge"
    assert entries[2]["changes"][0]["op"] == "delete"
    assert all(isinstance(e["time"], int | float) for e in entries)

    resp = await served.get(f"{API}/audit", params={"since": str(rev + 2)}, headers=ADMIN)
    assert [e["revision"] for e in (await resp.json())["entries"]] == [rev + 3]
    resp = await served.get(f"{API}/audit", params={"since": "0", "limit": "2"}, headers=ADMIN)
    assert [e["revision"] for e in (await resp.json())["entries"]] == [1, 2]
    resp = await served.get(f"{API}/audit", params={"since": str(rev + 3)}, headers=ADMIN)
    assert (await resp.json())["entries"] == []


async def test_every_admin_read_carries_the_revision(served: TestClient) -> None:
    rev = (await state(served))["revision"]
    for path in (f"{API}/state", f"{API}/explain?name={SHOP}", f"{API}/audit?since=3"):
        resp = await served.get(path, headers=ADMIN)
        assert resp.status == 200
        assert (await resp.json())["revision"] == rev, path
    assert (await health(served))["revision"] == rev


# -- OpenAPI, health -----------------------------------------------------------------------------


async def test_openapi_document_covers_every_route(served: TestClient) -> None:
    resp = await served.get(f"{API}/openapi.json")
    assert resp.status == 200
    doc = json.loads(await resp.read())
    assert str(doc["openapi"]).startswith("3.")
    paths = doc["paths"]
    app = served.server.app
    assert app is not None
    routes = set()
    for route in app.router.routes():
        info = route.resource.canonical if route.resource else ""
        if route.method in ("HEAD", "OPTIONS"):
            continue
        if info.startswith(API) and info != f"{API}/openapi.json":
            routes.add((info, route.method.lower()))
    routes.add(("/healthz", "get"))
    assert len(routes) >= 15
    missing = sorted(r for r in routes if r[1] not in paths.get(r[0], {}))
    assert not missing, missing
    # and the document names no route that does not exist
    documented = {(p, m) for p, item in paths.items() for m in item}
    assert documented <= routes


async def test_healthz(served: TestClient) -> None:
    body = await health(served)
    assert body["status"] == "ok"
    assert body["store"] == "ok"
    assert body["stale_seconds"] == 0
    assert isinstance(body["revision"], int) and body["revision"] > 0
    assert body["revision"] == (await state(served))["revision"]
    await admin(served, "PUT", f"{API}/datacenters/edge", {"kind": "cloud"})
    assert (await health(served))["revision"] == body["revision"] + 1


async def test_state_snapshot(served: TestClient) -> None:
    snap = await state(served)
    assert set(snap["datacenters"]) == {"idc", "cloud"}
    assert snap["datacenters"]["cloud"]["writable"] is False
    assert snap["regions"]["mobile"]["cidrs"] == MOBILE_CIDRS
    assert set(snap["services"]) == {SHOP, PAY}
    shop = snap["services"][SHOP]
    assert shop["access"] == "ro" and shop["ttl"] == SHOP_TTL
    assert shop["release"]["canary"] == "v2" and shop["release"]["canary_percent"] == 10
    assert len(shop["endpoints"]) == 14


# -- safe operations (issue 13) ---------------------------------------------------------------------

ROLE_TOKENS = {
    "viewer": {"role": "read", "secret": "viewer-secret"},
    "oncall": {
        "role": "ops",
        "secret_sha256": __import__("hashlib").sha256(b"ops-secret").hexdigest(),
    },
    "ci": {"role": "deployer", "secret": "ci-secret-1"},
}


@pytest.fixture
async def roles(aiohttp_client: ClientFactory, node: Node) -> TestClient:
    client = await aiohttp_client(make_app(node, make_config(tokens=ROLE_TOKENS)))
    from .conftest import build_registry

    await build_registry(client)
    return client


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.mark.parametrize(
    ("secret", "method", "path", "body", "status", "needed"),
    [
        ("viewer-secret", "GET", f"{API}/state", None, 200, None),
        ("viewer-secret", "GET", f"{API}/audit", None, 200, None),
        ("viewer-secret", "PUT", f"{API}/services/{SHOP}/traffic", {"default": {"idc": 1}}, 403, "ops"),
        ("ops-secret", "PUT", f"{API}/services/{SHOP}/traffic", {"default": {"idc": 1, "cloud": 1}}, 200, None),
        ("ops-secret", "POST", f"{API}/datacenters/cloud/undrain", None, 200, None),
        ("ops-secret", "PUT", f"{API}/datacenters/cloud", {"kind": "cloud"}, 403, "admin"),
        ("ops-secret", "PUT", f"{API}/services/{SHOP}/endpoints/x", {"dc": "idc", "address": "192.0.2.99"}, 403, "deployer"),
        ("ci-secret-1", "PUT", f"{API}/services/{SHOP}/endpoints/x", {"dc": "idc", "address": "192.0.2.99"}, 201, None),
        ("ci-secret-1", "POST", f"{API}/registry/revert", {"to": 1}, 403, "admin"),
        ("ci-secret-1", "PUT", f"{API}/registry", {}, 403, "admin"),
        ("T", "PUT", f"{API}/datacenters/cloud", {"kind": "cloud", "writable": False}, 200, None),
    ],
)  # fmt: skip
async def test_roles(
    roles: TestClient, secret: str, method: str, path: str, body: Any, status: int,
    needed: str | None,
) -> None:  # fmt: skip
    data = None if body is None else json.dumps(body)
    resp = await roles.request(method, path, data=data, headers=bearer(secret))
    err = await resp.json()
    assert resp.status == status, err
    if needed is not None:
        assert err["error"] == "forbidden"
        assert f"needs the {needed} role" in err["detail"]


async def test_missing_and_unknown_tokens_are_401_with_different_details(roles: TestClient) -> None:
    resp = await roles.get(f"{API}/state")
    assert resp.status == 401 and "no token given" in (await resp.json())["detail"]
    resp = await roles.get(f"{API}/state", headers=bearer("ops-secreT"))
    assert resp.status == 401 and (await resp.json())["detail"] == "unknown token"


async def test_audit_actor_is_the_token_name(roles: TestClient) -> None:
    await admin(roles, "PUT", f"{API}/services/{SHOP}/traffic", {"default": {"idc": 1, "cloud": 1}},
                headers={**bearer("ops-secret"), "X-Actor": "ann@box"})  # fmt: skip
    await admin(roles, "POST", f"{API}/datacenters/cloud/undrain", headers=bearer("ops-secret"))
    entries = (await admin(roles, "GET", f"{API}/audit?limit=2"))["entries"]
    assert [e["actor"] for e in entries] == ["oncall", "oncall:ann@box"]


async def test_would_empty_lists_every_service_and_region(served: TestClient) -> None:
    before = await state(served)
    err = await admin(served, "POST", f"{API}/datacenters/idc/drain", expect=409)
    assert err["error"] == "would_empty"
    # PAY (rw) has no other writable datacenter; SHOP keeps cloud
    assert err["affected"] == [{"service": PAY, "regions": ["default"]}]
    assert PAY in err["detail"] and SHOP not in err["detail"]
    assert await state(served) == before
    # dry run gives the same refusal; force goes through and /healthz names the service
    await admin(served, "POST", f"{API}/datacenters/idc/drain?dry_run=1", expect=409)
    out = await admin(served, "POST", f"{API}/datacenters/idc/drain?force=1", expect=200)
    assert PAY in out["empty"]
    assert PAY in (await health(served))["empty"]
    await admin(served, "POST", f"{API}/datacenters/idc/undrain", expect=200)
    after = await health(served)
    assert after["empty"] == {} and after["empty_complete"] is True  # two services: one look


async def test_dry_run_writes_nothing_and_measures(served: TestClient) -> None:
    before = await state(served)
    out = await admin(served, "PUT", f"{API}/services/{SHOP}/traffic?dry_run=1",
                      {"default": {"idc": 100, "cloud": 0}}, expect=200)  # fmt: skip
    assert out["dry_run"] is True and out["revision"] == before["revision"]
    row = out["impact"]["services"][SHOP]["regions"]["default"]
    assert row["after"] == {"idc": 1.0}
    assert abs(row["moved"] - row["before"]["cloud"]) < 0.01  # exactly the cloud clients move
    assert await state(served) == before


async def test_bad_flag_is_400(served: TestClient) -> None:
    err = await admin(served, "POST", f"{API}/datacenters/idc/drain?force=maybe", expect=400)
    assert err["error"] == "bad_request" and "force" in err["detail"]


async def test_audit_limit_is_newest_first_and_revert(served: TestClient) -> None:
    start = (await state(served))["revision"]
    await admin(
        served, "PUT", f"{API}/services/{SHOP}/traffic", {"default": {"idc": 90, "cloud": 10}}
    )
    await admin(served, "POST", f"{API}/traffic/shift",
                {"from": "idc", "to": "cloud", "percent": 50, "services": [SHOP]})  # fmt: skip
    entries = (await admin(served, "GET", f"{API}/audit?limit=2"))["entries"]
    assert [e["revision"] for e in entries] == [start + 2, start + 1]
    shift_change = entries[0]["changes"][0]
    assert shift_change["verb"] == "shift"
    assert shift_change["before"]["traffic"]["default"] == {"idc": 90, "cloud": 10}
    assert shift_change["after"]["traffic"]["default"] == {"idc": 45, "cloud": 55}
    dry = await admin(served, "POST", f"{API}/registry/revert?dry_run=1", {"to": start})
    assert dry["dry_run"] and (await state(served))["revision"] == start + 2
    out = await admin(served, "POST", f"{API}/registry/revert", {"to": start})
    assert out["revision"] == start + 3
    snap = await state(served)
    assert snap["services"][SHOP]["traffic"]["default"] == {"idc": 50, "cloud": 50}
    err = await admin(served, "POST", f"{API}/registry/revert", {"to": start + 99}, expect=400)
    assert err["error"] == "invalid"


async def test_declarative_apply_is_one_revision_and_idempotent(served: TestClient) -> None:
    exported = await admin(served, "GET", f"{API}/registry")
    rev = exported["revision"]
    doc = exported["registry"]
    same = await admin(served, "PUT", f"{API}/registry", doc, headers={"If-Match": str(rev)})
    assert same["revision"] == rev and same["changes"] == []
    doc["services"][SHOP]["ttl"] = 5
    doc["services"]["new.example.org"] = {"traffic": {"default": {"idc": 1}}}
    out = await admin(served, "PUT", f"{API}/registry", doc, headers={"If-Match": str(rev)})
    assert out["revision"] == rev + 1
    assert {(c["op"], c["kind"], c["key"]) for c in out["changes"]} == {
        ("put", "service", SHOP), ("put", "service", "new.example.org")}  # fmt: skip
    again = await admin(served, "PUT", f"{API}/registry", doc)
    assert again["revision"] == rev + 1 and again["changes"] == []
    err = await admin(served, "PUT", f"{API}/registry", doc, expect=409,
                      headers={"If-Match": str(rev)})  # fmt: skip
    assert err["error"] == "conflict"
    err = await admin(served, "PUT", f"{API}/registry", {"services": {"x": 1}}, expect=400)
    assert err["error"] == "invalid"


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ({"x": {"role": "root", "secret": "long-enough"}}, "tokens.x.role: must be one of"),
        ({"x": {"role": "ops"}}, "give exactly one of secret and secret_sha256"),
        ({"x": {"role": "ops", "secret": "a", "secret_sha256": "0" * 64}}, "exactly one"),
        ({"x": {"role": "ops", "secret": "short"}}, "at least 8 characters"),
        ({"x": {"role": "ops", "secret_sha256": "xyz"}}, "64 hex digits"),
        ({"x": {"role": "ops", "secret": "long-enough", "extra": 1}}, "unknown key 'extra'"),
        ({"bad name": {"role": "ops", "secret": "long-enough"}}, "names are letters"),
        ("nope", "must be a table"),
    ],
)
def test_bad_token_config_is_one_message(tokens: Any, message: str) -> None:
    from httpdns.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        make_config(tokens=tokens)
