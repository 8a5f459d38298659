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

Every pass also heals: for the stable version (its newest finished rollout) and the
new version of a rollout past starting, ``healing.heal`` keeps the replica count,
replacing containers that died or stay unhealthy, and a liveness entry in the store
(not a registry record: no revision, no audit line) tells ``rolling status`` that a
controller is running.

A canary step with ``[[analysis]]`` checks is judged while it holds: each check is
evaluated every ``interval`` (a Prometheus query, or the canary's observed share of
the fleet's answers, read from the nodes' heartbeats in the store); the values of the
current step go to the state machine (``rollout.advance``: fail aborts, no data
holds until the timeout) and into the rollout's history (``rollout.record_analysis``).

A second task health-checks every endpoint of the services rolling manages (all
services with ``check_all``) and the containers of rollouts that are starting, and
writes ``healthy`` flips to the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp

from registry.changes import Change
from registry.errors import ConflictError, RegistryError
from registry.liveness import CONTROLLER, controller_id, dns_nodes
from registry.model import Allocation, Rollout
from registry.snapshot import Snapshot
from registry.store import Store

from . import addresses, container, healing
from .analysis import Check, expand, query_prometheus, share_value
from .engine import Container, Engine, MemoryEngine
from .errors import DeployerError, EngineError, PoolExhaustedError, PullError
from .healing import HealFacts, HealPlan, heal, targets_of
from .health import Monitor, Probe, Target, diagnose
from .intents import prune
from .metrics import ControllerStats
from .rollout import ABORT, CANARY, STARTING, Facts, advance, is_live, note, record_analysis
from .spec import HealthCheck, ReleaseSpec

CONTROLLER_KEEP = 86400.0  # seconds a stopped controller's liveness entry is kept
PULL_BACKOFF = (1.0, 30.0)  # first and longest wait between pull attempts, seconds

log = logging.getLogger("rolling.controller")

EngineFactory = Callable[[str], Engine]
# evaluates one analysis check for a rollout now: its value, or None (no data)
Analyst = Callable[[Check, Rollout, Snapshot], Awaitable[float | None]]
SHARE_WINDOW = 10  # seconds: the published answer window a share check reads


@dataclass
class _StepAnalysis:
    """The analysis values of one canary step (``since`` tells the step), and when each
    check is next due (monotonic seconds)."""

    since: float
    values: dict[str, float | None] = field(default_factory=dict)
    due: dict[str, float] = field(default_factory=dict)


def docker_engines(host: str) -> Engine:
    """The default engine factory: one Docker client per host URL (``memory://`` hosts
    are in-memory engines, for dry runs and tests)."""
    if host.startswith("memory://"):
        return MemoryEngine(host)
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
        prober: Probe = diagnose,
        monotonic: Callable[[], float] = time.monotonic,
        interval: float = 1.0,
        health_interval: float = 0.2,
        sweep_every: float = 10.0,
        check_all: bool = False,
        actor: str = "rolling-controller",
        name: str | None = None,
        analyst: Analyst | None = None,
    ) -> None:
        self.store = store
        self._factory = engines
        self._engines: dict[str, Engine] = {}
        self._clock = clock
        self._monotonic = monotonic
        self.stats = ControllerStats()
        self.monitor = Monitor(self._counted(prober), monotonic)
        self.interval = interval
        self.health_interval = health_interval
        self.sweep_every = sweep_every
        self.check_all = check_all
        self.actor = actor
        self._last_sweep = float("-inf")
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self._last_beat = float("-inf")
        self._legacy_cleared = False  # the registry's old heartbeat records are deleted
        self._bad_since: dict[str, float] = {}  # container -> when it was first seen bad
        self._problems: dict[str, str] = {}  # rollout key -> its last engine error
        self._pull: dict[str, tuple[float, float, float]] = {}  # key -> (first, next, wait)
        self._analyst = analyst or self.evaluate
        self._analysis: dict[str, _StepAnalysis] = {}  # rollout key -> its step's values
        self._session: aiohttp.ClientSession | None = None

    def _counted(self, prober: Probe) -> Probe:
        """``prober`` counting its results in ``stats`` (``rolling_health_probes_total``)."""

        async def probe(address: str, port: int, check: HealthCheck) -> bool | str:
            result = await prober(address, port, check)
            self.stats.probes["ok" if result is True else "fail"] += 1
            return result

        return probe

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
                self.stats.errors += 1
                log.warning("%s: %s", getattr(fn, "__name__", "pass"), exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period)

    async def close(self) -> None:
        """Close every engine (and the HTTP session of the analysis queries)."""
        if self._session is not None:
            await self._session.close()
            self._session = None
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
        """One pass: every live rollout, the healing of every service rolling released, a
        heartbeat (and a sweep when due)."""
        snap = await self.store.snapshot()
        self._saw(snap)
        live = sorted({r.service for r in snap.rollouts.values() if is_live(r)})
        for service in live:
            try:
                await self._reconcile_service(service)
            except (RegistryError, DeployerError) as exc:
                self.stats.errors += 1
                log.warning("%s: %s", service, exc)
        for service in sorted({r.service for r in snap.rollouts.values()}):
            try:
                await self.heal(service)
            except (RegistryError, DeployerError) as exc:
                self.stats.errors += 1
                log.warning("heal %s: %s", service, exc)
        await self._heartbeat()
        if self._monotonic() - self._last_sweep >= self.sweep_every:
            self._last_sweep = self._monotonic()
            managed = sorted({r.service for r in snap.rollouts.values()})
            for service in managed:
                try:
                    await self.sweep(service)
                except (RegistryError, DeployerError) as exc:
                    self.stats.errors += 1
                    log.warning("sweep %s: %s", service, exc)
        self.stats.passes += 1
        self.stats.last_pass = self._clock()

    def _saw(self, snap: Snapshot) -> None:
        """Rollouts and steps for the metrics (the pass's starting snapshot)."""
        live = {}
        for r in snap.rollouts.values():
            if is_live(r):
                live[r.service] = (r.step + 1 if r.step >= 0 else 0, r.percent)
        self.stats.saw_rollouts({k: r.phase for k, r in snap.rollouts.items()}, live)
        managed = {r.service for r in snap.rollouts.values()}
        for service in set(self.stats.containers) - managed:
            del self.stats.containers[service]

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
        healthy = self._health_of(r, spec, snap)
        values = await self._analyse(snap, r, spec)
        facts = Facts(
            rollout=r,
            spec=spec,
            now=self._clock(),
            ttl=snap.services[r.service].ttl if r.service in snap.services else 0,
            release=snap.releases.get(r.service),
            endpoints=snap.endpoints_of(r.service),
            containers=observed,
            allocations={a.owner: a for a in snap.allocations.values() if a.service == r.service},
            healthy=healthy,
            waiting_for=waiting_for,
            problem=self._problems.get(key) or self._probe_problem(r, spec, snap, healthy),
            analysis=values,
            service=snap.services.get(r.service),
        )
        plan = advance(record_analysis(facts))
        rollout = plan.rollout
        start = plan.start
        pull = self._pull.get(key)
        if pull is not None and facts.now < pull[1]:
            start = ()  # backing off after a failed pull
        problem, pull_failed = await self._act(spec, r, start, plan.remove, facts)
        if problem:
            self._problems[key] = problem
            if rollout.message != problem:
                rollout = replace(rollout, message=problem)
        if pull_failed:
            first, _, wait = pull or (facts.now, facts.now, PULL_BACKOFF[0] / 2)
            wait = min(wait * 2, PULL_BACKOFF[1])
            self._pull[key] = (first, facts.now + wait, wait)
        elif start:
            self._pull.pop(key, None)
        pull = self._pull.get(key)
        if pull and facts.now - pull[0] >= spec.pull_deadline and rollout.intent is None:
            text = (f"abort: the image cannot be pulled for {spec.pull_deadline:g}s: "
                    f"{self._problems.get(key)}")  # fmt: skip
            rollout = note(rollout, facts.now, text, intent=ABORT, message=text)
        if replace(plan, rollout=rollout).writes(r):
            changes = [*plan.changes, Change.put(rollout)]
            if not is_live(rollout):
                after, _ = snap.apply(changes, snap.revision + 1)
                changes += prune(after, r.service)
                log.info("%s %s of %s: %s", r.service, r.id, r.version, rollout.phase)
                self._problems.pop(key, None)
                self._pull.pop(key, None)
                self._analysis.pop(key, None)
            await self._write(snap, changes)

    # -- analysis -------------------------------------------------------------------------------

    async def _analyse(
        self, snap: Snapshot, r: Rollout, spec: ReleaseSpec
    ) -> dict[str, float | None]:
        """The values of the current canary step's checks, evaluating those due now (all
        at once). A new step starts with no values: what the previous step measured
        says nothing about this one."""
        if r.phase != CANARY or not spec.analysis:
            self._analysis.pop(r.key, None)
            for k in [k for k in self.stats.analysis if k[0] == r.service]:
                del self.stats.analysis[k]
            return {}
        state = self._analysis.get(r.key)
        if state is None or state.since != r.since:
            state = self._analysis[r.key] = _StepAnalysis(r.since)
            for k in [k for k in self.stats.analysis if k[0] == r.service]:
                del self.stats.analysis[k]  # the previous step's values say nothing now
        now = self._monotonic()
        due = [c for c in spec.analysis if now >= state.due.get(c.name, float("-inf"))]
        if due:
            found = await asyncio.gather(*(self._analyst(c, r, snap) for c in due))
            for check, value in zip(due, found, strict=True):
                state.values[check.name] = value
                state.due[check.name] = now + check.interval
                self.stats.analysis[(r.service, check.name)] = value
                log.debug("%s %s analysis %s: %s", r.service, r.id, check.name, value)
        return dict(state.values)

    async def evaluate(self, check: Check, r: Rollout, snap: Snapshot) -> float | None:
        """The default analyst: a Prometheus query, or the canary's share of the answers
        the fleet published over the last ``SHARE_WINDOW`` seconds (no data until the
        step is that old past its dwell: answers cached from the previous step would
        count against it)."""
        if check.share_tolerance is None:
            if self._session is None:
                self._session = aiohttp.ClientSession(trust_env=False)
            return await query_prometheus(
                self._session, expand(check, r.service, r.version, r.previous)
            )
        ttl = snap.services[r.service].ttl if r.service in snap.services else 0
        spec = ReleaseSpec.from_dict(r.spec)
        if self._clock() < r.since + ttl + spec.propagation + SHARE_WINDOW:
            return None
        return share_value(await self._shares(snap, r.service), r.version)

    async def _shares(self, snap: Snapshot, service: str) -> dict[str, Any]:
        """The fleet's shares document of ``service`` (as ``GET .../shares`` gives it)."""
        from httpdns.shares import configured_versions, observe, report
        from httpdns.shares_api import published

        nodes = getattr(self.store, "nodes", None)
        beats: list[Mapping[str, Any]] = []
        if nodes is not None:
            try:
                beats = list(dns_nodes(await nodes()))
            except RegistryError as exc:
                log.warning("shares of %s: %s", service, exc)
        after, span = published(beats, SHARE_WINDOW)
        release = snap.releases.get(service)
        versions = configured_versions(
            release.stable if release else None,
            release.canary if release else None,
            release.canary_percent if release else 0.0,
        )
        return report(observe(service, {}, after, span), {}, versions)

    def _probe_problem(
        self, r: Rollout, spec: ReleaseSpec, snap: Snapshot, healthy: dict[str, bool]
    ) -> str | None:
        """Why the first unhealthy replica of a starting rollout fails its probes."""
        if r.phase != STARTING:
            return None
        held = {a.owner: a.address for a in snap.allocations.values() if a.service == r.service}
        for name, ok in sorted(healthy.items()):
            reason = self.monitor.reasons.get((r.service, name, held[name], spec.port))
            if not ok and reason:
                return f"{name}: {reason}"
        return None

    async def _act(
        self, spec: ReleaseSpec, r: Rollout, start: Iterable[str], remove: Iterable[str], f: Facts
    ) -> tuple[str | None, bool]:
        """Start and remove containers (concurrently): the last engine error, if any, and
        whether an image pull failed."""
        wanted = {rep.name: rep for rep in container.replicas(spec, r.version)}
        jobs: list[Awaitable[object]] = []
        for name in start:
            rep = wanted[name]
            cspec = container.build(spec, r.version, r.id, rep, f.allocations[name].address)
            jobs.append(self.engine(rep.host).run(cspec))
        for name in remove:
            jobs.append(self.engine(f.containers[name].host).remove(name))
        problem, pull_failed = None, False
        for result in await asyncio.gather(*jobs, return_exceptions=True):
            if isinstance(result, EngineError):
                problem = result.detail
                pull_failed = pull_failed or isinstance(result, PullError)
                log.warning("%s", result.detail)
            elif isinstance(result, BaseException):
                raise result
        return problem, pull_failed

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
        self.stats.containers[service] = {name: c.state for name, c in out.items()}
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

    async def heal(self, service: str) -> None:
        """Keep the replica count of the service's stable version (and of a rollout past
        starting): replace dead or long-unhealthy containers, start and register new
        replicas, remove replicas beyond the count (see ``healing``)."""
        snap = await self.store.snapshot()
        targets = targets_of(snap, service)
        for target in targets:
            snap = await self.store.snapshot()
            r = snap.rollouts.get(target.key)
            if r is None:
                continue
            spec = ReleaseSpec.from_dict(r.spec)
            observed = await self._observe(snap, service)
            plan, allocs = self._heal_plan(snap, r, spec, observed, targets)
            if plan.allocate and await self._allocate_heal(snap, r, spec, plan.allocate):
                snap = await self.store.snapshot()
                r = snap.rollouts.get(target.key)
                if r is None:
                    continue
                plan, allocs = self._heal_plan(snap, r, spec, observed, targets)
            # before the write: the health task must not flip a replaced endpoint back
            # to healthy from what it knew of the old container
            for name in plan.reset:
                t = (service, name, allocs[name].address, spec.port)
                self.monitor.tracker.force(t, False)  # answered again only after rise probes
                self._bad_since.pop(name, None)
            if plan.writes(r) and not await self._write(
                snap, [*plan.changes, Change.put(plan.rollout)]
            ):
                continue  # someone else wrote: recomputed on the next pass
            await self._heal_act(spec, plan.rollout, plan, allocs, observed)

    def _heal_plan(
        self, snap: Snapshot, r: Rollout, spec: ReleaseSpec, observed: dict[str, Container],
        targets: list[Rollout],
    ) -> tuple[HealPlan, dict[str, Allocation]]:  # fmt: skip
        service = r.service
        allocs = {a.owner: a for a in snap.allocations.values() if a.service == service}
        healthy: dict[str, bool | None] = {}
        for rep in container.replicas(spec, r.version):
            if rep.name in allocs:
                t = (service, rep.name, allocs[rep.name].address, spec.port)
                healthy[rep.name] = self.monitor.tracker.healthy(t)
        facts = HealFacts(
            rollout=r,
            spec=spec,
            now=self._clock(),
            ttl=snap.services[service].ttl if service in snap.services else 0,
            endpoints=snap.endpoints_of(service),
            containers=observed,
            allocations=allocs,
            healthy=healthy,
            bad_for=self._bad_for(observed, healthy),
            others=tuple(snap.rollouts.get(t.key, t) for t in targets if t.key != r.key),
        )
        return heal(facts), allocs

    async def _heal_act(
        self, spec: ReleaseSpec, r: Rollout, plan: HealPlan, allocs: dict[str, Allocation],
        observed: dict[str, Container],
    ) -> None:  # fmt: skip
        wanted = {rep.name: rep for rep in container.replicas(spec, r.version)}

        async def run(name: str, fresh: bool) -> None:
            rep = wanted[name]
            if fresh and name in observed:
                await self.engine(observed[name].host).remove(name)
            await self.engine(rep.host).run(
                container.build(spec, r.version, r.id, rep, allocs[name].address)
            )

        jobs = [run(n, True) for n in plan.replace] + [run(n, False) for n in plan.start]
        jobs += [self.engine(observed[n].host).remove(n) for n in plan.remove]
        for result in await asyncio.gather(*jobs, return_exceptions=True):
            if isinstance(result, EngineError):
                log.warning("heal %s: %s", spec.service, result.detail)
            elif isinstance(result, BaseException):
                raise result

    async def _allocate_heal(
        self, snap: Snapshot, r: Rollout, spec: ReleaseSpec, names: Iterable[str]
    ) -> bool:
        """Addresses for new replicas; whether any was allocated."""
        wanted = {rep.name: rep for rep in container.replicas(spec, r.version)}
        by_dc: dict[str, list[str]] = {}
        for name in names:
            by_dc.setdefault(wanted[name].dc, []).append(name)
        wrote = False
        for dc, owners in sorted(by_dc.items()):
            pool = addresses.Pool.parse(f"datacenters.{dc}.pool", spec.placement[dc].pool)
            try:
                await addresses.allocate(self.store, dc, pool, owners, service=r.service,
                                         rollout=r.id, clock=self._clock, actor=self.actor)  # fmt: skip
                wrote = True
            except PoolExhaustedError as exc:
                log.warning("heal %s: %s", r.service, exc.detail)
                text = f"cannot start {', '.join(owners)}: {exc.detail}"
                now = await self.store.snapshot()
                latest = now.rollouts.get(r.key)
                if latest is not None and (
                    not latest.events or latest.events[-1].get("text") != text
                ):
                    changed = healing.event(latest, self._clock(), healing.HELD, text)
                    await self._write(now, [Change.put(changed)])
        return wrote

    def _bad_for(
        self, observed: dict[str, Container], healthy: dict[str, bool | None]
    ) -> dict[str, float]:
        """Seconds each replica has been not running or unhealthy (as this controller saw)."""
        now = self._monotonic()
        out = {}
        for name, ok in healthy.items():
            c = observed.get(name)
            if c is None or not c.running or ok is False:
                out[name] = now - self._bad_since.setdefault(name, now)
            else:
                self._bad_since.pop(name, None)
        return out

    async def _heartbeat(self) -> None:
        """Record this pass, at most about once per ``max(interval, 1 s)``, in the store's
        expiring liveness entries (registry/liveness.py): no registry revision, no audit
        line, so operators' ``If-Match`` writes and the nodes are left alone. The entry
        outlives the controller by ``CONTROLLER_KEEP`` so that ``rolling status`` can say
        when a stopped one last reconciled; restarts get new names and old entries expire."""
        every = max(self.interval, 1.0)
        if self._monotonic() - self._last_beat < every * 0.9:
            return
        info = {"kind": CONTROLLER, "id": self.name, "time": self._clock(), "every": every,
                "actor": self.actor}  # fmt: skip
        try:
            await self.store.heartbeat(controller_id(self.name), info, CONTROLLER_KEEP)
            if not self._legacy_cleared:
                await self._clear_legacy_heartbeats()
        except RegistryError as exc:
            log.warning("heartbeat: %s", exc)
            return
        self._last_beat = self._monotonic()

    async def _clear_legacy_heartbeats(self) -> None:
        """Delete the ``heartbeat`` records earlier controllers wrote into the registry, in
        one revision, once per start (tried again on the next pass if it fails). An older
        controller still running writes its own again; ``rolling status`` reads both."""
        snap = await self.store.snapshot()
        if snap.heartbeats:
            gone = [Change.delete("heartbeat", key) for key in sorted(snap.heartbeats)]
            await self.store.apply(gone, actor=self.actor)
            log.info("deleted %d heartbeat record(s) of earlier controllers", len(gone))
        self._legacy_cleared = True

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
        for r in targets_of(snap, service):
            spec = ReleaseSpec.from_dict(r.spec)
            keep.update(rep.name for rep in container.replicas(spec, r.version))
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
        for service in checks:
            eps = snap.endpoints_of(service)
            for r in targets_of(snap, service):
                spec = ReleaseSpec.from_dict(r.spec)
                held = {a.owner: a.address for a in snap.allocations.values()
                        if a.service == service}  # fmt: skip
                for rep in container.replicas(spec, r.version):
                    if rep.name in held and rep.name not in eps:
                        targets[(service, rep.name, held[rep.name], spec.port)] = spec.health
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
