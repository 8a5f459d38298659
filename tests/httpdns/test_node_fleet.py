"""The fleet view in process: the pure helpers, and two nodes heartbeating into one real SQLite
file (the admin route and ``?wait=1`` over the real app)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from httpdns import fleet
from httpdns.node import Node
from httpdns.web import make_app
from registry import Change, Datacenter
from registry.store import APART, open_store

from .conftest import ClientFactory, admin, make_config


@pytest.mark.parametrize(
    ("listener", "url"),
    [
        (("http", "127.0.0.1", 8053), "http://127.0.0.1:8053"),
        (("https", "::1", 8443), "https://[::1]:8443"),
        (("http", "0.0.0.0", 80), f"http://{socket.getfqdn()}:80"),
        (("http", "::", 80), f"http://{socket.getfqdn()}:80"),
    ],
)
def test_public_addresses(listener: tuple[str, str, int], url: str) -> None:
    assert fleet.public_addresses([listener]) == [url]


def test_laggards_are_the_nodes_below_the_revision() -> None:
    nodes = [{"id": "a", "revision": 5}, {"id": "b", "revision": 4}, {"id": "c"}]
    assert [n["id"] for n in fleet.laggards(nodes, 5)] == ["b", "c"]
    assert fleet.laggards(nodes[:1], 5) == []


async def test_two_nodes_on_one_file_see_each_other_and_writes_wait_for_both(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    url = f"sqlite:///{tmp_path}/r.db"
    stores = [await open_store(url), await open_store(url)]
    nodes = [await Node.start(s) for s in stores]
    for i, node in enumerate(nodes):
        node.announce([("http", "127.0.0.1", 9000 + i)], node_id=f"n{i}")
    try:
        client = await aiohttp_client(make_app(nodes[0], make_config()))
        async with asyncio.timeout(5):
            while len((await admin(client, "GET", "/api/v1/nodes"))["nodes"]) < 2:
                await asyncio.sleep(0.02)
        listed = (await admin(client, "GET", "/api/v1/nodes"))["nodes"]
        assert [(n["id"], n["address"], n["status"]) for n in listed] == [
            ("n0", "http://127.0.0.1:9000", "ok"),
            ("n1", "http://127.0.0.1:9001", "ok"),
        ]
        body = await admin(client, "PUT", "/api/v1/datacenters/idc?wait=1", {"kind": "idc"})
        assert body["applied"] == {"nodes": 2, "of": 2}
        assert nodes[1].revision == body["revision"]
        body = await admin(client, "PUT", "/api/v1/datacenters/x?wait=1&timeout=-1", {}, expect=400)
        assert body["error"] == "bad_request" and "timeout" in body["detail"], body
        # A node that stops cleanly removes its heartbeat.
        await nodes[1].stop()
        assert [n["id"] for n in (await admin(client, "GET", "/api/v1/nodes"))["nodes"]] == ["n0"]
    finally:
        for node in nodes:
            await node.stop()
        for s in stores:
            await s.close()


async def test_a_nodes_beats_carry_its_answers_only_when_they_changed(tmp_path: Path) -> None:
    """Published answers (``registry.store.APART``) go with the first beat after they
    changed; the beats that follow each revision leave them out and the store keeps them."""
    store = await open_store(f"sqlite:///{tmp_path}/r.db")
    node = await Node.start(store)
    published = [{"windows": {"60": {"rows": [["a.example", "idc", "v1", "stable", 1]]}}}]
    carried: list[bool] = []
    beat = store.heartbeat

    async def spy(node_id: str, info: dict[str, Any], ttl: float) -> None:
        carried.append(APART in info)
        await beat(node_id, info, ttl)

    store.heartbeat = spy  # type: ignore[method-assign]
    node.announce([("http", "127.0.0.1", 9000)], node_id="n0")
    assert node.fleet is not None
    node.fleet.extras[APART] = lambda: published[0]  # before its first beat (the next step)
    try:
        async with asyncio.timeout(5):
            while not carried:
                await asyncio.sleep(0.01)
        assert carried == [True]
        for name in ("dc1", "dc2", "dc3"):  # each write moves the revision: a beat follows
            before = len(carried)
            await node.write([Change.put(Datacenter(name, "idc"))])
            async with asyncio.timeout(5):
                while len(carried) == before:
                    await asyncio.sleep(0.01)
        assert carried[0] is True and not any(carried[1:]) and len(carried) >= 4
        (listed,) = await store.nodes()
        assert listed[APART] == published[0] and listed["revision"] == node.revision
        published[0] = {"windows": {}}  # a new publication: the next beat carries it
        before = len(carried)
        await node.write([Change.put(Datacenter("dc4", "idc"))])
        async with asyncio.timeout(5):
            while len(carried) == before:
                await asyncio.sleep(0.01)
        assert carried[-1] is True
        assert (await store.nodes())[0][APART] == {"windows": {}}
    finally:
        await node.stop()
        await store.close()
