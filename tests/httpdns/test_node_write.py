"""Node.write: a batch the caller validated is adopted as made, only when it is committed
right on top of the registry it was made from."""

from __future__ import annotations

from pathlib import Path

from httpdns.node import Node
from registry.changes import Change
from registry.model import Datacenter, Service
from registry.store import open_store


async def test_a_prepared_registry_is_adopted_only_on_its_own_base(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/r.db")
    node = await Node.start(store)
    other = await open_store(f"sqlite:///{tmp_path}/r.db")
    try:
        await node.write([Change.put(Datacenter("idc"))])
        svc = Service("www.example.org", {"default": {"idc": 100}})
        before = node.table.snapshot
        after, _ = before.apply([Change.put(svc)], before.revision + 1)
        await node.write([Change.put(svc)], prepared=(before, after))
        assert node.table.snapshot is after  # adopted: not applied a second time
        assert node.table.snapshot.to_dict() == (await other.snapshot()).to_dict()
        # made from a registry that is no longer the node's: applied as committed instead
        stale, _ = before.apply([Change.put(Datacenter("cloud", "cloud"))], before.revision + 1)
        moved = Service("www.example.org", {"default": {"idc": 50}})
        await node.write([Change.put(moved)], prepared=(before, stale))
        assert node.table.snapshot is not stale
        assert "cloud" not in node.table.snapshot.datacenters
        assert node.table.snapshot.services["www.example.org"] == moved
        assert node.table.snapshot.to_dict() == (await other.snapshot()).to_dict()
    finally:
        await node.stop()
        await store.close()
        await other.close()
