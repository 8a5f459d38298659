"""Address pools, allocation through the registry (racing deployers) and MAC = f(IP)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import registry
from deployer.addresses import Pool, allocate, mac_for, pick, release_changes
from deployer.errors import PoolExhaustedError, SpecError
from registry import Allocation, Change, Datacenter, InUseError


def test_mac_is_02_42_and_the_ip_octets() -> None:
    assert mac_for("10.231.1.10") == "02:42:0a:e7:01:0a"
    assert mac_for("192.168.255.1") == "02:42:c0:a8:ff:01"
    assert len({mac_for(f"10.0.0.{i}") for i in range(256)}) == 256  # one MAC per IP


def test_pools() -> None:
    assert list(Pool.parse("p", "10.0.0.10-10.0.0.12")) == ["10.0.0.10", "10.0.0.11", "10.0.0.12"]
    cidr = Pool.parse("p", "10.0.0.0/29")  # .1 is the gateway, .7 the broadcast
    assert list(cidr) == [f"10.0.0.{i}" for i in range(2, 7)]
    assert "10.0.0.3" in cidr and "10.0.0.1" not in cidr and cidr.size == 5
    for bad in ("10.0.0.5", "10.0.0.9-10.0.0.1", "10.0.0.1/33", "x-y", "", "10.0.0.0/31"):
        with pytest.raises(SpecError):
            Pool.parse("p", bad)


async def test_allocation_is_idempotent_per_owner_and_exhausts() -> None:
    store = await registry.open_store("sqlite://:memory:")
    try:
        await store.apply([Change.put(Datacenter("idc"))])
        pool = Pool.parse("p", "10.0.0.10-10.0.0.12")
        got = await allocate(store, "idc", pool, ["a", "b"], clock=lambda: 1.0)
        assert got == {"a": "10.0.0.10", "b": "10.0.0.11"}
        again = await allocate(store, "idc", pool, ["b", "a", "c"], clock=lambda: 2.0)
        assert again == {"a": "10.0.0.10", "b": "10.0.0.11", "c": "10.0.0.12"}
        with pytest.raises(PoolExhaustedError):
            await allocate(store, "idc", pool, ["d"], clock=lambda: 3.0)
        snap = await store.snapshot()
        await store.apply(release_changes(snap, ["a"]))  # returned when the container goes
        got = await allocate(store, "idc", pool, ["d"], clock=lambda: 4.0)
        assert got == {"d": "10.0.0.10"}
    finally:
        await store.close()


async def test_the_registry_refuses_a_second_owner_for_an_address() -> None:
    store = await registry.open_store("sqlite://:memory:")
    try:
        await store.apply([Change.put(Datacenter("idc"))])
        await store.apply([Change.put(Allocation("idc", "10.0.0.1", "a"))])
        with pytest.raises(InUseError):
            await store.apply([Change.put(Allocation("idc", "10.0.0.1", "b"))])
        await store.apply([Change.put(Allocation("idc", "10.0.0.1", "a", time=5.0))])  # same owner
    finally:
        await store.close()


async def test_two_racing_deployers_never_share_an_address(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/r.db"
    a, b = await registry.open_store(url), await registry.open_store(url)
    try:
        await a.apply([Change.put(Datacenter("idc"))])
        pool = Pool.parse("p", "10.0.0.0/24")

        async def deployer(store: registry.Store, name: str) -> dict[str, str]:
            out: dict[str, str] = {}
            for i in range(15):  # one container at a time: many interleavings
                out.update(await allocate(store, "idc", pool, [f"{name}-{i}"], clock=lambda: 0.0))
            return out

        got_a, got_b = await asyncio.gather(deployer(a, "a"), deployer(b, "b"))
        addresses = list(got_a.values()) + list(got_b.values())
        assert len(addresses) == 30 == len(set(addresses))
        snap = await a.snapshot()
        assert {x.owner: x.address for x in snap.allocations.values()} == {**got_a, **got_b}
    finally:
        await a.close()
        await b.close()


def test_pick_prefers_what_an_owner_holds() -> None:
    snap, _ = registry.Snapshot().apply(
        [Change.put(Datacenter("idc")), Change.put(Allocation("idc", "10.0.0.11", "x"))], 1
    )
    assert pick(snap, "idc", Pool.parse("p", "10.0.0.10-10.0.0.12"), ["y", "x"]) == {
        "x": "10.0.0.11", "y": "10.0.0.10"
    }  # fmt: skip
