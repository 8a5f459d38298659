"""Faults in the shared Redis that once froze, split or emptied the fleet (issue 12), each
made by hand on a real redis-server under three real nodes: garbage on the change feed, a
non-numeric revision, a corrupt record, records deleted or of the wrong type, eviction under
maxmemory. In every one: no node freezes or serves an empty table while a good copy exists,
affected nodes say ``degraded`` with a reason within 2 s, and the fleet converges by itself
within 5 s of the repair (or of ``restore``)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.servers import Node, wait_until

from .conftest import (
    OTHER,
    OTHER_FIRST,
    PREFIX,
    SNAPSHOT,
    WEB,
    WEB_ADDRESSES,
    Cluster,
    QueryLoad,
    answer_d,
    build_registry,
    call,
    node_log,
    put_endpoint,
    redis_client,
    restore_from,
    wait_nodes,
    wait_revision,
)

DETECT = 2.0  # seconds: an affected node says degraded within this
CONVERGE = 5.0  # seconds: the fleet is ok again within this after the repair


def degraded(nodes: list[Node], *words: str, timeout: float = DETECT) -> list[dict[str, Any]]:
    """Wait until every node is degraded with a reason containing all ``words``."""

    def ok(h: dict[str, Any]) -> bool:
        text = " ".join(h.get("reasons") or [])
        return h["status"] == "degraded" and all(w in text for w in words)

    return wait_nodes(nodes, ok, f"degraded: {words}", timeout)


def all_ok(nodes: list[Node], revision: int | None = None, timeout: float = CONVERGE) -> None:
    wait_nodes(
        nodes,
        lambda h: (
            h["status"] == "ok"
            and h["reasons"] == []
            and (revision is None or h["revision"] == revision)
        ),
        "status ok",
        timeout,
    )


def healthz(node: Node) -> tuple[int, dict[str, Any]]:
    status, body = call(node.url, "GET", "/healthz", timeout=2)
    assert isinstance(body, dict), body
    return status, body


def fleet(nodes: list[Node]) -> tuple[list[Node], int]:
    """The test registry written through the first node and applied by all."""
    rev = build_registry(nodes[0])
    wait_revision(nodes, rev)
    return nodes, rev


def test_garbage_on_the_feed_freezes_no_node(cluster: Cluster) -> None:
    r = cluster.redis("redis")
    nodes, rev = fleet(cluster.start_nodes(r.url, 3))
    with QueryLoad(nodes) as load:
        with redis_client(r.port) as rc:
            for junk in (b"not json", b"{broken", b"[]", b'{"revision": "x"}', b"\xff"):
                rc.publish(PREFIX + "feed", junk)
        # Every node still follows: a write through each one is answered (not 504) and
        # reaches all of them.
        for i, n in enumerate(nodes):
            status, body = put_endpoint(n, OTHER, f"g{i}", f"198.51.100.{50 + i}", timeout=10)
            assert status == 201, body
            wait_revision(nodes, body["revision"], timeout=CONVERGE)
        all_ok(nodes, rev + 3)
        for n in nodes:
            assert answer_d(n, OTHER) >= {"198.51.100.50", "198.51.100.51", "198.51.100.52"}
    load.assert_clean(at_least=10)
    assert any("undecodable message" in node_log(n) for n in nodes)


def test_a_non_numeric_revision_is_a_json_503_and_the_fleet_recovers_after_repair(
    cluster: Cluster,
) -> None:
    r = cluster.redis("redis")
    nodes, rev = fleet(cluster.start_nodes(r.url, 3))
    with QueryLoad(nodes) as load:
        with redis_client(r.port) as rc:
            rc.set(PREFIX + "revision", "banana")
        bodies = degraded(nodes, "not a revision number")
        assert all(h["revision"] == rev for h in bodies), bodies
        for n in nodes:
            status, body = put_endpoint(n, OTHER, "x", "198.51.100.60")
            assert status == 503, body
            assert body["error"] == "store_damaged" and "not a revision number" in body["detail"]
        # The operator repairs the key: the fleet is ok again by itself and writes work.
        with redis_client(r.port) as rc:
            rc.set(PREFIX + "revision", rev)
        all_ok(nodes, rev)
        status, body = put_endpoint(nodes[1], OTHER, "after", "198.51.100.61")
        assert status == 201, body
        wait_revision(nodes, rev + 1, timeout=CONVERGE)
    load.assert_clean(at_least=10)
    assert any("not a revision number" in node_log(n) for n in nodes)


def test_one_corrupt_record_the_fleet_holds_its_good_copy_and_stops_writes_until_restore(
    cluster: Cluster,
) -> None:
    r = cluster.redis("redis")
    nodes, rev = fleet(cluster.start_nodes(r.url, 3))
    a, b, c = nodes
    wait_until(lambda: (c.workdir / SNAPSHOT).exists(), 10, "c's local snapshot")
    wait_until(lambda: f'"revision":{rev}'.encode() in (c.workdir / SNAPSHOT).read_bytes()[:200],
               10, "c's snapshot at the last revision")  # fmt: skip
    with redis_client(r.port) as rc:
        rc.hset(PREFIX + "records", f"endpoint\x1f{WEB}/w1", "{broken")
    with QueryLoad([a, b]) as load:
        # A node restarted now starts from its local snapshot, degraded, naming the record.
        c.stop()
        c.start()
        status, h = healthz(c)
        assert status == 200 and h["status"] == "degraded", h
        assert h["started_from"] == "local snapshot" and h["revision"] == rev, h
        assert any(f"endpoint/{WEB}/w1" in reason for reason in h["reasons"]), h
        assert answer_d(c, WEB) == WEB_ADDRESSES
        status, body = put_endpoint(c, OTHER, "x", "198.51.100.70")
        assert (status, body["error"]) == (503, "store_damaged"), body
        # The running nodes' tables are good and their cheap check cannot see an altered
        # record, but the restarted node told the store: they say degraded with the same
        # reason and refuse writes, so the fleet does not drift apart from c.
        degraded([a, b], f"endpoint/{WEB}/w1")
        for n in (a, b):
            status, body = put_endpoint(n, OTHER, "x", "198.51.100.70")
            assert (status, body["error"]) == (503, "store_damaged"), body
            assert answer_d(n, WEB) == WEB_ADDRESSES
        # A new node with no copy of its own serves nothing, and says so with a 503.
        new = cluster.node(r.url, "new", wait=False)
        wait_until(lambda: health_status(new) == 503, 20, "the new node to answer /healthz")
        status, h = healthz(new)
        assert (status, h["status"], h["started_from"]) == (503, "unavailable", "nothing"), h
        assert "Traceback" not in node_log(new)
        # Its queries fail (503) rather than answer empty: clients ask another node.
        assert health_status(new, f"/d?dn={WEB}") == 503
        # Restore from a running node: every node, the new one too, converges by itself.
        done = restore_from(a)
        assert done.returncode == 0, (done.stdout, done.stderr)
        all_ok([a, b, c, new], rev + 1)
        assert answer_d(new, WEB) == WEB_ADDRESSES
        assert answer_d(c, OTHER) == {OTHER_FIRST}
    load.assert_clean(at_least=10)


def test_one_corrupt_record_repaired_by_hand_the_fleet_converges_by_itself(
    cluster: Cluster,
) -> None:
    r = cluster.redis("redis")
    nodes, rev = fleet(cluster.start_nodes(r.url, 3))
    a, b, c = nodes
    field = f"endpoint\x1f{WEB}/w1"
    with redis_client(r.port) as rc:
        original = rc.hget(PREFIX + "records", field)
        rc.hset(PREFIX + "records", field, "{broken")
    with QueryLoad([a, b]) as load:
        c.stop()
        c.start()
        degraded(nodes, f"endpoint/{WEB}/w1")
        status, body = put_endpoint(a, OTHER, "x", "198.51.100.75")
        assert (status, body["error"]) == (503, "store_damaged"), body
        # The operator puts the record's bytes back: no restore, no restart.
        with redis_client(r.port) as rc:
            rc.hset(PREFIX + "records", field, original)
        all_ok(nodes, rev)
        status, body = put_endpoint(b, OTHER, "after", "198.51.100.76")
        assert status == 201, body
        wait_revision(nodes, rev + 1, timeout=CONVERGE)
    load.assert_clean(at_least=10)
    assert any("matches its digest again" in node_log(n) for n in nodes)


def health_status(node: Node, path: str = "/healthz") -> int | None:
    try:
        with urllib.request.urlopen(node.url + path, timeout=1) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)
    except OSError:
        return None


@pytest.mark.parametrize("fault", ["delete", "wrong-type"])
def test_records_deleted_or_replaced_by_another_type_running_nodes_hold_and_restore_repairs(
    cluster: Cluster, fault: str
) -> None:
    r = cluster.redis("redis")
    nodes, rev = fleet(cluster.start_nodes(r.url, 3))
    a, b, c = nodes
    with QueryLoad(nodes) as load:
        with redis_client(r.port) as rc:
            rc.delete(PREFIX + "records")
            if fault == "wrong-type":
                rc.set(PREFIX + "records", "oops")
        words = ("0 records where",) if fault == "delete" else ("wrong type",)
        degraded(nodes, *words)
        for n in nodes:
            assert answer_d(n, OTHER) == {OTHER_FIRST}
            status, body = put_endpoint(n, OTHER, "x", "198.51.100.80")
            assert (status, body["error"]) == (503, "store_damaged"), body
        # Restore is allowed although Redis is not behind: its content is damaged.
        done = restore_from(b)
        assert done.returncode == 0, (done.stdout, done.stderr)
        all_ok(nodes, rev + 1)
        status, body = put_endpoint(c, OTHER, "after", "198.51.100.81")
        assert status == 201, body
        wait_revision(nodes, rev + 2, timeout=CONVERGE)
        # Restoring an intact registry is refused.
        again = restore_from(a)
        assert again.returncode == 1 and "matches its digest" in again.stderr, again.stderr
    load.assert_clean(at_least=10)


def test_eviction_under_maxmemory_never_empties_a_node(cluster: Cluster) -> None:
    r = cluster.redis("redis", args=("--maxmemory-policy", "allkeys-random"))
    nodes, _rev = fleet(cluster.start_nodes(r.url, 3))
    for n in nodes:
        assert "maxmemory-policy is allkeys-random" in node_log(n)
    with QueryLoad(nodes) as load:
        with redis_client(r.port) as rc:
            used = int(rc.info("memory")["used_memory"])
            rc.config_set("maxmemory", used + 2_000_000)
            start = time.monotonic()
            i = 0
            while rc.exists(PREFIX + "records") and time.monotonic() - start < 60:
                rc.set(f"filler:{i}", b"x" * 20_000)
                i += 1
            assert not rc.exists(PREFIX + "records"), "eviction never reached the registry"
        # Whatever else went (revision, digest, stream), every node notices and holds.
        wait_nodes(nodes, lambda h: h["status"] == "degraded" and h["reasons"], "degraded", DETECT)
        for n in nodes:
            assert answer_d(n, OTHER) == {OTHER_FIRST}
        with redis_client(r.port) as rc:
            rc.config_set("maxmemory", 0)
            rc.config_set("maxmemory-policy", "noeviction")
            for key in rc.scan_iter("filler:*", count=1000):
                rc.delete(key)
        done = restore_from(nodes[0])
        assert done.returncode == 0, (done.stdout, done.stderr)
        all_ok(nodes)
        status, body = put_endpoint(nodes[2], OTHER, "after", "198.51.100.90")
        assert status == 201, body
        wait_revision(nodes, body["revision"], timeout=CONVERGE)
    load.assert_clean(at_least=10)
