"""A controller's liveness lives in the store's expiring entries, not in the registry: its
passes leave the revision and the audit log alone, the fleet view of DNS nodes does not
list it, and ``rolling status`` still tells a running controller from a stopped one.

Real SQLite files and a real redis-server; the process test runs ``httpdns serve`` and
``rolling controller`` as subprocesses (memory:// engines: no Docker needed there)."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import registry
from deployer.cli import main
from deployer.status import controllers as status_of
from registry import Change, Datacenter, Heartbeat, Service
from registry.liveness import controllers, dns_nodes
from tests.deployer.fakes import SERVICE, World, phase
from tests.servers import Node, admin_call, httpdns_command, wait_until

_prefixes = itertools.count()


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL of each backend: a SQLite file, a key prefix on the real redis-server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/r.db"
    server = request.getfixturevalue("redis_server")
    return f"{server.url}?prefix=liveness{next(_prefixes)}:"


@pytest.fixture
async def world(url: str) -> AsyncIterator[World]:
    async with World.opened(url) as w:
        yield w


# -- in process: the controller against memory engines ----------------------------------------


async def test_passes_leave_the_registry_revision_and_the_audit_log_alone(world: World) -> None:
    r = await world.deploy("v1")
    await world.until(phase(r.id, "done"))  # a service the controller heals on every pass
    snap = await world.snap()
    audit = [(cs.revision, cs.changes) for cs in await world.store.audit(0, 100_000)]
    seen = []
    for _ in range(5):
        await world.tick()  # one second of the controller's clock: each pass is recorded
        (entry,) = controllers(await world.store.nodes())
        seen.append(entry["time"])
    assert seen == [world.clock() - 4 + i for i in range(5)]
    assert entry == {"kind": "controller", "id": world.controller.name, "time": world.clock(),
                     "every": 1.0, "actor": "rolling-controller"}  # fmt: skip
    after = await world.snap()
    assert after.revision == snap.revision and after.heartbeats == {}
    assert [(cs.revision, cs.changes) for cs in await world.store.audit(0, 100_000)] == audit
    assert dns_nodes(await world.store.nodes()) == []  # not a DNS node of the fleet
    running = status_of(await world.store.nodes(), world.clock())
    assert running["running"] is True and running["last_reconcile"] == world.clock()
    stopped = status_of(await world.store.nodes(), world.clock() + 3.5)
    assert stopped["running"] is False and stopped["controllers"][0]["age"] == 3.5


async def test_heartbeat_records_of_earlier_controllers_are_deleted_once(world: World) -> None:
    await world.store.apply([Change.put(Heartbeat("old-1", world.clock() - 5000, 1.0)),
                             Change.put(Heartbeat("old-2", world.clock() - 9, 1.0))])  # fmt: skip
    before = (await world.snap()).revision
    await world.tick()
    snap = await world.snap()
    assert snap.heartbeats == {} and snap.revision == before + 1
    (cs,) = await world.store.audit(before)
    assert sorted((c.op, c.kind, c.key) for c in cs.changes) == [
        ("delete", "heartbeat", "old-1"), ("delete", "heartbeat", "old-2")]  # fmt: skip
    for _ in range(3):
        await world.tick()
    assert (await world.snap()).revision == before + 1


# -- processes: httpdns serve, rolling controller, the CLIs -----------------------------------

CONFIG = """
[datacenters.idc]
hosts = ["memory://idc"]
network = "n-idc"
pool = "10.1.0.10-10.1.0.20"
"""


async def _seed(url: str) -> None:
    store = await registry.open_store(url)
    try:
        await store.apply([Change.put(Datacenter("idc")),
                           Change.put(Service(SERVICE, {"default": {"idc": 1}}))])  # fmt: skip
    finally:
        await store.close()


async def _registry(url: str) -> tuple[int, list[int], list[dict[str, Any]]]:
    """The revision, the audit log's revisions and the liveness entries of the store."""
    store = await registry.open_store(url)
    try:
        snap = await store.snapshot()
        audit = [cs.revision for cs in await store.audit(0, 100_000)]
        return snap.revision, audit, await store.nodes()
    finally:
        await store.close()


class Rig:
    """A node and controllers on one store."""

    def __init__(self, url: str, workdir: Path) -> None:
        self.url = url
        self.workdir = workdir
        self.config = workdir / "rolling.toml"
        self.config.write_text(CONFIG)
        self.node = Node(url, workdir / "node")
        self.controller: subprocess.Popen[bytes] | None = None

    def start_controller(self) -> None:
        with open(self.workdir / "controller.log", "ab") as log:
            self.controller = subprocess.Popen(
                [sys.executable, "-m", "deployer.cli", "--store", self.url, "--config",
                 str(self.config), "controller", "--interval", "0.1"],
                stdout=log, stderr=log,
            )  # fmt: skip

    def stop_controller(self, sig: signal.Signals) -> None:
        assert self.controller is not None
        self.controller.send_signal(sig)
        assert self.controller.wait(20) in (0, -signal.SIGKILL)
        self.controller = None

    def status(self) -> str:
        env = {"ROLLING_STORE": self.url, "ROLLING_CONFIG": str(self.config), "COLUMNS": "200"}
        result = CliRunner().invoke(main, ["status"], env=env)
        assert result.exit_code == 0, result.output
        return result.output

    def entry(self) -> dict[str, Any] | None:
        found = controllers(asyncio.run(_registry(self.url))[2])
        return found[0] if len(found) == 1 else None

    def httpdns(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*httpdns_command(), "--server", self.node.url, "--token", "T",
                               *args], capture_output=True, text=True, timeout=60, check=False)  # fmt: skip

    def until_stopped(self) -> float:
        """Seconds until ``rolling status`` says the controller is not running."""
        since = time.monotonic()
        wait_until(lambda: "controller not running: the last reconcile was" in self.status(),
                   10, "status to notice")  # fmt: skip
        return time.monotonic() - since

    def close(self) -> None:
        if self.controller is not None:
            self.stop_controller(signal.SIGKILL)
        self.node.stop()


@pytest.fixture
def rig(url: str, tmp_path: Path) -> Iterator[Rig]:
    asyncio.run(_seed(url))
    r = Rig(url, tmp_path)
    try:
        r.node.start()
        yield r
    finally:
        r.close()


def test_the_fleet_leaves_the_controller_out_and_status_sees_it_stop(rig: Rig) -> None:
    rig.start_controller()
    wait_until(lambda: "controller: " in rig.status(), 20, "the controller's first pass")
    first = rig.entry()
    assert first is not None and first["kind"] == "controller"
    revision, audit, _ = asyncio.run(_registry(rig.url))
    # three more recorded passes (heartbeats every max(interval, 1 s)): nothing written
    wait_until(lambda: (rig.entry() or first)["time"] >= first["time"] + 3, 10, "3 passes")
    again, audit_again, entries = asyncio.run(_registry(rig.url))
    assert (again, audit_again) == (revision, audit)
    assert len(entries) == 2  # the node's and the controller's, in one store

    status, body = admin_call(rig.node.url, "GET", "/api/v1/nodes")
    assert status == 200 and isinstance(body, dict)
    assert [n["address"] for n in body["nodes"]] == [rig.node.url]
    listed = rig.httpdns("--json", "nodes")
    assert listed.returncode == 0, listed.stderr
    assert [n["id"] for n in json.loads(listed.stdout)["nodes"]] == [body["nodes"][0]["id"]]
    waited = rig.httpdns("wait", "--timeout", "10")  # a controller applies no revision
    assert waited.returncode == 0 and "all 1 nodes have applied" in waited.stdout, waited.stderr
    status, put = admin_call(rig.node.url, "PUT", "/api/v1/datacenters/cloud?wait=1&timeout=10",
                             {"kind": "cloud"})  # fmt: skip
    assert status in (200, 201) and isinstance(put, dict), put
    assert put["applied"] == {"nodes": 1, "of": 1}
    assert f"controller: {first['id']} reconciled" in rig.status()

    rig.stop_controller(signal.SIGKILL)
    noticed = rig.until_stopped()
    print(f"status said 'controller not running' {noticed:.2f}s after the kill")
    assert noticed <= 3 * 1.0 + 1.5  # heartbeats every max(interval, 1 s)
    assert f"({first['id']})" in rig.status()

    # A clean stop keeps the entry (it expires a day later): status still says so.
    rig.start_controller()
    wait_until(lambda: "controller: " in rig.status(), 20, "a second controller")
    rig.stop_controller(signal.SIGTERM)
    assert rig.until_stopped() <= 3 * 1.0 + 1.5
    assert len(controllers(asyncio.run(_registry(rig.url))[2])) == 2  # both, by name
