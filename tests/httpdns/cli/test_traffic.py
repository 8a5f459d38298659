"""``traffic set`` and ``traffic shift``."""

from __future__ import annotations

import json

from tests.servers import Node

from .conftest import SERVICE, FakeServer, ok, run, state


def test_traffic_set_region(server: FakeServer) -> None:
    result = run("traffic", "set", "www.example.com", "--region", "north", "idc=60", "cloud=40")
    assert result.exit_code == 0, result.output
    [put] = server.writes
    assert put.path == "/api/v1/services/www.example.com/traffic"
    assert put.body == {"default": {"idc": 70, "cloud": 30}, "north": {"idc": 60, "cloud": 40}}
    assert put.headers["if-match"] == "4"


def test_traffic_set_unknown_service(server: FakeServer) -> None:
    result = run("traffic", "set", "nope.example.com", "idc=1")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: not_found: service")
    assert server.writes == []


def test_traffic_shift_body(server: FakeServer) -> None:
    move = {"service": "www.example.com", "region": "default", "before": {"idc": 60, "cloud": 40},
            "after": {"idc": 48, "cloud": 52}, "asked": 12, "moved": 12}  # fmt: skip
    server.routes[("POST", "/api/v1/traffic/shift")] = (
        200,
        {"revision": 6, "services": {"www.example.com": move["after"]}, "moves": [move],
         "skipped": [{"service": "db.example.com", "region": None,
                      "reason": "cloud is read-only and the service is rw"}],
         "warnings": []},
    )  # fmt: skip
    result = run("traffic", "shift", "--from", "idc", "--to", "cloud", "--percent", "20")
    assert result.exit_code == 0, result.output
    assert server.writes[0].body == {"from": "idc", "to": "cloud", "percent": 20, "services": None}
    assert result.stdout == (
        "shift 20% of idc's weight to cloud: 12 weight moved in 1 table (revision 6)\n"
        "  www.example.com [default]: idc=60 cloud=40 -> idc=48 cloud=52 (moved 12 of idc)\n"
        "  skipped db.example.com: cloud is read-only and the service is rw\n"
    )
    run("traffic", "shift", "--from", "idc", "--to", "cloud", "--percent", "5", "--service", "a.b")
    assert server.writes[1].body["services"] == ["a.b"]


# -- against a real node -----------------------------------------------------------------------


def test_traffic_set_changes_state(registry: Node) -> None:
    name = "traffic.example.com"
    ok(registry, "service", "set", name, "--traffic", "idc=70", "--traffic", "cloud=30")
    ok(registry, "traffic", "set", name, "--region", "north", "idc=60", "cloud=40")
    ok(registry, "traffic", "set", name, "idc=10", "cloud=90")
    assert state(registry)["services"][name]["traffic"] == {
        "default": {"idc": 10, "cloud": 90},
        "north": {"idc": 60, "cloud": 40},
    }
    ok(registry, "service", "delete", name)


def test_traffic_shift_changes_state(registry: Node) -> None:
    name = "shift.example.com"
    ok(registry, "service", "set", name, "idc=70", "cloud=30")
    shift = ["traffic", "shift", "--from", "idc", "--to", "cloud", "--percent", "20"]
    out = json.loads(ok(registry, *shift, "--service", name, "--json"))
    assert list(out["services"]) == [name]
    after = state(registry)["services"][name]["traffic"]
    assert after == out["services"][name]
    assert after["default"]["idc"] < 70
    assert after["default"]["cloud"] > 30
    assert state(registry)["services"][SERVICE]["traffic"]["default"] == {"idc": 70, "cloud": 30}
    ok(registry, "service", "delete", name)
