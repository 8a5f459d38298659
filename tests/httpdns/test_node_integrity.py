"""A node's follow loop, health states and store errors, in process over real SQLite stores.

The follow loop is also tested against a store wrapper that raises what no backend is
expected to raise (a bug, a library surprise): the loop is the logic under test, and it must
survive anything. Every other test uses a plain SQLite store."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import pytest

from httpdns import dnswire
from httpdns.config import Config
from httpdns.node import Node, RateLimitedLog
from httpdns.snapshotfile import SnapshotFile
from httpdns.table import Client
from httpdns.web import make_app
from registry import Change, ChangeSet, Datacenter, Service, Snapshot, Store
from registry.errors import StoreDamagedError
from registry.store import open_store
from tests.registry.test_integrity import fill, small_disk  # noqa: F401 (a fixture)

from .conftest import ADMIN, ClientFactory, admin, make_config

WAIT = 5.0


class Flaky:
    """A real store whose ``watch`` first raises each exception in ``errors``, in turn."""

    def __init__(self, store: Store, errors: Sequence[BaseException]) -> None:
        self.store = store
        self.errors = list(errors)
        self.watches = 0

    async def snapshot(self) -> Snapshot:
        return await self.store.snapshot()

    async def apply(self, changes: Sequence[Change], **kw: Any) -> ChangeSet:
        return await self.store.apply(changes, **kw)

    async def watch(self, from_revision: int) -> AsyncIterator[ChangeSet]:
        self.watches += 1
        if self.errors:
            raise self.errors.pop(0)
        async for cs in self.store.watch(from_revision):
            yield cs

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def until(predicate: Any, what: str, timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def dc(name: str) -> Change:
    return Change.put(Datacenter.from_dict(name, {}))


async def test_the_follow_loop_survives_any_exception_and_returns_to_ok_by_itself(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path}/r.db"
    real = await open_store(url)
    writer = await open_store(url)  # another process's store, writing the same file
    errors = [RuntimeError("surprise"), KeyError("cs"), ValueError("bad"), TypeError("odd")]
    flaky = Flaky(real, errors)
    node = await Node.start(flaky)  # type: ignore[arg-type]
    try:
        await until(lambda: node.status == "degraded", "degraded")
        health = node.health()
        assert health["status"] == "degraded"
        assert any("cannot follow the store" in r for r in health["reasons"]), health
        # It retries with backoff (never dies) and comes back by itself.
        await until(lambda: node.status == "ok" and flaky.watches > len(errors), "ok again")
        assert node.health()["reasons"] == []
        # ... and follows: a commit by another writer reaches the table.
        cs = await writer.apply([dc("late")])
        await node.wait_for(cs.revision, WAIT)
        assert "late" in node.table.snapshot.datacenters
    finally:
        await node.stop()
        await writer.close()
        await real.close()
    # Four failures within two seconds or so: logged once (rate-limited), with the traceback.
    lines = [r for r in caplog.records if "cannot follow the store" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].exc_info is not None


def test_the_rate_limited_log_counts_what_it_held_back(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limited = RateLimitedLog(every=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="httpdns.node"):
        for _ in range(5):
            limited("x", logging.WARNING, "trouble %s", "here")
        now[0] = 11.0
        limited("x", logging.WARNING, "trouble %s", "again")
        limited("y", logging.WARNING, "other")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "trouble here",
        "trouble again (4 more like it since the last report)",
        "other",
    ]


async def damaged_file(tmp_path: Path) -> tuple[str, Snapshot]:
    """A SQLite registry with one record removed behind the store's back; the good copy."""
    url = f"sqlite:///{tmp_path}/r.db"
    store = await open_store(url)
    try:
        await store.apply([dc("idc")])
        await store.apply(
            [Change.put(Service.from_dict("a.example.org", {"traffic": {"default": {"idc": 1}}}))]
        )
        good = await store.snapshot()
    finally:
        await store.close()
    with sqlite3.connect(f"{tmp_path}/r.db") as conn:
        conn.execute("DELETE FROM records WHERE kind = 'service'")
    return url, good


async def test_a_node_with_nothing_to_serve_is_unavailable_503(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    url, _good = await damaged_file(tmp_path)
    store = await open_store(url)
    node = await Node.start(store)
    try:
        health = node.health()
        assert (health["status"], health["started_from"], health["store"]) == (
            "unavailable",
            "nothing",
            "damaged",
        )
        assert "1 records where revision 2 has 2" in " ".join(health["reasons"])
        client = await aiohttp_client(make_app(node, make_config()))
        resp = await client.get("/healthz")
        assert resp.status == 503 and (await resp.json())["status"] == "unavailable"
        body = await admin(client, "PUT", "/api/v1/datacenters/x", {}, expect=503)
        assert body["error"] == "store_damaged"
        # Queries fail rather than answer "nothing here": a client asks another node instead
        # of caching an empty answer, a resolver gets SERVFAIL (it tries another server).
        for path in ("/d?dn=a.example.org", "/resolve?name=a.example.org&type=A",
                     "/100000/d?host=a.example.org"):  # fmt: skip
            resp = await client.get(path)
            assert resp.status == 503, path
            assert (await resp.json())["error"] == "unavailable", path
        query = dns.message.make_query("a.example.org", "A").to_wire()
        out = dnswire.answer(query, node.table, make_config(), lambda ecs: Client.of("192.0.2.9"))
        assert dns.message.from_wire(out.wire).rcode() == dns.rcode.SERVFAIL
    finally:
        await node.stop()
        await store.close()


async def test_a_damaged_store_is_never_adopted_the_local_snapshot_is_served(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    url, good = await damaged_file(tmp_path)
    snapshot_file = SnapshotFile(tmp_path / "snap.json")
    snapshot_file.write(good)
    store = await open_store(url)
    node = await Node.start(store, snapshot_file=snapshot_file)
    try:
        health = node.health()
        assert (health["status"], health["started_from"]) == ("degraded", "local snapshot")
        assert health["services"] == 1 and health["revision"] == good.revision
        client = await aiohttp_client(make_app(node, make_config()))
        resp = await client.get("/healthz")
        assert resp.status == 200
        resp = await client.get("/resolve?name=a.example.org&type=A")
        assert resp.status == 200
        body = await admin(client, "PUT", "/api/v1/datacenters/x", {}, expect=503)
        assert body["error"] == "store_damaged" and "restore" in body["detail"]
        with pytest.raises(StoreDamagedError):
            await store.apply([dc("y")])
    finally:
        await node.stop()
        await store.close()


async def test_a_full_disk_under_sqlite_is_a_json_503_naming_it_and_health_says_degraded(
    small_disk: Path,  # noqa: F811 (the fixture)
    aiohttp_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = await open_store(f"sqlite:///{small_disk}/registry.db")
    node = await Node.start(store)
    config: Config = make_config()
    try:
        client = await aiohttp_client(make_app(node, config))
        await admin(client, "PUT", "/api/v1/datacenters/idc", {"kind": "idc"})
        filler = fill(small_disk)
        labels = {f"k{i}": "v" * 200 for i in range(60)}
        body: dict[str, Any] = {}
        for i in range(200):  # until the file must grow (the WAL may have room at first)
            body = await admin(
                client, "PUT", f"/api/v1/datacenters/d{i}", {"labels": labels}, expect=None
            )
            if body["_status"] != 201:
                break
        assert body["_status"] == 503, body
        assert body["error"] == "store_full" and "disk full" in body["detail"], body
        assert "no transaction is active" not in body["detail"]
        assert any("disk full" in r.getMessage() for r in caplog.records)
        # still answering (200), but writes cannot land: degraded, saying why
        resp = await client.get("/healthz", headers=ADMIN)
        health = await resp.json()
        assert resp.status == 200 and health["status"] == "degraded", health
        assert any("refuses writes" in r and "disk full" in r for r in health["reasons"]), health
        filler.unlink()
        await admin(client, "PUT", "/api/v1/datacenters/after", {})
        resp = await client.get("/healthz", headers=ADMIN)
        assert (await resp.json())["status"] == "ok"  # the next write that lands clears it
    finally:
        await node.stop()
        await store.close()
