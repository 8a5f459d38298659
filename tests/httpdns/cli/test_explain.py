"""``explain``: the steering trace, for an address or a device id."""

from __future__ import annotations

import json
from typing import Any

from httpdns.cli.explain import render_explain
from tests.servers import Node

from .conftest import SERVICE, V4, FakeServer, ok, run

TRACE: dict[str, Any] = {
    "revision": 4,
    "name": "www.example.com",
    "type": "A",
    "client": {"ip": "10.1.2.3", "uid": None, "key": "10.1.2.0/24", "bucket": 7},
    "region": "north",
    "answer": ["192.0.2.1"],
    "ttl": 30,
    "datacenter": "idc",
    "version": "v1",
    "cohort": "stable",
    "status": "ok",
    "trace": [
        {"step": "table", "region": "north", "table": "north", "weights": {"idc": 100}},
        {"step": "cohort", "canary_percent": 5.0, "in_canary": False},
        {
            "step": "datacenter",
            "eligible": ["idc"],
            "scores": {"cloud": None, "idc": 1.23456},
            "chosen": "idc",
        },
        {"step": "endpoints", "dc": "idc", "candidates": {"web-1": 0.5}, "chosen": ["web-1"]},
    ],
}


def test_explain_renders_a_trace(server: FakeServer) -> None:
    server.routes[("GET", "/api/v1/explain")] = (200, TRACE)
    result = run("explain", "www.example.com", "--ip", "10.1.2.3", "--type", "a")
    assert result.exit_code == 0, result.output
    assert server.sent[0].query == {"name": "www.example.com", "ip": "10.1.2.3", "type": "A"}
    out = result.stdout
    assert out.startswith("www.example.com A for 10.1.2.3  (key 10.1.2.0/24, bucket 7)")
    assert "region      north" in out
    assert "scores         idc=1.235 cloud=-" in out
    assert "chosen      datacenter idc  version v1  cohort stable  status ok" in out
    assert "answer      192.0.2.1  ttl 30" in out


def test_explain_for_a_device_id_names_it_and_never_says_none() -> None:
    trace = {
        **TRACE,
        "client": {"ip": None, "uid": "dev-1", "key": "uid:dev-1", "bucket": 9},
        "datacenter": None,
        "version": None,
        "status": "empty",
        "answer": [],
        "trace": [{"step": "datacenter", "eligible": [], "scores": {}, "chosen": None}],
    }
    lines = render_explain(trace)
    assert lines[0] == "www.example.com A for uid dev-1  (key uid:dev-1, bucket 9)  revision 4"
    assert "  chosen      datacenter -  version -  cohort stable  status empty" in lines
    assert "    scores         -" in lines
    assert not any("None" in line for line in lines)


def test_explain_with_address_and_device_id() -> None:
    trace = {**TRACE, "client": {"ip": "10.1.2.3", "uid": "d", "key": "uid:d", "bucket": 1}}
    assert render_explain(trace)[0].startswith("www.example.com A for 10.1.2.3 uid d  (key uid:d")


# -- against a real node -----------------------------------------------------------------------


def test_explain(registry: Node) -> None:
    data = json.loads(ok(registry, "--json", "explain", SERVICE, "--ip", "10.1.2.3"))
    assert data["name"] == SERVICE
    assert data["region"] == "north"
    assert data["answer"]
    assert set(data["answer"]) <= V4
    assert {step["step"] for step in data["trace"]} >= {"table", "datacenter", "endpoints"}
    out = ok(registry, "explain", SERVICE, "--ip", "10.1.2.3")
    assert "region      north" in out
    assert data["answer"][0] in out


def test_explain_uid(registry: Node) -> None:
    data = json.loads(ok(registry, "explain", SERVICE, "--uid", "device-42", "--json"))
    assert data["client"]["uid"] == "device-42"
    assert data["version"] == "v1"
    out = ok(registry, "explain", SERVICE, "--uid", "device-42")
    assert out.startswith(f"{SERVICE} A for uid device-42  (key uid:device-42, ")
    assert f"  chosen      datacenter {data['datacenter']}  version v1  " in out
    assert "None" not in out
