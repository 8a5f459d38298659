"""Self-healing replicas: keep the replica count of a version, as a pure function.

The controller asks ``heal`` about the stable version (its newest finished rollout)
and about the new version of a rollout that is past starting. Facts in (the rollout
record with its spec, what Docker reports, the registry's endpoints and allocations,
probe results, how long each container has been bad), a plan out:

- a container that exited, died or is gone is replaced at once; one that runs but
  stays unhealthy (or never gets running) past the spec's ``replace_after`` too. Its
  endpoint is marked unhealthy in the same write, and its health tracking starts
  over, so it is answered again only after ``rise`` good probes;
- a replica with no container and no endpoint (a scale-up) is started, and
  registered once its probes rise;
- replicas beyond the count (a scale-down) go to weight 0 first, and after TTL +
  propagation are deregistered, removed and their addresses freed;
- replacements are rate-limited per service (``replace_limit`` within
  ``replace_window``, counted from the rollout's own events, so the limit survives a
  controller restart and holds across controllers); each one is an event;
- a replacement recorded a moment ago (by any controller) is left to finish: while the
  container it replaced is still there, or none is there yet, the replica is not
  replaced again for ``IN_FLIGHT`` seconds plus the spec's stop timeout. (Two controllers
  see the same dead container; the second would otherwise replace the first one's
  replacement halfway, and spend the service's replacements twice.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from registry.changes import Change
from registry.model import Allocation, Endpoint, Rollout
from registry.snapshot import Snapshot

from .container import LABEL_VERSION, replicas
from .engine import Container
from .rollout import BAKING, CANARY, CLEANUP, DONE, DRAINING, MAX_EVENTS, is_live
from .spec import ReleaseSpec

REPLACE, REGISTER, SCALE, HELD = "replace", "register", "scale", "held"
GONE = frozenset({"exited", "dead", "removing"})
IN_FLIGHT = 20.0  # seconds (plus stop_timeout) a recorded replacement is given to finish
HEALING_PHASES = (CANARY, DRAINING, BAKING, CLEANUP)  # a new version past starting


def targets_of(snap: Snapshot, service: str) -> list[Rollout]:
    """The rollout records whose versions the controller keeps at their replica count:
    the newest finished rollout of the stable version, and a rollout past starting."""
    rollouts = snap.rollouts_of(service)
    live = [r for r in rollouts if is_live(r)]
    release = snap.releases.get(service)
    out = []
    if release is not None and release.stable and all(r.version != release.stable for r in live):
        done = [r for r in rollouts if r.phase == DONE and r.version == release.stable]
        out += done[-1:]
    return out + [r for r in live if r.phase in HEALING_PHASES]


@dataclass(frozen=True, slots=True)
class HealFacts:
    """What the controller observed for the version one rollout record keeps running."""

    rollout: Rollout
    spec: ReleaseSpec
    now: float
    ttl: int = 0
    endpoints: Mapping[str, Endpoint] = field(default_factory=dict)  # of the service, by id
    containers: Mapping[str, Container] = field(default_factory=dict)  # of the service
    allocations: Mapping[str, Allocation] = field(default_factory=dict)  # by owner
    healthy: Mapping[str, bool | None] = field(default_factory=dict)  # probe state by name
    bad_for: Mapping[str, float] = field(default_factory=dict)  # seconds unhealthy/not running
    others: tuple[Rollout, ...] = ()  # the service's other kept rollouts: the limit is shared


@dataclass(frozen=True, slots=True)
class HealPlan:
    """What to do: allocate, write (``changes`` and ``rollout``), then act on Docker."""

    rollout: Rollout
    changes: tuple[Change, ...] = ()
    allocate: tuple[str, ...] = ()  # replicas that need an address first
    replace: tuple[str, ...] = ()  # remove (if there) and run again, same name and address
    start: tuple[str, ...] = ()  # run (new replicas)
    remove: tuple[str, ...] = ()  # scale-down: containers no longer wanted
    reset: tuple[str, ...] = ()  # health tracking starts over (unhealthy) for these

    def writes(self, before: Rollout) -> bool:
        """Whether the registry needs a write."""
        return bool(self.changes) or self.rollout != before


def event(r: Rollout, now: float, kind: str, text: str, **extra: str) -> Rollout:
    """``r`` with a healing event (``extra`` fields too). Old healing events make room
    first, so a long-lived stable rollout keeps the story of its own release."""
    ev = {"time": now, "phase": r.phase, "percent": r.percent, "text": text, "kind": kind,
          **extra}  # fmt: skip
    events = [dict(e) for e in r.events] + [ev]
    while len(events) > MAX_EVENTS:
        i = next((i for i, e in enumerate(events) if e.get("kind")), 0)
        del events[i]
    return replace(r, events=tuple(events))


def recent(r: Rollout, kind: str, since: float) -> int:
    """How many events of ``kind`` the rollout recorded after ``since``."""
    return sum(1 for e in r.events if e.get("kind") == kind and float(e["time"]) > since)


def last_time(r: Rollout, kind: str) -> float:
    """When the rollout last recorded an event of ``kind`` (0 if never)."""
    return max((float(e["time"]) for e in r.events if e.get("kind") == kind), default=0.0)


def in_flight(r: Rollout, name: str, c: Container | None, now: float, grace: float) -> bool:
    """Whether a replacement of ``name`` recorded within ``grace`` seconds is still under
    way: the container it replaced is still there (same id), or no container is yet."""
    for e in reversed(r.events):
        if e.get("kind") == REPLACE and e.get("name") == name:
            if now - float(e["time"]) > grace:
                return False
            return c is None or c.state == "removing" or c.id == e.get("replaced", "")
    return False


def _reason(c: Container | None, bad_for: float, after: float) -> str | None:
    """Why the replica needs replacing now, or None."""
    if c is None:
        return "its container is gone"
    if c.state in GONE:
        return f"its container {c.state}"
    if bad_for >= after:
        what = "unhealthy" if c.running else c.state
        return f"{what} for {bad_for:.0f}s (replace_after {after:g}s)"
    return None


def heal(f: HealFacts) -> HealPlan:
    """The next healing step for the version ``f.rollout`` keeps."""
    r, spec = f.rollout, f.spec
    wanted = replicas(spec, r.version)
    names = {rep.name for rep in wanted}
    changes: list[Change] = []
    allocate, start, candidates = [], [], []
    for rep in wanted:
        if rep.name not in f.allocations:
            allocate.append(rep.name)
            continue
        c, ep = f.containers.get(rep.name), f.endpoints.get(rep.name)
        if ep is None and (c is None or c.state in GONE):
            start.append(rep.name)  # a new replica (or one deregistered by hand): no churn
            continue
        why = _reason(c, f.bad_for.get(rep.name, 0.0), spec.replace_after)
        if why is not None and in_flight(r, rep.name, c, f.now, IN_FLIGHT + spec.stop_timeout):
            continue  # another pass (or controller) is replacing it right now
        if why is not None:
            candidates.append((rep.name, why))
        elif ep is None and c is not None and c.running and f.healthy.get(rep.name):
            address = f.allocations[rep.name].address
            changes.append(Change.put(Endpoint(
                spec.service, rep.name, rep.dc, address, spec.port, r.version, spec.weight,
                True, {"rollout": r.id, "host": rep.host},
            )))  # fmt: skip
            r = event(r, f.now, REGISTER, f"registered {rep.name} ({address}): probes rose")
    since = f.now - spec.replace_window
    done = recent(r, REPLACE, since) + sum(recent(o, REPLACE, since) for o in f.others)
    allowed = max(spec.replace_limit - done, 0)
    chosen, held = candidates[:allowed], candidates[allowed:]
    for name, why in chosen:
        old = f.containers.get(name)
        r = event(r, f.now, REPLACE, f"replacing {name}: {why}", name=name,
                  replaced=old.id if old is not None else "")  # fmt: skip
        ep = f.endpoints.get(name)
        address = f.allocations[name].address  # the old one, unless it could not be kept
        if ep is not None and (ep.healthy or ep.address != address):
            changes.append(Change.put(replace(ep, healthy=False, address=address)))
    if held:
        text = (f"replacement of {', '.join(n for n, _ in held)} held: {spec.replace_limit} "
                f"replacements within {spec.replace_window:g}s")  # fmt: skip
        if not r.events or r.events[-1].get("text") != text:
            r = event(r, f.now, HELD, text)
    remove = _scale_down(f, names, changes)
    return HealPlan(r, tuple(changes), tuple(allocate), tuple(n for n, _ in chosen),
                    tuple(start), tuple(remove), tuple(n for n, _ in chosen))  # fmt: skip


def _scale_down(f: HealFacts, names: set[str], changes: list[Change]) -> list[str]:
    """Replicas of this version beyond the count: weight 0, then (after TTL + propagation
    from the scale intent) deregister, remove, free. The containers to remove."""
    version = f.rollout.version
    extra = {eid for eid, ep in f.endpoints.items() if ep.version == version} | {
        n for n, c in f.containers.items() if c.labels.get(LABEL_VERSION) == version
    }
    extra |= {a.owner for a in f.allocations.values() if a.rollout == f.rollout.id}
    extra -= names
    if not extra:
        return []
    settled = f.now >= last_time(f.rollout, SCALE) + f.ttl + f.spec.propagation
    remove = []
    for name in sorted(extra):
        ep = f.endpoints.get(name)
        if ep is not None and not settled:
            if ep.weight:
                changes.append(Change.put(replace(ep, weight=0)))
        elif ep is not None:
            changes.append(Change.delete("endpoint", ep.key))
        elif name in f.containers:
            remove.append(name)
        elif name in f.allocations:
            changes.append(Change.delete("allocation", f.allocations[name].key))
    return remove
