"""The fleet view with three real nodes on one real Redis: heartbeats listed by
``GET /api/v1/nodes`` and ``httpdns nodes``, ``httpdns wait`` and ``?wait=1`` on writes,
a frozen node named as a laggard, a stopped node leaving the list."""

from __future__ import annotations

import json
import signal
import subprocess
import time

from tests.servers import Node, httpdns_command, wait_until

from .conftest import (
    OTHER,
    TOKEN,
    Cluster,
    build_registry,
    call,
    put_endpoint,
    wait_revision,
)


def cli(node: Node, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*httpdns_command(), "--server", node.url, "--token", TOKEN, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def listed(node: Node) -> list[dict[str, object]]:
    status, body = call(node.url, "GET", "/api/v1/nodes")
    assert status == 200, body
    assert isinstance(body["revision"], int)
    return list(body["nodes"])


def test_three_nodes_heartbeat_and_ops_can_wait_for_the_fleet(cluster: Cluster) -> None:
    r = cluster.redis("redis")
    nodes = cluster.start_nodes(r.url, 3)
    a, b, c = nodes
    rev = build_registry(a)
    wait_revision(nodes, rev)

    # Every node is listed by every node, with its address, version, revision and status.
    wait_until(lambda: len(listed(b)) == 3, 5, "three heartbeats")
    wait_until(lambda: all(n["revision"] == rev for n in listed(c)), 5, "heartbeats at rev")
    rows = listed(c)
    assert sorted(str(n["address"]) for n in rows) == sorted(n.url for n in nodes)
    for row in rows:
        assert {"id", "address", "version", "revision", "status", "seen"} <= set(row)
        assert row["status"] == "ok" and row["version"] not in (None, "")
        assert isinstance(row["seen"], float) and abs(time.time() - row["seen"]) < 5

    out = cli(a, "--json", "nodes")
    assert out.returncode == 0, out.stderr
    assert {n["address"] for n in json.loads(out.stdout)["nodes"]} == {n.url for n in nodes}
    out = cli(a, "nodes")
    assert out.returncode == 0, out.stderr
    assert all(str(n.port) in out.stdout for n in nodes), out.stdout

    # A write asked with ?wait=1 answers once every live node has applied it.
    status, body = call(
        b.url,
        "PUT",
        f"/api/v1/services/{OTHER}/endpoints/w1?wait=1",
        {"dc": "idc", "address": "198.51.100.91"},
    )
    assert status == 201, body
    assert body["applied"] == {"nodes": 3, "of": 3}, body
    out = cli(c, "wait", str(body["revision"]), "--timeout", "5")
    assert out.returncode == 0, out.stderr
    assert f"all 3 nodes have applied revision {body['revision']}" in out.stdout
    out = cli(c, "wait")  # the server's current revision
    assert out.returncode == 0, out.stderr

    # A frozen node is a laggard: named by `wait`, not counted by ?wait=1.
    assert c.proc is not None
    c.proc.send_signal(signal.SIGSTOP)
    try:
        status, body = put_endpoint(a, OTHER, "w2", "198.51.100.92")
        assert status == 201, body
        status, late = call(
            a.url,
            "PUT",
            f"/api/v1/services/{OTHER}/endpoints/w3?wait=1&timeout=1",
            {"dc": "idc", "address": "198.51.100.93"},
        )
        assert status == 201, late
        assert late["applied"] == {"nodes": 2, "of": 3}, late
        out = cli(a, "wait", str(late["revision"]), "--timeout", "1.5")
        assert out.returncode == 1
        assert f":{c.port}/" in out.stderr and "1 of 3 nodes" in out.stderr, out.stderr
        assert f":{a.port}/" not in out.stderr
    finally:
        c.proc.send_signal(signal.SIGCONT)
    # Thawed, it catches up; `wait` then returns.
    out = cli(a, "wait", str(late["revision"]), "--timeout", "10")
    assert out.returncode == 0, out.stderr

    # Bad input is a 400, not a hang or a 500.
    status, body = call(a.url, "PUT", f"/api/v1/services/{OTHER}/endpoints/w4?wait=1&timeout=x",
                        {"dc": "idc", "address": "198.51.100.94"})  # fmt: skip
    assert status == 400 and "timeout" in body["detail"], body
    status, state = call(a.url, "GET", "/api/v1/state")
    assert "w4" not in state["services"][OTHER]["endpoints"]  # checked before writing

    # A node that stops cleanly leaves the list at once (no waiting for its heartbeat to
    # expire); `wait` is then about the two that are left.
    c.stop()
    wait_until(lambda: len(listed(a)) == 2, 3, "the stopped node to leave")
    out = cli(b, "wait", "--timeout", "5")
    assert out.returncode == 0, out.stderr
    assert "all 2 nodes" in out.stdout
