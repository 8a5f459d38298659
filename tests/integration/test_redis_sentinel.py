"""Redis Sentinel: one master, one replica, three sentinels on loopback; the master is killed
while two nodes answer queries. Answers never fail and writes resume after the failover."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from tests.servers import need, wait_until

from .conftest import (
    OTHER,
    OTHER_FIRST,
    Cluster,
    QueryLoad,
    answer_d,
    build_registry,
    put_endpoint,
    redis_client,
    redis_revision,
    restore_from,
    wait_revision,
    wait_store,
)

MASTER = "mymaster"


def _sentinel_view(port: int) -> dict[str, Any]:
    try:
        with redis_client(port) as s:
            return dict(s.sentinel_master(MASTER))
    except redis.RedisError:
        return {}


def _replica_linked(port: int) -> bool:
    try:
        with redis_client(port) as r:
            return bool(r.info("replication").get("master_link_status") == "up")
    except redis.RedisError:
        return False


@pytest.mark.timeout(120)
def test_sentinel_failover_keeps_answers_and_writes_resume(cluster: Cluster) -> None:
    need("redis-sentinel")
    master = cluster.redis("master")
    replica = cluster.redis("replica", args=("--replicaof", "127.0.0.1", str(master.port)))
    wait_until(lambda: _replica_linked(replica.port), 20, "the replica to sync")
    sentinels = [cluster.sentinel(master.port) for _ in range(3)]
    # Every sentinel knows the replica and the two other sentinels (so they can elect a leader).
    wait_until(
        lambda: all(
            _sentinel_view(s.port).get("num-slaves") == 1
            and _sentinel_view(s.port).get("num-other-sentinels") == 2
            for s in sentinels
        ),
        30,
        "the sentinels to discover the replica and each other",
    )

    hosts = ",".join(f"127.0.0.1:{s.port}" for s in sentinels)
    store = f"redis+sentinel://{hosts}/{MASTER}/0"
    nodes = cluster.start_nodes(store, 2)
    a, b = nodes
    rev = build_registry(a)
    wait_revision(nodes, rev)
    assert redis_revision(master.port) == rev
    wait_until(lambda: redis_revision(replica.port) == rev, 20, "the replica to have the data")

    with QueryLoad(nodes) as load:
        master.kill()
        # Until a sentinel promotes the replica, writes are refused (and nothing applied).
        status, body = put_endpoint(a, OTHER, "during", "198.51.100.50")
        assert status == 503, body
        assert body["error"] in ("store_unavailable", "store_regressed"), body

        # Writes resume after the failover (bounded retries; restore if the failover lost data).
        deadline = time.monotonic() + 30
        attempts: list[tuple[int, Any]] = []
        while True:
            status, body = put_endpoint(b, OTHER, "after", "198.51.100.51")
            attempts.append((status, body))
            if status in (200, 201):
                break
            assert status == 503, attempts
            if body.get("error") == "store_regressed":
                done = restore_from(b)
                assert done.returncode == 0, (done.stdout, done.stderr)
            assert time.monotonic() < deadline, f"writes did not resume: {attempts[-3:]}"
            time.sleep(0.2)  # pacing between attempts (the outcome is checked above)
        new_rev = int(body["revision"])
        assert new_rev > rev

        # The sentinels now name the replica as the master.
        assert all(int(_sentinel_view(s.port).get("port", 0)) == replica.port for s in sentinels), [
            _sentinel_view(s.port) for s in sentinels
        ]
        assert redis_revision(replica.port) == new_rev

        # The change reaches both nodes, which are healthy again.
        wait_revision(nodes, new_rev, timeout=30)
        bodies = wait_store(nodes, "ok", timeout=30)
        assert [h["revision"] for h in bodies] == [new_rev, new_rev]
        for n in nodes:
            assert answer_d(n, OTHER) == {OTHER_FIRST, "198.51.100.51"}, n.url
    load.assert_clean(at_least=50)
