"""``audit``: the log of changes with their authors."""

from __future__ import annotations

import json

import pytest

from httpdns.cli.audit import summarize_change
from tests.servers import Node

from .conftest import ACTOR, SERVICE, FakeServer, invoke, ok, state


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (
            {"op": "put", "kind": "datacenter", "key": "idc", "value": {"kind": "idc", "drained": True}},
            "put datacenter idc (idc, drained)",
        ),
        ({"op": "delete", "kind": "region", "key": "x", "value": None}, "delete region x"),
        (
            {"op": "put", "kind": "service", "key": "s", "value": {"traffic": {"default": {"idc": 1}}}},
            "put service s (default: idc=1)",
        ),
        (
            {"op": "put", "kind": "release", "key": "s",
             "value": {"stable": "v1", "canary": "v2", "canary_percent": 5}},
            "put release s (v1 + v2 @ 5%)",
        ),
        (
            {"op": "put", "kind": "endpoint", "key": "s/e",
             "value": {"address": "192.0.2.1", "dc": "idc", "version": "v1", "healthy": False}},
            "put endpoint s/e (192.0.2.1 idc v1 unhealthy)",
        ),
    ],
)  # fmt: skip
def test_audit_summaries(change: dict[str, object], line: str) -> None:
    assert summarize_change(change) == line


def test_audit_query(server: FakeServer) -> None:
    server.routes[("GET", "/api/v1/audit")] = (
        200,
        {
            "revision": 4,
            "entries": [
                {
                    "revision": 4,
                    "actor": "ann@box",
                    "time": 1700000000.0,
                    "changes": [{"op": "delete", "kind": "region", "key": "x", "value": None}],
                }
            ],
        },
    )
    result = invoke("audit", "--since", "2", "--limit", "5", "--server", "http://n:1")
    assert result.exit_code == 0, result.output
    assert server.sent[0].query == {"since": "2", "limit": "5"}
    assert "ann@box" in result.stdout
    # an entry written before previous values were recorded says so
    assert "region x: delete (previous value not recorded)" in result.stdout


# -- against a real node -----------------------------------------------------------------------


def test_audit_lists_changes_with_actor(registry: Node) -> None:
    # the first nine revisions are the ``registry`` fixture's, all by ACTOR
    data = json.loads(ok(registry, "--json", "audit", "--since", "0", "--limit", "9"))
    entries = data["entries"]
    assert [e["revision"] for e in entries] == list(range(1, 10))
    assert {e["actor"] for e in entries} == {ACTOR}
    changes = [(c["op"], c["kind"], c["key"]) for e in entries for c in e["changes"]]
    assert ("put", "datacenter", "idc") in changes
    assert ("put", "endpoint", f"{SERVICE}/web-1") in changes
    assert ("put", "release", SERVICE) in changes
    now = state(registry)["revision"]
    tail = json.loads(ok(registry, "audit", "--json", "--since", str(now - 1)))["entries"]
    assert [e["revision"] for e in tail] == [now]
    out = ok(registry, "audit", "--since", "0", "--limit", "3")
    assert ACTOR in out
    assert "set datacenter idc: created" in out
