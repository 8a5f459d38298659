"""The deployer's record kinds in every registry backend: rollouts and allocations survive a
reload, travel through the change feed, and never make nodes rebuild their routing tables."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

import registry
from registry import Allocation, Change, ChangeSet, Datacenter, Rollout, Service, Snapshot

SVC = "api.example.com"
_prefix = itertools.count()


@pytest.fixture(params=["sqlite-file", "redis"])
async def opener(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[[], object]]:
    if request.param == "redis":
        url = f"{request.getfixturevalue('redis_server').url}?prefix=dk{next(_prefix)}:"
    else:
        url = f"sqlite:///{tmp_path}/r.db"
    opened: list[registry.Store] = []

    async def open_() -> registry.Store:
        store = await registry.open_store(url)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


def records() -> list[Change]:
    rollout = Rollout(SVC, "r3", "v2", "v1", "canary", 1, 25.5, spec={"steps": [{"p": 1}]},
                      ready={"idc": 2}, drained={"a": 100}, events=({"text": "x"},))  # fmt: skip
    return [
        Change.put(Datacenter("idc")),
        Change.put(Service(SVC, {"default": {"idc": 1}})),
        Change.put(rollout),
        Change.put(Allocation("idc", "10.0.0.7", "c1", SVC, "r3", 5.0)),
    ]


async def test_round_trip_reload_and_feed(opener: Callable[[], object]) -> None:
    writer: registry.Store = await opener()  # type: ignore[misc]
    reader: registry.Store = await opener()  # type: ignore[misc]
    feed = reader.watch(0)
    cs = await writer.apply(records())
    got: ChangeSet = await asyncio.wait_for(anext(feed), 5)
    assert got.revision == cs.revision and got.services is None  # a datacenter was in it
    await writer.apply([Change.put(Allocation("idc", "10.0.0.8", "c2", SVC))])
    got = await asyncio.wait_for(anext(feed), 5)
    assert got.services == frozenset()  # bookkeeping recompiles nothing
    fresh: registry.Store = await opener()  # type: ignore[misc]
    snap = await fresh.snapshot()
    assert snap.rollouts[f"{SVC}/r3"] == records()[2].value
    assert snap.rollouts_of(SVC)[0].spec["steps"][0]["p"] == 1
    assert set(snap.allocations) == {"idc/10.0.0.7", "idc/10.0.0.8"}
    assert Snapshot.load_json(snap.dump_json()) == snap
    assert Snapshot.load(snap.to_dict()) == snap
    with pytest.raises(registry.InUseError):
        await writer.apply([Change.put(Allocation("idc", "10.0.0.7", "other"))])
    with pytest.raises(registry.InUseError):
        await writer.apply([Change.delete("datacenter", "idc"), Change.delete("service", SVC)])
