"""The Redis store's streamed snapshot load (HSCAN in batches, hashed and decoded as it
goes): it reads no HGETALL when the registry is sound, it is of one revision even when a
writer commits during the scan, and a damaged registry is still refused, naming the record.
Real redis-server; the scan is interleaved with real writes through another client."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
from redis.asyncio.connection import AbstractConnection

import registry.redis as rr
from registry import Change
from registry.errors import StoreDamagedError
from registry.redis import RedisStore
from tests.servers import RedisServer

from .test_store_contract import SVC, ep, seed

_prefixes = itertools.count()


def commandstats(server: RedisServer) -> dict[str, int]:
    """How many times redis-server ran each command (INFO commandstats)."""
    with redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=2) as r:
        info = r.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


@pytest.fixture
async def writer(redis_server: RedisServer) -> AsyncIterator[tuple[RedisStore, str]]:
    """A seeded Redis registry with 60 endpoints (many HSCAN batches at a batch of 5)."""
    prefix = f"streamed{next(_prefixes)}:"
    store = await RedisStore.open(f"{redis_server.url}?prefix={prefix}")
    await store.apply(seed())
    await store.apply([ep(f"x{i}", "dc1", f"10.1.0.{i + 1}") for i in range(60)])
    try:
        yield store, prefix
    finally:
        await store.close()


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rr, "SCAN_BATCH", 5)


async def reader(server: RedisServer, prefix: str) -> RedisStore:
    """A client with no cached snapshot: its first ``snapshot()`` is a full load."""
    return await RedisStore.open(f"{server.url}?prefix={prefix}")


async def test_a_sound_registry_loads_by_scan_without_hgetall(
    redis_server: RedisServer, writer: tuple[RedisStore, str]
) -> None:
    store, prefix = writer
    expected = await store.snapshot()
    before = commandstats(redis_server)
    other = await reader(redis_server, prefix)
    try:
        got = await other.snapshot()
    finally:
        await other.close()
    after = commandstats(redis_server)
    assert got == expected
    assert len(got.endpoints[SVC]) == 62
    assert after.get("hgetall", 0) == before.get("hgetall", 0)
    # COUNT is a hint (Redis scans buckets): several batches, not one reply of all 69 records
    assert after["hscan"] - before.get("hscan", 0) > 1


def interleaving(monkeypatch: pytest.MonkeyPatch, write: Any, times: int) -> list[int]:
    """Commit ``write()`` (through another client) after the first HSCAN batch of each of
    the next ``times`` scans, before the next batch is asked for; returns the list the scan
    count is kept in. At the connection: the load sends its commands on one of its own."""
    real = AbstractConnection.send_command
    scans = [0]
    first_batch = [False]

    async def send_command(conn: AbstractConnection, *args: Any, **kw: Any) -> None:
        if args[:1] == ("HSCAN",):
            if args[2] == 0:
                scans[0] += 1
                first_batch[0] = scans[0] <= times
            elif first_batch[0]:  # the first batch is read: now the registry moves
                first_batch[0] = False
                await write()
        await real(conn, *args, **kw)

    monkeypatch.setattr(AbstractConnection, "send_command", send_command)
    return scans


async def test_a_write_during_the_scan_makes_the_load_scan_again(
    redis_server: RedisServer, writer: tuple[RedisStore, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, prefix = writer
    other = await reader(redis_server, prefix)
    n = itertools.count()

    async def write() -> None:
        i = next(n)
        await store.apply(
            [ep(f"late{i}", "dc1", f"10.2.0.{i + 1}"), Change.delete("endpoint", f"{SVC}/x{i}")]
        )

    scans = interleaving(monkeypatch, write, times=1)
    try:
        got = await other.snapshot()
    finally:
        await other.close()
    assert scans[0] == 2  # the first scan saw a moving registry and was repeated
    assert got == await store.snapshot()  # exactly the registry at the new revision
    assert "late0" in got.endpoints[SVC] and "x0" not in got.endpoints[SVC]


async def test_a_registry_that_keeps_moving_is_read_atomically_at_last(
    redis_server: RedisServer, writer: tuple[RedisStore, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, prefix = writer
    other = await reader(redis_server, prefix)
    n = itertools.count()

    async def write() -> None:
        i = next(n)
        await store.apply([ep(f"late{i}", "dc1", f"10.2.0.{i + 1}")])

    scans = interleaving(monkeypatch, write, times=1000)
    before = commandstats(redis_server)
    try:
        got = await other.snapshot()
    finally:
        await other.close()
    assert scans[0] == rr.SCAN_ATTEMPTS
    assert commandstats(redis_server)["hgetall"] == before.get("hgetall", 0) + 1
    assert got == await store.snapshot()
    assert got.revision == (await store.snapshot()).revision


async def test_a_corrupt_record_refuses_the_streamed_load_naming_it(
    redis_server: RedisServer, writer: tuple[RedisStore, str]
) -> None:
    _store, prefix = writer
    with redis.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=2) as r:
        r.hset(prefix + "records", f"endpoint\x1f{SVC}/x7", b"{not json")
    other = await reader(redis_server, prefix)
    try:
        with pytest.raises(StoreDamagedError, match=f"endpoint/{SVC}/x7"):
            await other.snapshot()
    finally:
        await other.close()
