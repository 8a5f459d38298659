"""What operators ask for — deploy, pause, resume, promote, abort, rollback — as pure
functions from a registry snapshot to the changes that record the intent.

The CLI and the admin API write these changes with the snapshot's revision as the
expected revision, so an intent never lands on a rollout that moved meanwhile. The
controller acts on them; nothing here touches Docker.
"""

from __future__ import annotations

from dataclasses import replace

from registry.changes import Change
from registry.errors import NotFoundError
from registry.model import Rollout
from registry.snapshot import Snapshot

from . import healing
from .addresses import Pool
from .errors import IntentRefusedError, NoRolloutError, PoolExhaustedError, SpecError
from .rollout import (
    ABORT,
    BAKING,
    CANARY,
    CLEANUP,
    DONE,
    DRAINING,
    FINISH,
    PENDING,
    PROMOTE,
    PROMOTE_FULL,
    ROLLBACK,
    STARTING,
    is_live,
    note,
)
from .spec import ReleaseSpec

KEEP = 20  # finished rollouts kept per service (history, and specs for rollback redeploys)
_BEFORE_PROMOTE = (PENDING, STARTING, CANARY)
_AFTER_PROMOTE = (DRAINING, BAKING)


def active(snap: Snapshot, service: str) -> Rollout | None:
    """The newest rollout of ``service`` that still has work to do."""
    live = [r for r in snap.rollouts_of(service) if is_live(r)]
    return live[-1] if live else None


def latest(snap: Snapshot, service: str) -> Rollout | None:
    """The newest rollout of ``service``."""
    rollouts = snap.rollouts_of(service)
    return rollouts[-1] if rollouts else None


def _require(snap: Snapshot, service: str) -> Rollout:
    r = active(snap, service)
    if r is None:
        raise NoRolloutError(f"service {service!r} has no rollout in progress")
    return r


def deploy(
    snap: Snapshot,
    spec: ReleaseSpec,
    version: str,
    now: float,
    actor: str = "rolling",
    why: str = "deploy",
) -> tuple[Rollout, list[Change]]:
    """A new rollout of ``version`` (pending until any earlier one has finished)."""
    if spec.service not in snap.services:
        raise NotFoundError(
            f"service {spec.service!r} does not exist; create it first (httpdns service set)"
        )
    for dc in spec.replicas:
        if dc not in snap.datacenters:
            raise SpecError(f"replicas.{dc}", f"datacenter {dc!r} does not exist in the registry")
    check_pools(snap, spec)
    release = snap.releases.get(spec.service)
    stable = release.stable if release else None
    if version == stable:
        raise IntentRefusedError(f"{version} is already the stable version of {spec.service}")
    changes: list[Change] = []
    current = active(snap, spec.service)
    if current is not None:
        if current.phase in _AFTER_PROMOTE:
            text = f"finishing early for the rollout of {version}"
            changes.append(Change.put(note(current, now, text, intent=FINISH)))
        elif current.phase != CLEANUP:
            raise IntentRefusedError(
                f"rollout {current.id} of {current.version} is in progress ({current.phase}); "
                "abort it or wait for it to finish"
            )
    rollout = Rollout(
        service=spec.service,
        id=f"r{snap.revision + 1}",  # unique: this write is revision + 1 (compare-and-set)
        version=version,
        previous=stable,
        phase=PENDING,
        since=now,
        created=now,
        actor=actor,
        message=f"{why} requested",
        spec=spec.to_dict(),
        events=({"time": now, "phase": PENDING, "percent": 0.0, "text": f"{why} by {actor}"},),
    )
    changes.append(Change.put(rollout))
    changes += prune(snap, spec.service)
    return rollout, changes


def check_pools(
    snap: Snapshot,
    spec: ReleaseSpec,
    counts: dict[str, int] | None = None,
    needed: dict[str, int] | None = None,
) -> None:
    """Refuse a release whose pools cannot hold it, before anything is recorded.

    Per datacenter the pool must hold the replicas twice (the running version plus one
    rollout's worth of new containers) and have enough free addresses now for the
    containers still to be allocated; and no pool may overlap the pool another
    datacenter uses in any recorded release (two containers, one address).
    """
    counts = dict(spec.replicas) if counts is None else counts
    needed = counts if needed is None else needed
    for dc, n in sorted(counts.items()):
        if not n:
            continue
        place = spec.placement[dc]
        pool = Pool.parse(f"datacenters.{dc}.pool", place.pool)
        if pool.size < 2 * n:
            raise SpecError(f"datacenters.{dc}.pool",
                            f"{place.pool} holds {pool.size} addresses; {n} replicas need {2 * n} "
                            f"({n} running + {n} for the next rollout)")  # fmt: skip
        taken = sum(1 for a in snap.allocations.values() if a.dc == dc and a.address in pool)
        free, want = pool.size - taken, needed.get(dc, 0)
        if free < want:
            raise PoolExhaustedError(f"datacenter {dc}: pool {place.pool} has {free} of its "
                                     f"{pool.size} addresses free; {want} are needed")  # fmt: skip
    mine = {dc: Pool.parse(dc, p.pool) for dc, p in spec.placement.items()}
    for other in snap.rollouts.values():
        for dc, place in other.spec.get("datacenters", {}).items():
            theirs = Pool.parse(dc, place.get("pool"))
            for my_dc, pool in mine.items():
                if my_dc != dc and pool.first <= theirs.last and theirs.first <= pool.last:
                    raise SpecError(f"datacenters.{my_dc}.pool",
                                    f"{spec.placement[my_dc].pool} overlaps the pool of "
                                    f"datacenter {dc} ({place.get('pool')}) used by {other.service}; "
                                    "pools must be disjoint")  # fmt: skip


def scale(
    snap: Snapshot, service: str, now: float, counts: dict[str, int], actor: str = "rolling"
) -> list[Change]:
    """Change the replica count per datacenter, as an intent the controller carries out:
    the stable version's rollout record (and a running rollout's) get the new counts."""
    targets = healing.targets_of(snap, service)
    r = active(snap, service)
    if r is not None and r not in targets and r.phase != CLEANUP:
        targets.append(r)  # a rollout before promotion starts the new count too
    if not targets:
        if service not in snap.services:
            raise NotFoundError(f"service {service!r} does not exist")
        raise NoRolloutError(f"service {service!r} has no version released by rolling to scale")
    changes = []
    for target in targets:
        spec = ReleaseSpec.from_dict(target.spec)
        for dc, n in counts.items():
            if dc not in spec.placement:
                raise SpecError(f"replicas.{dc}", f"rollout {target.id} has no placement for "
                                f"datacenter {dc!r} (deploy a release that names it)")  # fmt: skip
            if not 0 <= n <= 1000:
                raise SpecError(f"replicas.{dc}", f"must be 0-1000, not {n}")
        new = {**spec.replicas, **counts}
        if not any(new.values()):
            raise SpecError("replicas", "at least one datacenter needs a replica")
        grow = {dc: max(n - spec.replicas.get(dc, 0), 0) for dc, n in new.items()}
        check_pools(snap, spec, {dc: n for dc, n in new.items() if grow[dc]}, grow)
        raw = {**spec.to_dict(), "replicas": new}
        ReleaseSpec.from_dict(raw)  # still valid
        text = ", ".join(
            f"{dc} {spec.replicas.get(dc, 0)}->{n}" for dc, n in sorted(counts.items())
        )
        changed = healing.event(target, now, healing.SCALE, f"scale {text} by {actor}")
        changes.append(Change.put(replace(changed, spec=raw)))
    return changes


def prune(snap: Snapshot, service: str, keep: int = KEEP) -> list[Change]:
    """Deletes of the oldest finished rollouts beyond ``keep`` (never the record of the
    stable version, which the controller keeps running)."""
    stable = {r.key for r in healing.targets_of(snap, service)}
    done = [r for r in snap.rollouts_of(service) if not is_live(r) and r.key not in stable]
    return [Change.delete("rollout", r.key) for r in done[: max(len(done) - keep, 0)]]


def pause(snap: Snapshot, service: str, now: float, actor: str = "rolling") -> list[Change]:
    """Hold the rollout at its current step."""
    r = _require(snap, service)
    if r.phase not in _BEFORE_PROMOTE:
        raise IntentRefusedError(
            f"rollout {r.id} is {r.phase}; only a rollout before promotion pauses"
        )
    return [Change.put(note(r, now, f"paused by {actor}", paused=True))]


def resume(snap: Snapshot, service: str, now: float, actor: str = "rolling") -> list[Change]:
    """Let a paused rollout go on (a manual step still waits for ``promote``)."""
    r = _require(snap, service)
    if not r.paused:
        raise IntentRefusedError(f"rollout {r.id} is not paused")
    return [Change.put(note(r, now, f"resumed by {actor}", paused=False))]


def promote(
    snap: Snapshot, service: str, now: float, full: bool = False, actor: str = "rolling"
) -> list[Change]:
    """Move to the next canary step, or (``full``) straight to stable."""
    r = _require(snap, service)
    allowed = _BEFORE_PROMOTE if full else (CANARY,)
    if r.phase not in allowed:
        raise IntentRefusedError(f"rollout {r.id} is {r.phase}; promote applies to canary steps")
    intent = PROMOTE_FULL if full else PROMOTE
    return [Change.put(note(r, now, f"{intent} by {actor}", intent=intent))]


def abort(snap: Snapshot, service: str, now: float, actor: str = "rolling") -> list[Change]:
    """Send every client back to the stable version at once, then remove the new containers."""
    r = _require(snap, service)
    if r.phase not in _BEFORE_PROMOTE:
        raise IntentRefusedError(
            f"rollout {r.id} is {r.phase}; after promotion use rollback instead of abort"
        )
    return [Change.put(note(r, now, f"abort by {actor}", intent=ABORT))]


def rollback(
    snap: Snapshot, service: str, now: float, actor: str = "rolling"
) -> tuple[Rollout | None, list[Change]]:
    """Return to the previous version.

    Before promotion this is an abort. While the previous containers are still warm
    (draining or baking) it is a registry flip the controller makes. Otherwise the
    previous version is redeployed from the spec it was deployed with (no canary
    steps); the new rollout is returned.
    """
    r = active(snap, service)
    if r is not None and r.phase in _BEFORE_PROMOTE:
        return None, [Change.put(note(r, now, f"rollback (abort) by {actor}", intent=ABORT))]
    if r is not None and r.phase in _AFTER_PROMOTE and _warm(snap, r):
        return None, [Change.put(note(r, now, f"rollback by {actor}", intent=ROLLBACK))]
    current = r or latest(snap, service)
    if current is None:
        raise NoRolloutError(f"service {service!r} has no rollout to roll back")
    if r is None and current.phase != DONE:
        raise IntentRefusedError(
            f"the last rollout {current.id} ended {current.phase}; nothing to roll back"
        )
    if r is not None and r.phase not in (*_AFTER_PROMOTE, CLEANUP):
        raise IntentRefusedError(f"rollout {r.id} is {r.phase}; wait for it to finish")
    if current.previous is None:
        raise IntentRefusedError(f"rollout {current.id} had no previous version")
    source = next(
        (x for x in reversed(snap.rollouts_of(service))
         if x.version == current.previous and x.phase == DONE),
        None,
    )  # fmt: skip
    if source is None:
        raise IntentRefusedError(
            f"no finished rollout of {current.previous} is recorded; deploy it again with its spec"
        )
    spec = ReleaseSpec.from_dict(source.spec).without_steps()
    why = f"rollback of {current.version} to {current.previous} (redeploy)"
    return deploy(snap, spec, current.previous, now, actor, why)


def _warm(snap: Snapshot, r: Rollout) -> bool:
    eps = snap.endpoints_of(r.service)
    return r.previous is not None and any(eid in eps and eps[eid].healthy for eid in r.drained)


def history(snap: Snapshot, service: str) -> list[Rollout]:
    """Rollouts of ``service``, newest first."""
    return list(reversed(snap.rollouts_of(service)))
