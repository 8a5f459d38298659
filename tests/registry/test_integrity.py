"""Content integrity of the stores: the digest kept with each revision, damaged content
refused (never adopted), clear errors for refused writes, restore of a damaged Redis, and
the nodes' heartbeats. Real redis-server and real SQLite files; nothing mocked."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis
from redis.exceptions import ResponseError

from registry import Change, Datacenter, Store
from registry.digest import Digest, digest_of, field_name
from registry.errors import (
    ConflictError,
    StoreDamagedError,
    StoreFullError,
    StoreUnavailableError,
)
from registry.redis import RedisStore, store_error
from registry.sqlite import SQLiteStore
from registry.store import APART
from tests.servers import RedisServer, wait_until

from .test_store_contract import SVC, dc, ep, seed, svc

_prefixes = itertools.count()


def raw_client(server: RedisServer) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=2)


@pytest.fixture
async def redis_pair(redis_server: RedisServer) -> AsyncIterator[tuple[RedisStore, str]]:
    """A Redis store on its own prefix, with the prefix (for raw access)."""
    prefix = f"integrity{next(_prefixes)}:"
    store = await RedisStore.open(f"{redis_server.url}?prefix={prefix}")
    try:
        yield store, prefix
    finally:
        await store.close()


async def fresh(redis_server: RedisServer, prefix: str) -> RedisStore:
    """A new client, as a node that starts now has: no cached snapshot."""
    return await RedisStore.open(f"{redis_server.url}?prefix={prefix}")


async def seeded(store: Store) -> int:
    cs = await store.apply(seed())
    cs = await store.apply([ep("e3", "dc1", "10.0.0.3")])
    cs = await store.apply([Change.delete("endpoint", f"{SVC}/e2")])
    return cs.revision


# -- the digest --------------------------------------------------------------------------------


async def test_every_write_keeps_the_digest_of_the_records(
    redis_server: RedisServer, redis_pair: tuple[RedisStore, str]
) -> None:
    store, prefix = redis_pair
    rev = await seeded(store)
    with raw_client(redis_server) as r:
        records = r.hgetall(prefix + "records")
        stored = Digest.decode(r.get(prefix + "digest"))
    assert stored == digest_of(rev, records.items())
    assert stored.count == len(records) == 7
    # The digest is the same whatever the backend: the SQLite store computes it alike.
    sqlite = await SQLiteStore.open("sqlite://:memory:")
    try:
        await seeded(sqlite)
        rows = sqlite._conn.execute("SELECT kind, key, value FROM records").fetchall()
        meta = dict(sqlite._conn.execute("SELECT k, v FROM meta"))
    finally:
        await sqlite.close()
    mine = digest_of(rev, [(field_name(k, key), bytes(v)) for k, key, v in rows])
    assert (meta["count"], meta["digest"]) == (mine.count, mine.sum) == (stored.count, stored.sum)


async def test_a_registry_written_before_digests_gets_one_on_its_next_write(
    redis_server: RedisServer, redis_pair: tuple[RedisStore, str]
) -> None:
    store, prefix = redis_pair
    rev = await seeded(store)
    with raw_client(redis_server) as r:
        r.delete(prefix + "digest")
    other = await fresh(redis_server, prefix)
    try:
        assert (await other.snapshot()).revision == rev  # no digest yet: trusted as it is
        await other.apply([ep("e4", "dc1", "10.0.0.4")])
    finally:
        await other.close()
    with raw_client(redis_server) as r:
        stored = Digest.decode(r.get(prefix + "digest"))
        assert stored == digest_of(rev + 1, r.hgetall(prefix + "records").items())


async def test_a_write_by_a_version_without_digests_is_trusted_during_an_upgrade(
    redis_server: RedisServer, redis_pair: tuple[RedisStore, str]
) -> None:
    store, prefix = redis_pair
    rev = await seeded(store)
    # An older node commits as it always did: records and revision, no digest update.
    with raw_client(redis_server) as r:
        old = Datacenter.from_dict("old", {}).to_dict()
        r.hset(prefix + "records", "datacenter\x1fold", json.dumps(old))
        r.set(prefix + "revision", rev + 1)
    other = await fresh(redis_server, prefix)
    try:
        assert "old" in (await other.snapshot()).datacenters
        await other.check()
        cs = await other.apply([dc("new")])  # the first write by this version: digest again
    finally:
        await other.close()
    with raw_client(redis_server) as r:
        stored = Digest.decode(r.get(prefix + "digest"))
        assert stored == digest_of(cs.revision, r.hgetall(prefix + "records").items())
    # A digest ahead of the revision is no upgrade: damaged.
    with raw_client(redis_server) as r:
        r.set(prefix + "revision", rev)
    with pytest.raises(StoreDamagedError, match="digest was written at revision"):
        await store.check()


# -- damaged Redis content is never adopted ------------------------------------------------------


@pytest.mark.parametrize("how", ["replace", "add"])
async def test_a_corrupt_record_refuses_the_whole_load_naming_the_key(
    redis_server: RedisServer, redis_pair: tuple[RedisStore, str], how: str
) -> None:
    store, prefix = redis_pair
    rev = await seeded(store)
    field = f"endpoint\x1f{SVC}/e1" if how == "replace" else f"endpoint\x1f{SVC}/bad"
    with raw_client(redis_server) as r:
        r.hset(prefix + "records", field, "{broken")
    other = await fresh(redis_server, prefix)
    try:
        with pytest.raises(StoreDamagedError) as err:
            await other.snapshot()
        assert f"revision {rev}" in err.value.detail
        assert f"endpoint/{SVC}/{'e1' if how == 'replace' else 'bad'}" in err.value.detail
        assert "restore" in err.value.detail
        if how == "add":  # one more record than the digest counts: the cheap check sees it
            with pytest.raises(StoreDamagedError, match="8 records where revision"):
                await other.check()
        # Same count or not, the load that found it left its reason for every client: the
        # running writer's cheap check reports it, and its writes are refused.
        with pytest.raises(StoreDamagedError, match=f"endpoint/{SVC}/"):
            await store.check()
        with pytest.raises(StoreDamagedError, match="nothing was applied"):
            await store.apply([dc("dc3")])
    finally:
        await other.close()


async def test_damage_found_by_one_client_stops_writes_everywhere_until_repaired(
    redis_server: RedisServer, redis_pair: tuple[RedisStore, str]
) -> None:
    """An altered record keeps the count: only a full load sees it. The client that loads
    marks the store, so a running client (its snapshot cached, its check O(1)) reports the
    damage and cannot write on top of it; a repair by hand lifts the mark by itself."""
    store, prefix = redis_pair
    rev = await seeded(store)
    await store.check()
    field = f"endpoint\x1f{SVC}/e1"
    with raw_client(redis_server) as r:
        original = r.hget(prefix + "records", field)
        r.hset(prefix + "records", field, "{broken")
    await store.check()  # nobody has loaded it yet: the cheap check cannot tell
    other = await fresh(redis_server, prefix)
    try:
        with pytest.raises(StoreDamagedError) as found:
            await other.snapshot()
        with pytest.raises(StoreDamagedError) as seen:
            await store.check()
        assert seen.value.detail == found.value.detail  # the same reason on every node
        with pytest.raises(StoreDamagedError, match="nothing was applied"):
            await store.apply([dc("dc3")])
        with raw_client(redis_server) as r:
            assert int(r.get(prefix + "revision")) == rev  # nothing was written
            r.hset(prefix + "records", field, original)  # the repair, by hand

        async def clean() -> bool:
            try:
                await store.check()
            except StoreDamagedError:
                return False
            return True

        async with asyncio.timeout(5):  # a marked store is checked in full every 2 s
            while not await clean():
                await asyncio.sleep(0.05)
        with raw_client(redis_server) as r:
            assert r.exists(prefix + "damaged") == 0
        assert (await store.apply([dc("dc3")])).revision == rev + 1
        assert (await other.snapshot()).revision == rev + 1
    finally:
        await other.close()


async def test_records_lost_with_the_revision_kept_are_refused_everywhere(
    redis_server: RedisServer, redis_pair: tuple[RedisStore, str]
) -> None:
    store, prefix = redis_pair
    rev = await seeded(store)
    with raw_client(redis_server) as r:
        r.delete(prefix + "records")
    other = await fresh(redis_server, prefix)
    try:
        with pytest.raises(StoreDamagedError, match=f"0 records where revision {rev} has 7"):
            await other.snapshot()
        with pytest.raises(StoreDamagedError, match="0 records"):
            await other.check()
    finally:
        await other.close()
    # A writer that still holds the old snapshot cannot write on top of the hole: the script
    # refuses (nothing is applied, the revision does not move).
    with pytest.raises(StoreDamagedError, match="nothing was applied"):
        await store.apply([dc("dc3")])
    with raw_client(redis_server) as r:
        assert int(r.get(prefix + "revision")) == rev
        assert r.exists(prefix + "records") == 0


async def test_a_non_numeric_revision_is_a_clear_damaged_error_for_reads_and_writes(
    redis_server: RedisServer, redis_pair: tuple[RedisStore, str]
) -> None:
    store, prefix = redis_pair
    rev = await seeded(store)
    with raw_client(redis_server) as r:
        r.set(prefix + "revision", "banana")
    with pytest.raises(StoreDamagedError, match=r"banana.*not a revision number"):
        await store.snapshot()
    with pytest.raises(StoreDamagedError, match="not a revision number"):
        await store.apply([dc("dc3")])
    with pytest.raises(StoreDamagedError, match="not a revision number"):
        await store.check()
    # Repaired by hand to the right number: everything works again.
    with raw_client(redis_server) as r:
        r.set(prefix + "revision", rev)
    cs = await store.apply([dc("dc3")])
    assert cs.revision == rev + 1


@pytest.mark.parametrize("key", ["records", "revision", "digest"])
async def test_a_registry_key_of_the_wrong_type_is_a_damaged_error(
    redis_server: RedisServer, redis_pair: tuple[RedisStore, str], key: str
) -> None:
    store, prefix = redis_pair
    await seeded(store)
    with raw_client(redis_server) as r:
        r.delete(prefix + key)
        r.rpush(prefix + key, "x")  # a list where a hash or a string belongs
    other = await fresh(redis_server, prefix)
    try:
        with pytest.raises(StoreDamagedError, match=r"wrong type|WRONGTYPE"):
            await other.snapshot()
        with pytest.raises(StoreDamagedError):
            await other.apply([dc("dc3")])
    finally:
        await other.close()


async def test_restore_is_allowed_when_the_content_does_not_match_its_digest(
    redis_server: RedisServer, redis_pair: tuple[RedisStore, str]
) -> None:
    store, prefix = redis_pair
    rev = await seeded(store)
    good = await store.snapshot()
    # Intact and not behind: refused.
    with pytest.raises(ConflictError, match="matches its digest"):
        await store.restore(good)
    with raw_client(redis_server) as r:
        r.hset(prefix + "records", f"service\x1f{SVC}", "{broken")
    other = await fresh(redis_server, prefix)
    try:
        with pytest.raises(StoreDamagedError):
            await other.snapshot()
        with raw_client(redis_server) as r:
            assert r.exists(prefix + "damaged") == 1  # left by the load that found it
        restored = await store.restore(good, actor="ops")
        # Not behind, so the restore moves the revision on: no node sees the registry go back.
        assert restored == rev + 1
        with raw_client(redis_server) as r:
            assert r.exists(prefix + "damaged") == 0
        back = await other.snapshot()
        assert back.revision == rev + 1
        assert back.to_dict() | {"revision": 0} == good.to_dict() | {"revision": 0}
        await other.check()
        cs = await other.apply([dc("dc3")])
        assert cs.revision == rev + 2
    finally:
        await other.close()


async def test_restore_after_the_revision_was_lost_but_the_history_kept_goes_past_it(
    redis_server: RedisServer, redis_pair: tuple[RedisStore, str]
) -> None:
    store, prefix = redis_pair
    rev = await seeded(store)
    good = await store.snapshot()
    with raw_client(redis_server) as r:  # as an eviction may leave it: the stream survives
        r.delete(prefix + "revision", prefix + "records", prefix + "digest")
    assert await store.restore(good) == rev + 1
    other = await fresh(redis_server, prefix)
    try:
        back = await other.snapshot()
        assert back.revision == rev + 1 and set(back.endpoints_of(SVC)) == {"e1", "e3"}
        assert (await other.apply([dc("dc3")])).revision == rev + 2
    finally:
        await other.close()


async def test_restore_repairs_keys_of_the_wrong_type(
    redis_server: RedisServer, redis_pair: tuple[RedisStore, str]
) -> None:
    store, prefix = redis_pair
    rev = await seeded(store)
    good = await store.snapshot()
    with raw_client(redis_server) as r:
        r.delete(prefix + "records")
        r.set(prefix + "records", "not a hash")
    assert await store.restore(good) == rev + 1
    other = await fresh(redis_server, prefix)
    try:
        assert set((await other.snapshot()).endpoints_of(SVC)) == {"e1", "e3"}
    finally:
        await other.close()


async def test_garbage_on_the_change_feed_is_skipped_and_the_feed_goes_on(
    redis_server: RedisServer, redis_pair: tuple[RedisStore, str]
) -> None:
    store, prefix = redis_pair
    rev = await seeded(store)
    feed = store.watch(rev)
    pending = asyncio.ensure_future(anext(feed))
    await asyncio.sleep(0.2)  # not a synchronisation: the feed must survive the garbage anyway
    with raw_client(redis_server) as r:
        for junk in (b"not json", b"[1, 2]", b'{"revision": "x"}', b"\xff\xfe"):
            r.publish(prefix + "feed", junk)
    writer = await fresh(redis_server, prefix)
    try:
        await writer.apply([dc("dc3")])
        cs = await asyncio.wait_for(pending, 5)
        assert cs.revision == rev + 1
    finally:
        await writer.close()
        await feed.aclose()  # type: ignore[attr-defined]


# -- refused writes ------------------------------------------------------------------------------


async def test_redis_over_maxmemory_refuses_writes_with_a_clear_error(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "oom").start()
    store = await RedisStore.open(server.url)
    try:
        rev = await seeded(store)
        with raw_client(server) as r:
            r.config_set("maxmemory-policy", "noeviction")
            r.config_set("maxmemory", 1)
        with pytest.raises(StoreFullError, match="Redis refuses writes: maxmemory") as err:
            await store.apply([dc("dc3")])
        assert err.value.status == 503 and err.value.code == "store_full"
        assert "nothing was applied" in err.value.detail
        with raw_client(server) as r:
            assert int(r.get("httpdns:revision")) == rev
            r.config_set("maxmemory", 0)
        assert (await store.apply([dc("dc3")])).revision == rev + 1
    finally:
        await store.close()
        server.stop()


async def test_redis_that_cannot_persist_refuses_writes_saying_misconf(small_disk: Path) -> None:
    server = RedisServer(
        small_disk / "redis", args=("--dir", str(small_disk), "--save", "3600 1")
    ).start()
    store = await RedisStore.open(server.url)
    try:
        rev = await seeded(store)
        fill(small_disk)
        with raw_client(server) as r:
            r.bgsave()
            wait_until(
                lambda: r.info("persistence")["rdb_last_bgsave_status"] == "err", 10, "failed save"
            )
        with pytest.raises(StoreFullError, match="cannot persist to disk") as err:
            await store.apply([dc("dc3")])
        assert "MISCONF" in err.value.detail and "nothing was applied" in err.value.detail
        with raw_client(server) as r:
            assert int(r.get("httpdns:revision")) == rev
    finally:
        await store.close()
        with raw_client(server) as r:
            r.config_set("save", "")  # or its final save fails too and it will not stop
        server.stop()


def test_redis_refusals_map_to_errors_by_kind() -> None:
    misconf = store_error(ResponseError("MISCONF Redis is configured to save RDB snapshots"))
    assert isinstance(misconf, StoreFullError)
    assert "cannot persist to disk" in misconf.detail
    assert isinstance(store_error(ResponseError("OOM command not allowed")), StoreFullError)
    wrong = store_error(ResponseError("WRONGTYPE Operation against a key"), "httpdns:records")
    assert isinstance(wrong, StoreDamagedError) and "httpdns:records" in wrong.detail
    other = store_error(redis.ConnectionError("refused"))
    assert type(other) is StoreUnavailableError


async def test_preflight_warns_when_redis_may_evict_the_registry(
    redis_pair: tuple[RedisStore, str], tmp_path: Path
) -> None:
    store, _ = redis_pair
    assert await store.preflight() == []
    server = RedisServer(tmp_path / "lru", args=("--maxmemory-policy", "allkeys-lru")).start()
    lru = await RedisStore.open(server.url)
    try:
        (warning,) = await lru.preflight()
        assert "allkeys-lru" in warning and "noeviction" in warning
    finally:
        await lru.close()
        server.stop()


@pytest.fixture
def small_disk(tmp_path: Path) -> AsyncIterator[Path]:
    """A 4 MiB tmpfs (the test runs as root here, as the issue asks), unmounted after."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt  # type: ignore[misc]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte; the filler file."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 1):  # big steps first, then to the last byte
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


async def test_sqlite_on_a_full_disk_refuses_writes_saying_disk_full(small_disk: Path) -> None:
    store = await SQLiteStore.open(f"sqlite:///{small_disk}/registry.db")
    try:
        rev = await seeded(store)
        filler = fill(small_disk)
        many = [svc("big.example.com")] + [
            ep(f"x{i}", "dc1", f"10.1.{i // 250}.{i % 250 + 1}", "big.example.com")
            for i in range(3000)
        ]
        with pytest.raises(StoreFullError, match="disk full") as err:
            await store.apply(many)
        assert err.value.status == 503 and "nothing was applied" in err.value.detail
        assert "no transaction is active" not in err.value.detail
        # Nothing was corrupted: reads go on, at the same revision.
        assert (await store.snapshot()).revision == rev
        filler.unlink()
        assert (await store.apply(many)).revision == rev + 1
    finally:
        await store.close()
    again = await SQLiteStore.open(f"sqlite:///{small_disk}/registry.db")
    try:
        await again.check()  # the digest still matches after the failed write
        assert len((await again.snapshot()).endpoints_of("big.example.com")) == 3000
    finally:
        await again.close()


async def test_a_sqlite_file_altered_behind_the_stores_back_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/r.db"
    store = await SQLiteStore.open(url)
    try:
        rev = await seeded(store)
        store._conn.execute(
            "DELETE FROM records WHERE kind = 'endpoint' AND key = ?", (f"{SVC}/e1",)
        )
    finally:
        await store.close()
    damaged = await SQLiteStore.open(url)
    try:
        with pytest.raises(StoreDamagedError, match=f"6 records where revision {rev} has 7"):
            await damaged.snapshot()
        with pytest.raises(StoreDamagedError):
            await damaged.apply([dc("dc3")])
        with pytest.raises(StoreDamagedError):
            await damaged.check()
    finally:
        await damaged.close()


# -- heartbeats (every backend) --------------------------------------------------------------------


async def test_heartbeats_are_listed_expire_by_themselves_and_can_be_removed(
    store: Store,
) -> None:
    await store.heartbeat("a", {"id": "a", "revision": 3}, ttl=30)
    await store.heartbeat("b", {"id": "b", "revision": 4}, ttl=0.3)
    assert [n["id"] for n in await store.nodes()] == ["a", "b"]
    await store.heartbeat("a", {"id": "a", "revision": 5}, ttl=30)  # replaces, not adds
    assert [(n["id"], n["revision"]) for n in await store.nodes()] == [("a", 5), ("b", 4)]

    async def only_a() -> bool:
        return [n["id"] for n in await store.nodes()] == ["a"]

    for _ in range(100):  # b's heartbeat expires by itself
        if await only_a():
            break
        await asyncio.sleep(0.05)
    assert await only_a()
    await store.forget("a")
    assert await store.nodes() == []
    # Heartbeats are not registry content: the revision and the digest are untouched.
    assert (await store.snapshot()).revision == 0
    await store.check()


async def test_a_heartbeats_bulky_part_is_kept_apart_until_replaced_expired_or_forgotten(
    store: Store,
) -> None:
    """A beat without the part (``APART``) leaves the last one in place: nodes send their
    answer counts only when they changed, while their small beats follow every revision."""
    await store.heartbeat("a", {"id": "a", "revision": 1, APART: {"n": 1}}, ttl=30)
    await store.heartbeat("a", {"id": "a", "revision": 2}, ttl=30)
    assert await store.nodes() == [{"id": "a", "revision": 2, APART: {"n": 1}}]
    await store.heartbeat("a", {"id": "a", "revision": 3, APART: {"n": 2}}, ttl=30)
    assert await store.nodes() == [{"id": "a", "revision": 3, APART: {"n": 2}}]
    assert await store.nodes(apart=False) == [{"id": "a", "revision": 3}]  # liveness alone
    # the part lives as long as the beat that carried it said
    await store.heartbeat("a", {"id": "a", "revision": 4, APART: {"n": 3}}, ttl=0.3)
    await store.heartbeat("a", {"id": "a", "revision": 5}, ttl=30)

    async def part_gone() -> bool:
        return await store.nodes() == [{"id": "a", "revision": 5}]

    for _ in range(100):
        if await part_gone():
            break
        await asyncio.sleep(0.05)
    assert await part_gone()
    # forgetting a node drops its part too: a node of that id starting again has none
    await store.heartbeat("a", {"id": "a", "revision": 6, APART: {"n": 4}}, ttl=30)
    await store.forget("a")
    assert await store.nodes() == []
    await store.heartbeat("a", {"id": "a", "revision": 7}, ttl=30)
    assert await store.nodes() == [{"id": "a", "revision": 7}]
