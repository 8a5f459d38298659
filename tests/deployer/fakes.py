"""An in-memory world for controller tests: a registry store, memory engines per
Docker host, a fake clock and a prober that finds running containers by address."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import AsyncIterator, Callable
from typing import Any

import registry
from deployer import intents
from deployer.analysis import Check
from deployer.config import DeployerConfig
from deployer.controller import Controller
from deployer.engine import MemoryEngine
from deployer.spec import HealthCheck, ReleaseSpec
from registry import Change, Datacenter, Rollout, Service, Snapshot, Store

SERVICE = "api.example.com"

SPEC: dict[str, Any] = {
    "service": SERVICE,
    "image": "app:{version}",
    "command": ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"],
    "port": 8080,
    "replicas": {"idc": 2, "cloud": 1},
    "resources": {"cores": 0.1, "memory": "32m"},
    "health": {
        "http": "/",
        "interval": "1s",
        "timeout": "1s",
        "rise": 2,
        "fall": 2,
        "deadline": "30s",
    },
    "steps": [
        {"percent": 10, "pause": "30s"},
        {"percent": 50, "pause": "manual"},
        {"percent": 100, "pause": "10s"},
    ],
    "rollout": {"propagation": "5s", "bake": "60s"},
}

CONFIG = DeployerConfig.from_dict(
    {
        "dns": ["10.0.0.2"],
        "extra_hosts": {"db.internal": "10.0.0.5"},
        "persist_root": "/srv/persist",
        "datacenters": {
            "idc": {
                "hosts": ["memory://idc-a", "memory://idc-b"],
                "network": "net-idc",
                "pool": "10.1.0.10-10.1.0.20",
            },
            "cloud": {
                "hosts": ["memory://cloud-a"],
                "network": "net-cloud",
                "pool": "10.2.0.0/28",
            },
        },
    },
    env={},
)


def spec(version: str = "v1", **overrides: Any) -> ReleaseSpec:
    raw = copy.deepcopy(SPEC)
    raw.update(overrides)
    return CONFIG.resolve(raw, version)


class Clock:
    """A settable clock (seconds)."""

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class World:
    """A store, engines, a clock and a controller wired together."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.clock = Clock()
        self.engines: dict[str, MemoryEngine] = {}
        self.down: set[str] = set()  # addresses whose probes fail although running
        self.metric: dict[str, float | None] = {}  # analysis check name -> its value now
        self.evaluated: list[tuple[str, int]] = []  # (check, step) per evaluation
        self.controller = self.new_controller()

    @classmethod
    @contextlib.asynccontextmanager
    async def opened(cls, url: str) -> AsyncIterator[World]:
        """A seeded world on the store at ``url``, closed (controller, then store) after."""
        store = await registry.open_store(url)
        w = cls(store)
        await w.seed()
        try:
            yield w
        finally:
            await w.controller.close()
            await store.close()

    def engine(self, host: str) -> MemoryEngine:
        return self.engines.setdefault(host, MemoryEngine(host))

    async def probe(self, address: str, port: int, check: HealthCheck) -> bool | str:
        if address in self.down:  # the reason, as ``health.diagnose`` gives it
            return f"probe {address}:{port}: Connection refused"
        return any(
            c.running and c.address == address
            for e in self.engines.values()
            for c in e.containers.values()
        )

    def new_controller(self) -> Controller:
        """A fresh controller (as after a restart): no memory but the registry."""
        return Controller(
            self.store,
            self.engine,
            clock=self.clock,
            prober=self.probe,
            monotonic=self.clock,
            sweep_every=0.0,
            analyst=self.analyse,
        )

    async def analyse(self, check: Check, r: Rollout, snap: Snapshot) -> float | None:
        """The analysis value the test set for ``check`` (None: no data)."""
        self.evaluated.append((check.name, r.step))
        return self.metric.get(check.name)

    async def seed(self, ttl: int = 10) -> None:
        await self.store.apply(
            [
                Change.put(Datacenter("idc")),
                Change.put(Datacenter("cloud", "cloud", writable=False)),
                Change.put(Service(SERVICE, {"default": {"idc": 70, "cloud": 30}}, ttl=ttl)),
            ]
        )

    async def snap(self) -> Snapshot:
        return await self.store.snapshot()

    async def act(self, fn: Callable[..., list[Change]], *args: Any, **kw: Any) -> None:
        snap = await self.snap()
        await self.store.apply(
            fn(snap, SERVICE, self.clock(), *args, **kw), expected_revision=snap.revision
        )

    async def deploy(self, version: str, **overrides: Any) -> Rollout:
        snap = await self.snap()
        rollout, changes = intents.deploy(snap, spec(version, **overrides), version, self.clock())
        await self.store.apply(changes, expected_revision=snap.revision)
        return rollout

    async def tick(self, seconds: float = 1.0) -> None:
        """Let time pass, then one health round and one reconcile pass."""
        self.clock.t += seconds
        await self.controller.check_health_once()
        await self.controller.reconcile_once()

    async def until(
        self, predicate: Callable[[Snapshot], bool], ticks: int = 200, seconds: float = 1.0
    ) -> Snapshot:
        for _ in range(ticks):
            snap = await self.snap()
            if predicate(snap):
                return snap
            await self.tick(seconds)
        raise AssertionError(f"not reached after {ticks} ticks: {await self.rollout()}")

    async def rollout(self, rid: str | None = None) -> Rollout:
        snap = await self.snap()
        if rid is None:
            found = intents.latest(snap, SERVICE)
            assert found is not None
            return found
        return snap.rollouts[f"{SERVICE}/{rid}"]

    def containers(self) -> dict[str, str]:
        """Every container on every engine: name -> state."""
        return {n: c.state for e in self.engines.values() for n, c in e.containers.items()}

    def created(self) -> int:
        return sum(e.created for e in self.engines.values())


def phase(rid: str, *phases: str) -> Callable[[Snapshot], bool]:
    return lambda snap: snap.rollouts[f"{SERVICE}/{rid}"].phase in phases
