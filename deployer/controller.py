"""The rollout controller: a reconcile loop whose whole state lives in the registry.

Each pass reads a snapshot, and for every service with a live rollout: allocates
the addresses its containers need (compare-and-set), lists the service's containers
on its Docker hosts (by label), asks the state machine (``rollout.advance``) for the
next step, starts and removes containers, and writes the registry changes together
with the new rollout record under the snapshot's revision. A conflict (someone else
wrote) just means the step is recomputed on the next pass.

Kill it at any moment and start it again: container names are deterministic, so a
container created before the crash is found instead of duplicated; allocations are
keyed by container name, so addresses are reused; and a sweep removes containers
(and frees addresses) that no live rollout and no registered endpoint accounts for.

A second task health-checks every endpoint of the services rolling manages (all
services with ``check_all``) and the containers of rollouts that are starting, and
writes ``healthy`` flips to the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace

from registry.changes import Change
from registry.errors import ConflictError, RegistryError
from registry.model import Rollout
from registry.snapshot import Snapshot
from registry.store import Store

from . import addresses, container
from .engine import Container, Engine
from .errors import DeployerError, EngineError
from .health import Monitor, Probe, Target, probe
from .intents import prune
from .rollout import ABORT, STARTING, Facts, advance, is_live, note
from .spec import HealthCheck, ReleaseSpec

log = logging.getLogger("rolling.controller")

EngineFactory = Callable[[str], Engine]


def docker_engines(host: str) -> Engine:
    """The default engine factory: one Docker client per host URL."""
    from .docker_engine import DockerEngine

    return DockerEngine(host)


class Controller:
    """Reconciles rollouts and health against the registry and the Docker hosts."""

    def __init__(
        self,
        store: Store,
        engines: EngineFactory = docker_engines,
        *,
        clock: Callable[[], float] = time.time,
        prober: Probe = probe,
        monotonic: Callable[[], float] = time.monotonic,
        interval: float = 1.0,
        health_interval: float = 0.2,
        sweep_every: float = 10.0,
        check_all: bool = False,
        actor: str = "rolling-controller",
    ) -> None:
        self.store = store
        self._factory = engines
        self._engines: dict[str, Engine] = {}
        self._clock = clock
        self._monotonic = monotonic
        self.monitor = Monitor(prober, monotonic)
        self.interval = interval
        self.health_interval = health_interval
        self.sweep_every = sweep_every
        self.check_all = check_all
        self.actor = actor
        self._last_sweep = float("-inf")

    # -- running ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Reconcile and health-check until ``stop`` is set."""
        health = asyncio.create_task(self._loop(self.check_health_once, self.health_interval, stop))
        try:
            await self._loop(self.reconcile_once, self.interval, stop)
        finally:
            health.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await health
            await self.close()

    async def _loop(
        self, fn: Callable[[], Awaitable[object]], period: float, stop: asyncio.Event
    ) -> None:
        while not stop.is_set():
            try:
                await fn()
            except (RegistryError, DeployerError) as exc:
                log.warning("%s: %s", getattr(fn, "__name__", "pass"), exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period)

    async def close(self) -> None:
        """Close every engine."""
        for engine in self._engines.values():
            with contextlib.suppress(DeployerError):
                await engine.close()
        self._engines.clear()

    def engine(self, host: str) -> Engine:
        """The engine of ``host`` (created on first use)."""
        if host not in self._engines:
            self._engines[host] = self._factory(host)
        return self._engines[host]

    # -- reconciling ----------------------------------------------------------------------------

    async def reconcile_once(self) -> None:
        """One pass over every service with a live rollout (and a sweep when due)."""
        snap = await self.store.snapshot()
        live = sorted({r.service for r in snap.rollouts.values() if is_live(r)})
        for service in live:
            try:
                await self._reconcile_service(service)
            except (RegistryError, DeployerError) as exc:
                log.warning("%s: %s", service, exc)
        if self._monotonic() - self._last_sweep >= self.sweep_every:
            self._last_sweep = self._monotonic()
            managed = sorted({r.service for r in snap.rollouts.values()})
            for service in managed:
                try:
                    await self.sweep(service)
                except (RegistryError, DeployerError) as exc:
                    log.warning("sweep %s: %s", service, exc)

    async def _reconcile_service(self, service: str) -> None:
        snap = await self.store.snapshot()
        live = [r for r in snap.rollouts_of(service) if is_live(r)]
        for i, r in enumerate(live):
            await self._reconcile(r.key, waiting_for=live[0].id if i else None)

    async def _reconcile(self, key: str, waiting_for: str | None) -> None:
        snap = await self.store.snapshot()
        r = snap.rollouts.get(key)
        if r is None or not is_live(r):
            return
        spec = ReleaseSpec.from_dict(r.spec)
        if r.phase == STARTING and r.intent is None:
            try:
                if await self._allocate(snap, r, spec):
                    snap = await self.store.snapshot()
                    r = snap.rollouts[key]
            except DeployerError as exc:  # the pool is exhausted: nothing will ever start
                aborted = note(r, self._clock(), f"abort: {exc.detail}", intent=ABORT)
                await self._write(snap, [Change.put(aborted)])
                return
        observed = await self._observe(snap, r.service)
        facts = Facts(
            rollout=r,
            spec=spec,
            now=self._clock(),
            ttl=snap.services[r.service].ttl if r.service in snap.services else 0,
            release=snap.releases.get(r.service),
            endpoints=snap.endpoints_of(r.service),
            containers=observed,
            allocations={a.owner: a for a in snap.allocations.values() if a.service == r.service},
            healthy=self._health_of(r, spec, snap),
            waiting_for=waiting_for,
        )
        plan = advance(facts)
        rollout = plan.rollout
        problem = await self._act(spec, r, plan.start, plan.remove, facts)
        if problem and rollout.message != problem:
            rollout = replace(rollout, message=problem)
        if replace(plan, rollout=rollout).writes(r):
            changes = [*plan.changes, Change.put(rollout)]
            if not is_live(rollout):
                after, _ = snap.apply(changes, snap.revision + 1)
                changes += prune(after, r.service)
                log.info("%s %s of %s: %s", r.service, r.id, r.version, rollout.phase)
            await self._write(snap, changes)

    async def _act(
        self, spec: ReleaseSpec, r: Rollout, start: Iterable[str], remove: Iterable[str], f: Facts
    ) -> str | None:
        """Start and remove containers (concurrently); the last engine error, if any."""
        wanted = {rep.name: rep for rep in container.replicas(spec, r.version)}
        jobs: list[Awaitable[object]] = []
        for name in start:
            rep = wanted[name]
            cspec = container.build(spec, r.version, r.id, rep, f.allocations[name].address)
            jobs.append(self.engine(rep.host).run(cspec))
        for name in remove:
            jobs.append(self.engine(f.containers[name].host).remove(name))
        problem = None
        for result in await asyncio.gather(*jobs, return_exceptions=True):
            if isinstance(result, EngineError):
                problem = result.detail
                log.warning("%s", result.detail)
            elif isinstance(result, BaseException):
                raise result
        return problem

    async def _write(self, snap: Snapshot, changes: list[Change]) -> bool:
        try:
            await self.store.apply(changes, expected_revision=snap.revision, actor=self.actor)
        except ConflictError:
            return False  # recomputed on the next pass
        return True

    async def _allocate(self, snap: Snapshot, r: Rollout, spec: ReleaseSpec) -> bool:
        """Make sure every replica has an address; whether anything was written."""
        wrote = False
        by_dc: dict[str, list[str]] = {}
        for rep in container.replicas(spec, r.version):
            by_dc.setdefault(rep.dc, []).append(rep.name)
        for dc, owners in sorted(by_dc.items()):
            held = addresses.owned(snap, dc)
            if all(o in held for o in owners):
                continue
            pool = addresses.Pool.parse(f"datacenters.{dc}.pool", spec.placement[dc].pool)
            await addresses.allocate(self.store, dc, pool, owners, service=r.service,
                                     rollout=r.id, clock=self._clock, actor=self.actor)  # fmt: skip
            wrote = True
        return wrote

    def _hosts(self, snap: Snapshot, service: str) -> list[str]:
        hosts: set[str] = set()
        for r in snap.rollouts_of(service):
            for place in r.spec.get("datacenters", {}).values():
                hosts.update(place.get("hosts", ()))
        return sorted(hosts)

    async def _observe(self, snap: Snapshot, service: str) -> dict[str, Container]:
        """The service's containers on every host any of its rollouts used, by name."""
        out: dict[str, Container] = {}
        for host in self._hosts(snap, service):
            for c in await self.engine(host).list({container.LABEL_SERVICE: service}):
                out[c.name] = c
        return out

    def _health_of(self, r: Rollout, spec: ReleaseSpec, snap: Snapshot) -> dict[str, bool]:
        held = {a.owner: a.address for a in snap.allocations.values() if a.service == r.service}
        out = {}
        for rep in container.replicas(spec, r.version):
            if rep.name in held:
                state = self.monitor.tracker.healthy(
                    (r.service, rep.name, held[rep.name], spec.port)
                )
                out[rep.name] = bool(state)
        return out

    async def sweep(self, service: str) -> list[str]:
        """Remove containers and free addresses of ``service`` that nothing accounts for:
        not wanted by a live rollout and not a registered endpoint. The removed names."""
        snap = await self.store.snapshot()
        keep = set(snap.endpoints_of(service))
        for r in snap.rollouts_of(service):
            if is_live(r):
                spec = ReleaseSpec.from_dict(r.spec)
                keep.update(rep.name for rep in container.replicas(spec, r.version))
                keep.update(r.drained)
        observed = await self._observe(snap, service)
        removed = []
        for name, c in sorted(observed.items()):
            if name not in keep:
                log.info("removing orphan container %s on %s", name, c.host)
                await self.engine(c.host).remove(name)
                removed.append(name)
        stale = [
            a for a in snap.allocations.values()
            if a.service == service and a.owner not in keep
            and (a.owner not in observed or a.owner in removed)
        ]  # fmt: skip
        if stale:
            await self._write(snap, [Change.delete("allocation", a.key) for a in stale])
        return removed

    # -- health ---------------------------------------------------------------------------------

    def _targets(self, snap: Snapshot) -> dict[Target, HealthCheck]:
        checks: dict[str, HealthCheck] = {}
        for service in {r.service for r in snap.rollouts.values()}:
            newest = snap.rollouts_of(service)[-1]  # its health check applies to the service
            checks[service] = HealthCheck.from_dict(newest.spec.get("health", {}))
        targets: dict[Target, HealthCheck] = {}
        services = snap.services if self.check_all else checks
        default = HealthCheck()
        tracker = self.monitor.tracker
        for service in services:
            check = checks.get(service, default)
            for ep in snap.endpoints_of(service).values():
                t = (service, ep.id, ep.address, ep.port)
                tracker.seed(t, ep.healthy)
                targets[t] = check
        for r in snap.rollouts.values():
            if r.phase == STARTING:
                spec = ReleaseSpec.from_dict(r.spec)
                held = {a.owner: a.address for a in snap.allocations.values()
                        if a.service == r.service}  # fmt: skip
                for rep in container.replicas(spec, r.version):
                    if rep.name in held:
                        targets[(r.service, rep.name, held[rep.name], spec.port)] = spec.health
        return targets

    async def check_health_once(self) -> int:
        """Probe what is due and write health flips; how many endpoints flipped."""
        snap = await self.store.snapshot()
        await self.monitor.round(self._targets(snap))
        for _ in range(5):
            flips = [
                Change.put(replace(ep, healthy=state))
                for service, eps in snap.endpoints.items()
                for ep in eps.values()
                if (state := self.monitor.tracker.healthy((service, ep.id, ep.address, ep.port)))
                is not None
                and state != ep.healthy
            ]
            if not flips:
                return 0
            if await self._write(snap, flips):
                for c in flips:
                    log.info("%s is now %s", c.key, "healthy" if c.value.healthy else "unhealthy")  # type: ignore[union-attr]
                return len(flips)
            snap = await self.store.snapshot()
        return 0
