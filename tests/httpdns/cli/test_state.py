"""``state``, ``health`` and ``--version``."""

from __future__ import annotations

import json

from tests.servers import Node

from .conftest import SERVICE, STATE, V4, V6, FakeServer, invoke, ok, run, state


def test_state_json(server: FakeServer) -> None:
    result = run("state", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == STATE


def test_state_tables(server: FakeServer) -> None:
    result = invoke("state")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("revision 4\n")
    for title in ("datacenters", "regions", "services", "endpoints"):
        assert title in out
    assert "www.example.com" in out
    assert "1/1" in out
    assert "v1 + v2 @ 5.0%" in out
    assert "192.0.2.1:8080" in out
    assert "provider=x" in out


def test_health(server: FakeServer) -> None:
    server.routes[("GET", "/healthz")] = (200, {"status": "ok", "revision": 4})
    result = invoke("health")
    assert result.exit_code == 0, result.output
    assert result.stdout == "status=ok revision=4\n"
    assert server.sent[0].path == "/healthz"


# -- against a real node -----------------------------------------------------------------------


def test_state_json_on_a_node(registry: Node) -> None:
    data = state(registry)
    assert data["revision"] >= 9
    assert data["datacenters"]["idc"] == {
        "name": "idc",
        "kind": "idc",
        "writable": True,
        "drained": False,
        "labels": {},
    }
    assert data["datacenters"]["cloud"]["writable"] is False
    assert data["datacenters"]["cloud"]["labels"] == {"provider": "x"}
    assert data["regions"]["north"]["cidrs"] == ["10.0.0.0/8", "2001:db8:1::/48"]
    svc = data["services"][SERVICE]
    assert svc["ttl"] == 30
    assert svc["access"] == "ro"
    assert svc["all_down"] == "fail-open"
    assert svc["traffic"]["default"] == {"idc": 70, "cloud": 30}
    assert svc["release"]["stable"] == "v1"
    assert svc["endpoints"]["web-1"]["port"] == 8080
    assert {e["address"] for e in svc["endpoints"].values()} == V4 | V6


def test_state_tables_on_a_node(registry: Node) -> None:
    out = ok(registry, "state")
    for word in ("datacenters", "regions", "services", "endpoints", SERVICE, "north", "4/4"):
        assert word in out


def test_version_and_health(cli_node: Node) -> None:
    assert ok(cli_node, "--version").startswith("httpdns, version ")
    health = json.loads(ok(cli_node, "--json", "health"))
    assert health["status"] == "ok"
    assert json.loads(ok(cli_node, "health", "--json")).keys() >= {"status", "revision"}
