"""``service`` and ``region``: create, change (keeping what is not given), delete."""

from __future__ import annotations

from tests.servers import Node

from .conftest import FakeServer, ok, run, state


def test_service_set_existing_keeps_fields(server: FakeServer) -> None:
    result = run("service", "set", "www.example.com", "--ttl", "10")
    assert result.exit_code == 0, result.output
    [put] = server.writes
    assert put.path == "/api/v1/services/www.example.com"
    assert put.headers["if-match"] == "4"
    assert put.body == {
        "access": "ro",
        "ttl": 10,
        "answers": 2,
        "all_down": "fail-closed",
        "traffic": {"default": {"idc": 70, "cloud": 30}, "north": {"idc": 100}},
    }


def test_service_set_traffic_replaces_default_only(server: FakeServer) -> None:
    result = run("service", "set", "www.example.com", "--traffic", "idc=50", "cloud=50")
    assert result.exit_code == 0, result.output
    assert server.writes[0].body["traffic"] == {
        "default": {"idc": 50, "cloud": 50},
        "north": {"idc": 100},
    }


def test_new_service_needs_traffic(server: FakeServer) -> None:
    result = run("service", "set", "api.example.com", "--ttl", "5")
    assert result.exit_code == 2
    assert "give its traffic" in result.stderr
    assert server.writes == []
    result = run("service", "set", "api.example.com", "--access", "rw", "idc=1")
    assert result.exit_code == 0
    assert server.writes[0].body == {"traffic": {"default": {"idc": 1}}, "access": "rw"}


def test_service_delete(server: FakeServer) -> None:
    result = run("service", "delete", "www.example.com")
    assert result.exit_code == 0, result.output
    assert (server.writes[0].method, server.writes[0].path) == (
        "DELETE",
        "/api/v1/services/www.example.com",
    )


def test_region_set(server: FakeServer) -> None:
    result = run("region", "set", "south", "172.16.0.0/12", "2001:db8:2::/48")
    assert result.exit_code == 0, result.output
    assert server.writes[0].body == {"cidrs": ["172.16.0.0/12", "2001:db8:2::/48"]}
    assert result.stdout == "region south: 172.16.0.0/12 2001:db8:2::/48 (revision 5)\n"


# -- against a real node -----------------------------------------------------------------------


def test_service_set_keeps_other_tables(registry: Node) -> None:
    name = "keep.example.com"
    ok(registry, "service", "set", name, "--traffic", "idc=70", "--traffic", "cloud=30")
    ok(registry, "traffic", "set", name, "--region", "north", "idc=60", "cloud=40")
    ok(registry, "service", "set", name, "--ttl", "5")
    svc = state(registry)["services"][name]
    assert svc["ttl"] == 5
    assert svc["traffic"] == {
        "default": {"idc": 70, "cloud": 30},
        "north": {"idc": 60, "cloud": 40},
    }
    ok(registry, "service", "delete", name)
