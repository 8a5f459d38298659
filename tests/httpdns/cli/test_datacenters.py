"""``dc``: read-modify-write edits of datacenters, drain and undrain, delete."""

from __future__ import annotations

import json

from tests.servers import Node

from .conftest import SERVICE, FakeServer, fails, ok, run, state


def test_drain_posts_to_the_drain_route(server: FakeServer) -> None:
    result = run("dc", "drain", "cloud")
    assert result.exit_code == 0, result.output
    assert result.stdout == "datacenter cloud: drained (revision 5)\n"
    [post] = server.writes
    assert (post.method, post.path, post.body) == ("POST", "/api/v1/datacenters/cloud/drain", None)
    assert post.query == {}
    assert post.headers["authorization"] == "Bearer T"
    assert post.headers["x-actor"] == "ann@box"


def test_undrain_and_write_flags(server: FakeServer) -> None:
    result = run("dc", "undrain", "idc", "--json", "--force", "--dry-run")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"revision": 5}
    [post] = server.writes
    assert post.path == "/api/v1/datacenters/idc/undrain"
    assert post.query == {"dry_run": "1", "force": "1"}


def test_drain_unknown_datacenter(server: FakeServer) -> None:
    server.routes[("POST", "/api/v1/datacenters/mars/drain")] = (
        404, {"error": "not_found", "detail": "datacenter 'mars' does not exist"},
    )  # fmt: skip
    result = run("dc", "drain", "mars")
    assert result.exit_code == 1
    assert result.stderr == "error: not_found: datacenter 'mars' does not exist\n"


def test_dc_set_keeps_drained_and_labels(server: FakeServer) -> None:
    assert run("dc", "set", "cloud", "--writable").exit_code == 0
    assert server.writes[0].body == {
        "kind": "cloud",
        "writable": True,
        "drained": False,
        "labels": {"provider": "x"},
    }
    result = run("dc", "set", "new", "--kind", "cloud", "--labels", "a=1", "--label", "b=2")
    assert result.exit_code == 0
    assert server.writes[1].body == {
        "kind": "cloud",
        "writable": True,
        "drained": False,
        "labels": {"a": "1", "b": "2"},
    }


def test_dc_delete(server: FakeServer) -> None:
    result = run("dc", "delete", "a/b")
    assert result.exit_code == 0, result.output
    assert server.writes[0].method == "DELETE"
    assert server.writes[0].url.endswith("/api/v1/datacenters/a%2Fb")
    assert result.stdout == "datacenter a/b: deleted (revision 5)\n"


# -- against a real node -----------------------------------------------------------------------


def test_drain_and_undrain(registry: Node) -> None:
    try:
        assert "drained" in ok(registry, "dc", "drain", "idc")
        data = state(registry)
        assert data["datacenters"]["idc"]["drained"] is True
        assert data["datacenters"]["idc"]["kind"] == "idc"
        out = json.loads(ok(registry, "--json", "query", SERVICE, "--ip", "192.0.2.77"))
        assert set(out["answers"]) <= {"198.51.100.1"}
    finally:
        ok(registry, "dc", "undrain", "idc")
    assert state(registry)["datacenters"]["idc"]["drained"] is False


def test_deletes(registry: Node) -> None:
    ok(registry, "dc", "set", "spare", "--kind", "cloud")
    ok(registry, "region", "set", "south", "172.16.0.0/12")
    ok(registry, "service", "set", "gone.example.com", "spare=1")
    ok(registry, "endpoint", "set", "gone.example.com", "e1", "--dc", "spare", "--address",
       "1.1.1.1")  # fmt: skip
    assert "in_use" in fails(registry, "dc", "delete", "spare")
    # the last endpoint: the service would answer nobody, so it takes --force
    assert "would_empty" in fails(registry, "endpoint", "delete", "gone.example.com", "e1")
    ok(registry, "endpoint", "delete", "gone.example.com", "e1", "--force")
    assert state(registry)["services"]["gone.example.com"]["endpoints"] == {}
    ok(registry, "service", "delete", "gone.example.com")
    ok(registry, "dc", "delete", "spare")
    ok(registry, "region", "delete", "south")
    data = state(registry)
    assert "gone.example.com" not in data["services"]
    assert "spare" not in data["datacenters"]
    assert "south" not in data["regions"]
