"""Several nodes on one real redis-server: the change feed, fail static while Redis is down,
a Redis that comes back empty or older, starting from the local snapshot, and missed feed
messages."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from registry.model import Endpoint
from tests.servers import wait_until

from .conftest import (
    AOF,
    BURST,
    DEFAULT_IDC,
    OTHER,
    OTHER_FIRST,
    SNAPSHOT,
    WEB,
    WEB_ADDRESSES,
    Cluster,
    QueryLoad,
    Writer,
    answer_d,
    answer_resolve,
    build_registry,
    call,
    commit_silently,
    health,
    node_log,
    put_endpoint,
    redis_client,
    redis_revision,
    restore_from,
    wait_nodes,
    wait_revision,
    wait_store,
)


def _state_endpoints(node_url: str, service: str) -> set[str]:
    status, state = call(node_url, "GET", "/api/v1/state")
    assert status == 200, state
    return set(state["services"][service]["endpoints"])


def test_a_write_through_one_node_reaches_the_others_incrementally(cluster: Cluster) -> None:
    r = cluster.redis("redis")
    nodes = cluster.start_nodes(r.url, 3)
    a, b, _ = nodes
    rev = build_registry(a)
    wait_revision(nodes, rev)
    for n in nodes:
        assert answer_d(n, WEB) == WEB_ADDRESSES
        assert answer_resolve(n, WEB) == WEB_ADDRESSES
        assert answer_d(n, OTHER) == {OTHER_FIRST}

    # One write at a time, each through a different node: every node moves by exactly one
    # revision per write and answers with it.
    for k in range(1, 7):
        writer = nodes[k % 3]
        address = f"198.51.100.{10 + k}"
        status, body = put_endpoint(writer, OTHER, f"e{k}", address, actor=f"writer-{k}")
        assert status == 201, body
        assert body["revision"] == rev + k
        bodies = wait_revision(nodes, rev + k)
        assert [h["revision"] for h in bodies] == [rev + k] * 3
        assert all(h["store"] == "ok" and h["stale_seconds"] == 0 for h in bodies), bodies
        for n in nodes:
            assert address in answer_d(n, OTHER), n.url

    # The feed carried each change: nobody had to reload a whole snapshot.
    for n in nodes:
        assert "reloading a snapshot" not in node_log(n), node_log(n)
    # The audit (Redis stream) has each write once, with its actor, in order.
    status, audit = call(b.url, "GET", f"/api/v1/audit?since={rev}")
    assert status == 200, audit
    assert [(e["revision"], e["actor"]) for e in audit["entries"]] == [
        (rev + k, f"writer-{k}") for k in range(1, 7)
    ]
    assert redis_revision(r.port) == rev + 6


def test_redis_killed_mid_load_nodes_fail_static_then_converge(cluster: Cluster) -> None:
    r = cluster.redis("redis", args=AOF)
    nodes = cluster.start_nodes(r.url, 3)
    a, b, c = nodes
    build_registry(a)
    status, body = call(a.url, "PUT", f"/api/v1/services/{BURST}", {"traffic": DEFAULT_IDC})
    assert status == 201, body
    wait_revision(nodes, body["revision"])

    # Queries on every node and a stream of writes through every node while Redis is killed.
    with QueryLoad(nodes) as load, Writer(nodes, BURST) as writer, ThreadPoolExecutor(3) as pool:
        r.kill()
        # More writes, through any node, with or without If-Match, racing the nodes noticing.
        seen = max(writer.acknowledged.values())
        writes = [
            pool.submit(put_endpoint, a, OTHER, "lost", "198.51.100.66"),
            pool.submit(put_endpoint, b, OTHER, "lost2", "198.51.100.67", if_match=seen),
            pool.submit(
                call, c.url, "DELETE", f"/api/v1/services/{OTHER}/endpoints/first?force=1"
            ),  # its last endpoint
        ]
        # Every write is refused with a clear 503 (the writer stops at its first refusal).
        writer.join()
        assert [(s, b.get("error")) for _eid, s, b in writer.refused] == [
            (503, "store_unavailable")
        ], writer.refused
        rev = max(writer.acknowledged.values())  # the last write Redis acknowledged
        wait_store(nodes, "unavailable")
        bodies = wait_nodes(nodes, lambda h: h["stale_seconds"] > 0, "stale_seconds > 0")
        assert all(h["revision"] <= rev and h["status"] == "degraded" for h in bodies), bodies
        during = load.queries
        for status, body in [w.result(60) for w in writes]:
            assert (status, body.get("error")) == (503, "store_unavailable"), body
        # ... and the answers keep coming from the last table (the load checks each one).
        wait_until(lambda: load.queries > during + 30, 10, "queries while Redis is down")
        assert answer_d(c, OTHER) == {OTHER_FIRST}

        # Redis comes back on the same port with its data (append-only file).
        r.start()
        bodies = wait_store(nodes, "ok")
        # The writer's one in-flight write may have been committed just before the kill with
        # its reply lost (its 503 says the outcome is unknown); nothing else may differ.
        final = redis_revision(r.port)
        assert final in (rev, rev + 1), (final, rev)
        landed = {eid for eid, _s, _b in writer.refused} if final == rev + 1 else set()
        assert all(h["stale_seconds"] == 0 and h["revision"] == final for h in bodies), bodies
        for n in nodes:
            assert _state_endpoints(n.url, OTHER) == {"first"}
            assert _state_endpoints(n.url, BURST) == set(writer.acknowledged) | landed, n.url
        rev = final

        # A change made after Redis returned reaches every node.
        status, body = put_endpoint(c, OTHER, "after", "198.51.100.77")
        assert status == 201, body
        assert body["revision"] == rev + 1
        wait_revision(nodes, rev + 1)
        for n in nodes:
            assert answer_d(n, OTHER) == {OTHER_FIRST, "198.51.100.77"}, n.url
    load.assert_clean(at_least=100)


@pytest.mark.parametrize("comeback", ["empty", "older"])
def test_redis_back_empty_or_older_never_changes_answers_and_restore_reseeds_it(
    cluster: Cluster, comeback: str
) -> None:
    r = cluster.redis("redis")
    nodes = cluster.start_nodes(r.url, 3)
    a, b, c = nodes
    older = build_registry(a)
    if comeback == "older":
        with redis_client(r.port) as rc:
            assert rc.save()  # dump.rdb at this revision; what a restart will load
    later = {f"later{k}": f"198.51.100.{30 + k}" for k in range(3)}
    for eid, address in later.items():
        status, body = put_endpoint(b, OTHER, eid, address)
        assert status == 201, body
    rev = int(body["revision"])
    wait_revision(nodes, rev)
    expected_other = {OTHER_FIRST, *later.values()}

    # c is restarted below, so the continuous load runs on a and b (c is checked by hand).
    with QueryLoad([a, b]) as load:
        r.kill()
        if comeback == "older":
            r.start()  # same port and directory: loads the older dump.rdb
            back = r
        else:
            back = cluster.redis("redis-empty", port=r.port)  # no persistence: empty
        assert redis_revision(back.port) == (older if comeback == "older" else 0)
        bodies = wait_store(nodes, "regressed")
        assert all(h["revision"] == rev and h["status"] == "degraded" for h in bodies), bodies
        assert all("restore" in h.get("detail", "") for h in bodies), bodies
        for n in nodes:
            assert answer_d(n, OTHER) == expected_other, n.url
            assert answer_resolve(n, WEB) == WEB_ADDRESSES

        # Writes are refused and nothing reaches the Redis that lost data.
        status, body = put_endpoint(b, OTHER, "lost", "198.51.100.66")
        assert (status, body.get("error")) == (503, "store_regressed"), body
        status, body = call(a.url, "PUT", "/api/v1/datacenters/cloud", {"kind": "cloud"})
        assert (status, body.get("error")) == (503, "store_regressed"), body
        status, body = call(c.url, "DELETE", f"/api/v1/services/{OTHER}", if_match=rev)
        assert (status, body.get("error")) == (503, "store_regressed"), body
        assert redis_revision(back.port) == (older if comeback == "older" else 0)

        # A node restarted meanwhile keeps its own snapshot rather than the store's.
        c.stop()
        c.start()
        h = health(c)
        assert (h["store"], h["revision"], h["started_from"]) == (
            "regressed",
            rev,
            "local snapshot",
        ), h
        assert answer_d(c, OTHER) == expected_other

        # The operator re-seeds Redis from one node's snapshot.
        done = restore_from(b)
        assert done.returncode == 0, (done.stdout, done.stderr)
        bodies = wait_store(nodes, "ok")
        assert all(h["revision"] == rev for h in bodies), bodies
        assert redis_revision(back.port) == rev
        # Restoring again is refused: Redis is no longer behind.
        again = restore_from(c)
        assert again.returncode != 0
        assert "Traceback" not in again.stderr

        # Writes work again and reach every node.
        status, body = put_endpoint(c, OTHER, "after", "198.51.100.77")
        assert status == 201, body
        assert body["revision"] == rev + 1
        wait_revision(nodes, rev + 1)
        for n in nodes:
            assert answer_d(n, OTHER) == {*expected_other, "198.51.100.77"}, n.url
            assert _state_endpoints(n.url, WEB) == {"w0", "w1", "w2"}
    load.assert_clean(at_least=100)


def test_writes_right_after_redis_lost_its_data_are_refused(cluster: Cluster) -> None:
    r = cluster.redis("redis")
    nodes = cluster.start_nodes(r.url, 3)
    rev = build_registry(nodes[0])
    wait_revision(nodes, rev)

    # Redis loses everything (as a restart without persistence does), and writes follow at
    # once, before the nodes' next revision check.
    with redis_client(r.port) as rc:
        rc.flushall()
    with ThreadPoolExecutor(3) as pool:
        outcomes = list(
            pool.map(
                lambda i: call(
                    nodes[i].url, "PUT", f"/api/v1/datacenters/cloud{i}", {"kind": "cloud"}
                ),
                range(3),
            )
        )
    bodies = wait_store(nodes, "regressed")
    assert all(h["revision"] == rev for h in bodies), bodies
    # Nothing was committed to the store behind the nodes, and no write was acknowledged.
    assert [(s, b.get("error")) for s, b in outcomes] == [(503, "store_regressed")] * 3, outcomes
    assert redis_revision(r.port) == 0


def _saved_revision(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_bytes())["revision"])
    except (OSError, ValueError, KeyError):
        return None


def test_node_starts_from_local_snapshot_while_redis_is_down(cluster: Cluster) -> None:
    r = cluster.redis("redis", args=AOF)
    a = cluster.node(r.url, "a")
    rev = build_registry(a)
    saved = a.workdir / SNAPSHOT
    wait_until(lambda: _saved_revision(saved) == rev, 20, f"{saved} at revision {rev}")
    before = {name: answer_d(a, name) for name in (WEB, OTHER)}
    r.kill()

    # A new node with a copy of a's snapshot starts anyway and says so; one without any
    # snapshot file (started at the same time) cannot.
    d = cluster.node(r.url, "d", snapshot_from=saved, wait=False)
    e = cluster.node(r.url, "e", wait=False)
    wait_until(d.healthy, 30, f"node d ({d.log})")
    h = health(d)
    assert h["started_from"] == "local snapshot", h
    assert h["store"] == "unavailable", h
    assert h["revision"] == rev, h
    assert {name: answer_d(d, name) for name in (WEB, OTHER)} == before
    assert answer_resolve(d, WEB) == WEB_ADDRESSES
    assert "store unreachable" in node_log(d)
    status, body = put_endpoint(d, OTHER, "lost", "198.51.100.66")
    assert (status, body.get("error")) == (503, "store_unavailable"), body

    # Without a snapshot file, a node cannot start: a one-line error, no traceback.
    assert e.proc is not None
    code = e.proc.wait(30)
    out = node_log(e)
    assert code != 0, out
    assert "Traceback" not in out, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert "store" in lines[0] and "127.0.0.1" in lines[0], out

    # Redis returns: the node started from its snapshot catches up and writes work through it.
    r.start()
    bodies = wait_store([a, d], "ok")
    assert [h["revision"] for h in bodies] == [rev, rev]
    status, body = put_endpoint(d, OTHER, "after", "198.51.100.77")
    assert status == 201, body
    wait_revision([a, d], rev + 1)
    assert answer_d(a, OTHER) == {OTHER_FIRST, "198.51.100.77"}


def test_missed_feed_messages_and_revision_gaps_converge(cluster: Cluster) -> None:
    r = cluster.redis("redis")
    nodes = cluster.start_nodes(r.url, 3)
    a, b, _ = nodes
    rev = build_registry(a)
    wait_revision(nodes, rev)

    # Cut every node's feed subscription, then write at once: messages are lost in between.
    with redis_client(r.port) as rc:
        killed = rc.client_kill_filter(_type="pubsub")
    assert killed >= 3
    for k in range(1, 6):
        status, body = put_endpoint(a, OTHER, f"k{k}", f"198.51.100.{20 + k}")
        assert status == 201, body
    rev += 5
    wait_revision(nodes, rev)
    for n in nodes:
        assert _state_endpoints(n.url, OTHER) == {"first", *(f"k{k}" for k in range(1, 6))}

    # A commit that was never published, then a published one: the nodes see a gap and
    # fill it from the stream.
    silent = Endpoint(OTHER, "silent", "idc", "198.51.100.40", 443)
    assert commit_silently(r.port, silent) == rev + 1
    status, body = put_endpoint(b, OTHER, "loud", "198.51.100.41")
    assert status == 201, body
    assert body["revision"] == rev + 2
    wait_revision(nodes, rev + 2)
    for n in nodes:
        answer = answer_d(n, OTHER)
        assert {"198.51.100.40", "198.51.100.41"} <= answer, (n.url, answer)

    # A commit that is never published and never followed: found by the revision check.
    quiet = Endpoint(OTHER, "quiet", "idc", "198.51.100.42", 443)
    assert commit_silently(r.port, quiet) == rev + 3
    wait_revision(nodes, rev + 3)
    bodies = wait_store(nodes, "ok")
    assert [h["revision"] for h in bodies] == [rev + 3] * 3
    for n in nodes:
        assert "198.51.100.42" in answer_d(n, OTHER), n.url
