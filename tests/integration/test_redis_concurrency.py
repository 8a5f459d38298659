"""Many writers on three nodes sharing one real redis-server: no lost update, and
compare-and-set conflicts resolved with exactly one winner."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .conftest import (
    OTHER,
    OTHER_FIRST,
    Cluster,
    answer_d,
    build_registry,
    call,
    put_endpoint,
    redis_revision,
    wait_revision,
)

WRITERS = 20
EACH = 10


def _address(writer: int, i: int) -> str:
    return f"10.{writer}.{i}.1"


def test_concurrent_writers_lose_nothing_and_cas_has_one_winner(cluster: Cluster) -> None:
    r = cluster.redis("redis")
    nodes = cluster.start_nodes(r.url, 3)
    rev = build_registry(nodes[0])
    wait_revision(nodes, rev)

    # 20 writers, each putting 10 distinct endpoints (no If-Match) through the three nodes.
    start = threading.Barrier(WRITERS)

    def writer(w: int) -> list[tuple[int, Any]]:
        node = nodes[w % 3]
        start.wait(10)
        return [
            put_endpoint(node, OTHER, f"w{w}-{i}", _address(w, i), actor=f"writer-{w}")
            for i in range(EACH)
        ]

    with ThreadPoolExecutor(WRITERS) as pool:
        results = [res for batch in pool.map(writer, range(WRITERS)) for res in batch]
    bad = [(status, body) for status, body in results if status != 201]
    assert bad == [], f"{len(bad)} writes failed: {bad[:5]}"
    revisions = sorted(body["revision"] for _status, body in results)
    assert revisions == list(range(rev + 1, rev + 1 + WRITERS * EACH))

    final = rev + WRITERS * EACH
    wait_revision(nodes, final)
    assert redis_revision(r.port) == final
    expected_ids = {"first"} | {f"w{w}-{i}" for w in range(WRITERS) for i in range(EACH)}
    expected_addresses = {OTHER_FIRST} | {
        _address(w, i) for w in range(WRITERS) for i in range(EACH)
    }
    for n in nodes:
        status, state = call(n.url, "GET", "/api/v1/state")
        assert status == 200, state
        assert state["revision"] == final
        endpoints = state["services"][OTHER]["endpoints"]
        assert set(endpoints) == expected_ids, n.url
        assert {e["address"] for e in endpoints.values()} == expected_addresses
        answered = answer_d(n, OTHER)  # the service answers at most 64 addresses
        assert len(answered) == 64 and answered <= expected_addresses, (n.url, answered)

    # The audit (the Redis stream) has every write exactly once, by its writer.
    status, audit = call(nodes[1].url, "GET", f"/api/v1/audit?since={rev}&limit=1000")
    assert status == 200, audit
    entries = audit["entries"]
    assert [e["revision"] for e in entries] == list(range(rev + 1, final + 1))
    keys = Counter(c["key"] for e in entries for c in e["changes"])
    assert keys == Counter({f"{OTHER}/w{w}-{i}": 1 for w in range(WRITERS) for i in range(EACH)})
    for e in entries:
        (change,) = e["changes"]
        assert e["actor"] == "writer-" + change["key"].split("/w")[1].split("-")[0]

    # Compare-and-set: 20 writers read the same revision and all PUT with If-Match at once.
    status, _ = put_endpoint(nodes[0], OTHER, "cas", "10.99.0.1")
    assert status == 201
    base = final + 1
    wait_revision(nodes, base)
    go = threading.Barrier(WRITERS)

    def cas(w: int) -> tuple[int, Any]:
        go.wait(10)
        return put_endpoint(
            nodes[w % 3], OTHER, "cas", f"10.99.1.{w + 1}", if_match=base, actor=f"cas-{w}"
        )

    with ThreadPoolExecutor(WRITERS) as pool:
        outcomes = list(pool.map(cas, range(WRITERS)))
    statuses = Counter(status for status, _ in outcomes)
    assert statuses == Counter({200: 1, 409: WRITERS - 1}), outcomes
    assert all(body["error"] == "conflict" for status, body in outcomes if status == 409)
    (winner,) = [w for w, (status, _) in enumerate(outcomes) if status == 200]
    assert outcomes[winner][1]["revision"] == base + 1

    wait_revision(nodes, base + 1)
    assert redis_revision(r.port) == base + 1
    for n in nodes:
        status, state = call(n.url, "GET", "/api/v1/state")
        assert state["revision"] == base + 1
        assert state["services"][OTHER]["endpoints"]["cas"]["address"] == f"10.99.1.{winner + 1}"
    status, audit = call(nodes[2].url, "GET", f"/api/v1/audit?since={base}")
    assert [(e["revision"], e["actor"]) for e in audit["entries"]] == [(base + 1, f"cas-{winner}")]
