"""A node over a registry loaded lazily (registry/lazy.py): it starts without decoding
its services, decodes one when it is first asked for, compiles it exactly as from an
eager load, and health's look goes through every service in its budgeted passes.
Real SQLite file."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest

from httpdns import node as node_module
from httpdns.impact import answering_empty, looked_at_all
from httpdns.node import Node
from httpdns.table import Client, RoutingTable
from registry.changes import Change
from registry.lazy import LazyRecords
from registry.model import Datacenter, Endpoint, Release, Service
from registry.snapshot import Snapshot
from registry.store import open_store

N = 40


def registry() -> list[Change]:
    out = [Change.put(Datacenter("idc")), Change.put(Datacenter("cloud", "cloud"))]
    for i in range(N):
        name = f"s{i}.example.org"
        # every fifth service routes to a datacenter without endpoints: answers empty
        table = {"cloud": 100} if i % 5 == 0 else {"idc": 70, "cloud": 30}
        out.append(Change.put(Service(name, {"default": table})))
        out.append(Change.put(Endpoint(name, "a", "idc", f"10.0.{i}.1")))
        out.append(Change.put(Endpoint(name, "b", "idc", f"10.0.{i}.2", weight=50)))
        out.append(Change.put(Release(name, stable="v1")))
    return out


def raw(snap: Snapshot) -> tuple[int, int, int]:
    counts = []
    for mapping in (snap.services, snap.endpoints, snap.releases):
        assert isinstance(mapping, LazyRecords)
        counts.append(mapping.undecoded())
    return counts[0], counts[1], counts[2]


async def test_a_node_decodes_a_service_on_its_first_query_and_health_looks_at_all(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/r.db"
    writer = await open_store(url)
    await writer.apply(registry())
    eager = RoutingTable(await writer.snapshot())  # the writer's own, decoded snapshot
    await writer.close()
    store = await open_store(url)
    node = await Node.start(store)
    try:
        snap = node.table.snapshot
        assert raw(snap) == (N, N, N)  # nothing decoded by the start (no await since)
        client = Client.of("192.0.2.7")
        got = node.table.resolve("s3.example.org", 1, client)
        assert got == eager.resolve("s3.example.org", 1, client)
        assert raw(snap) == (N - 1, N - 1, N - 1)
        for i in range(N):  # each compiled as from the eager load
            name = f"s{i}.example.org"
            assert node.table.compiled(name) == eager.compiled(name)
        # health's look, spread over its passes, has seen every service
        async with asyncio.timeout(10):
            while not looked_at_all(node.table):
                await asyncio.sleep(0.01)
        expected = {f"s{i}.example.org": ["default"] for i in range(0, N, 5)}
        assert answering_empty(node.table) == answering_empty(eager) == expected
    finally:
        await node.stop()
        await store.close()


async def test_a_write_through_a_lazily_loaded_node_is_validated_and_shown(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/r.db"
    writer = await open_store(url)
    await writer.apply(registry())
    await writer.close()
    store = await open_store(url)
    node = await Node.start(store)
    try:
        name = "s7.example.org"
        moved = Service(name, {"default": {"cloud": 100}})
        await node.write([Change.put(moved)])
        assert node.table.snapshot.services[name] == moved
        assert node.table.compiled(name).tables["default"][0][0] == "cloud"  # type: ignore[union-attr]
        bad = Endpoint(name, "c", "nowhere", "10.9.9.9")
        try:
            await node.write([Change.put(bad)])
        except Exception as exc:  # the registry's own refusal, as from an eager load
            assert "nowhere" in str(exc)
        else:
            raise AssertionError("an endpoint in an unknown datacenter was accepted")
        assert "c" not in node.table.snapshot.endpoints_of(name)
    finally:
        await node.stop()
        await store.close()


async def test_a_large_registrys_look_moves_what_it_decoded_out_of_the_collectors_reach(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(node_module, "FREEZE_MIN", N)  # this registry counts as large
    url = f"sqlite:///{tmp_path}/r.db"
    writer = await open_store(url)
    await writer.apply(registry())
    await writer.close()
    store = await open_store(url)
    gc.unfreeze()
    node = await Node.start(store)
    try:
        async with asyncio.timeout(10):
            while not looked_at_all(node.table):
                await asyncio.sleep(0.01)
        assert gc.get_freeze_count() > 0
        record = node.table.snapshot.endpoints["s9.example.org"]["a"]
        assert gc.is_tracked(record)  # a record the pass decoded, in no generation: frozen
        for generation in (0, 1, 2):
            assert all(o is not record for o in gc.get_objects(generation))
    finally:
        gc.unfreeze()
        await node.stop()
        await store.close()
