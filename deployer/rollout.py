"""The rollout state machine. Pure: facts in (the rollout record, the registry's view of
the service, the containers Docker reports, health, the time), a plan out (the next
rollout record, registry changes, containers to start and to remove).

Phases (``*`` = terminal)::

    pending ─► starting ─► canary (step 0..n) ─► draining ─► baking ─► cleanup ─► done*
                  │            │                     │          │
                  └────────────┴─► aborting ─► aborted*          └─► rolling-back ─► rolled-back*
                                                                 (also from draining)

- starting: containers are created (addresses allocated beforehand by the controller)
  and probed; once every replica is healthy its endpoint is registered. A first
  deploy (no previous version), a spec without steps or ``promote --full`` promote at
  once; otherwise the first canary step begins. Past the health deadline: abort.
- canary: the release's ``canary_percent`` follows the steps. A step holds at least
  the service TTL plus the propagation allowance, then its own pause (a duration, or
  ``manual``: until ``promote``). ``pause`` holds any step; ``promote`` moves to the
  next one, ``promote --full`` to the end (each still after the minimum hold).
  With ``[[analysis]]`` checks (``deployer.analysis``), a check past its threshold
  aborts the step at once (also while paused); a check without data holds a timed
  step past its pause until the check's timeout, then aborts; a timed step advances
  only when every check has passed in this step. ``promote`` (an operator's word)
  does not wait for data, but a failing check still aborts.
- promote (the move into draining): stable = new, canary cleared, every older endpoint
  to weight 0 in the same registry write; draining waits TTL + propagation.
- baking keeps the older containers warm (registered at weight 0, still health
  checked) for the bake time, so ``rollback`` is a registry flip; cleanup then
  deregisters them, removes the containers and frees their addresses.
- abort: canary cleared at once and the new endpoints to weight 0; after TTL +
  propagation they are deregistered and the new containers removed.

``ttl_first`` (a rollout that moves traffic from a previous version, on a service whose
TTL is above ``ttl_floor``): the first pass of starting lowers the TTL to the floor and
keeps the old one in the rollout's stored spec (``ttl_restore``, ``ttl_lowered``: the
note that survives a crash); the first traffic move waits one old TTL plus the
propagation allowance after that; every step then holds the floor's dwell; the TTL is
restored (unless someone changed it meanwhile) one dwell after the last move: when
draining ends, or when an aborted rollout ends.

Cleanup is observation-driven and idempotent: an endpoint is deregistered first, its
container removed once the registry no longer lists it, its address freed once Docker
no longer reports the container; the phase ends when nothing is left.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from registry.changes import Change
from registry.model import Allocation, Endpoint, Release, Rollout, Service

from .analysis import decide, judge, threshold
from .container import Replica, replicas
from .engine import Container
from .spec import ReleaseSpec

PENDING, STARTING, CANARY = "pending", "starting", "canary"
DRAINING, BAKING, CLEANUP, DONE = "draining", "baking", "cleanup", "done"
ABORTING, ABORTED = "aborting", "aborted"
ROLLING_BACK, ROLLED_BACK = "rolling-back", "rolled-back"
TERMINAL = frozenset({DONE, ABORTED, ROLLED_BACK})

PROMOTE, PROMOTE_FULL, ABORT, ROLLBACK, FINISH = (
    "promote", "promote-full", "abort", "rollback", "finish"
)  # fmt: skip
MAX_EVENTS = 50


@dataclass(frozen=True, slots=True)
class Facts:
    """What the controller observed for one rollout at one moment."""

    rollout: Rollout
    spec: ReleaseSpec
    now: float
    ttl: int = 0  # the service's TTL
    release: Release | None = None
    endpoints: Mapping[str, Endpoint] = field(default_factory=dict)  # of the service, by id
    containers: Mapping[str, Container] = field(default_factory=dict)  # of the service, by name
    allocations: Mapping[str, Allocation] = field(default_factory=dict)  # by owner
    healthy: Mapping[str, bool] = field(default_factory=dict)  # probe results by container
    waiting_for: str | None = None  # an earlier rollout of the service that is still live
    problem: str | None = None  # the last engine or probe error seen, for the status line
    analysis: Mapping[str, float | None] = field(default_factory=dict)  # by check, this step
    service: Service | None = None  # the service record (ttl_first lowers and restores its TTL)


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do next: start/remove containers, then write ``changes`` and ``rollout``."""

    rollout: Rollout
    changes: tuple[Change, ...] = ()
    start: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()

    def writes(self, before: Rollout) -> bool:
        """Whether the registry needs a write."""
        return bool(self.changes) or self.rollout != before


def is_live(rollout: Rollout) -> bool:
    """Whether the rollout still has work to do."""
    return rollout.phase not in TERMINAL


def dwell(facts: Facts) -> float:
    """The minimum hold of a traffic change: the service TTL plus the propagation allowance."""
    return facts.ttl + facts.spec.propagation


def advance(f: Facts) -> Plan:
    """The next step of the rollout."""
    handler = _HANDLERS.get(f.rollout.phase)
    return handler(f) if handler else Plan(f.rollout)


# -- helpers ------------------------------------------------------------------------------------


def _event(
    r: Rollout, now: float, text: str, phase: str | None = None, **extra: object
) -> tuple[dict[str, object], ...]:
    ev = {"time": now, "phase": phase or r.phase, "percent": r.percent, "text": text, **extra}
    return (*(dict(e) for e in r.events), ev)[-MAX_EVENTS:]


def note(r: Rollout, now: float, text: str, **fields: object) -> Rollout:
    """``r`` with an event (and changed fields) but no phase change: how intents are recorded."""
    return replace(r, events=_event(r, now, text), **fields)  # type: ignore[arg-type]


def _to(
    f: Facts, phase: str, text: str, extra: Mapping[str, object] | None = None, **fields: object
) -> Rollout:
    """The record moved to ``phase`` now, with an event (carrying ``extra`` fields)."""
    r = replace(f.rollout, **fields)  # type: ignore[arg-type]
    ev = _event(r, f.now, text, phase, **(extra or {}))
    return replace(r, phase=phase, since=f.now, message=text, events=ev)


def _finite(value: float | None) -> float | None:
    return value if value is not None and value == value and abs(value) != float("inf") else None


def analysis_rows(f: Facts) -> dict[str, dict[str, object]]:
    """Each check's last value in this step, its verdict and threshold (JSON-safe: an
    infinite or NaN value is stored as null, the verdict says what it was)."""
    out: dict[str, dict[str, object]] = {}
    for check in f.spec.analysis:
        value = f.analysis.get(check.name)
        out[check.name] = {"value": _finite(value), "verdict": judge(check, value),
                           "threshold": threshold(check)}  # fmt: skip
    return out


ANALYSIS_EVENT = "analysis"  # the ``kind`` of the event that keeps the last analysis values


def record_analysis(f: Facts) -> Facts:
    """``f`` with this step's analysis values as the rollout's last event (before
    ``advance`` moves on, so the values that decided a move are kept): the step's own
    analysis event is replaced in place (one per step, not one per evaluation), so the
    history keeps each step's last values and ``rolling status`` shows them."""
    r = f.rollout
    if not f.spec.analysis or r.phase != CANARY or not f.analysis:
        return f
    rows = analysis_rows(f)
    text = "analysis: " + "; ".join(
        f"{name} {'no data' if row['verdict'] == 'nodata' else _show(f.analysis.get(name))} "
        f"({row['threshold']})"
        for name, row in rows.items()
    )
    events = [dict(e) for e in r.events]
    last = events[-1] if events else {}
    if last.get("kind") == ANALYSIS_EVENT and last.get("since") == r.since:
        if last.get("analysis") == rows:
            return f
        events.pop()
    ev = {"time": f.now, "phase": r.phase, "percent": r.percent, "text": text,
          "kind": ANALYSIS_EVENT, "since": r.since, "analysis": rows}  # fmt: skip
    return replace(f, rollout=replace(r, events=(*events, ev)[-MAX_EVENTS:]))


def _show(value: float | None) -> str:
    return "no data" if value is None else f"{value:g}"


def _why(r: Rollout) -> str:
    """``": <the event that recorded the abort>"`` (who asked, or the controller's cause)."""
    texts = [str(e.get("text", "")) for e in r.events if str(e.get("text", "")).startswith(
        ("abort", "rollback"))]  # fmt: skip
    return f" ({texts[-1]})" if texts else ""


def _say(r: Rollout, text: str) -> Rollout:
    return r if r.message == text else replace(r, message=text)


def _mine(f: Facts) -> list[Replica]:
    return replicas(f.spec, f.rollout.version)


def _release(f: Facts, stable: str | None, canary: str | None = None, pct: float = 0.0) -> Change:
    return Change.put(Release(f.spec.service, stable, canary, pct))


def _weights(f: Facts, weights: Mapping[str, int]) -> list[Change]:
    """Puts of the registered endpoints among ``weights`` with their new weight."""
    out = []
    for eid, weight in sorted(weights.items()):
        ep = f.endpoints.get(eid)
        if ep is not None and ep.weight != weight:
            out.append(Change.put(replace(ep, weight=weight)))
    return out


def _cleanup(f: Facts, targets: Iterable[str]) -> tuple[list[Change], list[str], bool]:
    """Deregister, then remove, then free: ``(changes, containers to remove, finished)``."""
    changes: list[Change] = []
    remove: list[str] = []
    left = False
    for name in sorted(set(targets)):
        if name in f.endpoints:
            changes.append(Change.delete("endpoint", f"{f.spec.service}/{name}"))
            left = True
        elif name in f.containers:
            remove.append(name)
            left = True
        elif name in f.allocations:
            changes.append(Change.delete("allocation", f.allocations[name].key))
            left = True
    return changes, remove, not left


# -- ttl-first -----------------------------------------------------------------------------------


def _lower_ttl(f: Facts) -> Plan | None:
    """A ttl_first rollout's first pass: the TTL to the floor, the old one noted."""
    svc, spec, r = f.service, f.spec, f.rollout
    if (not spec.ttl_first or r.previous is None or spec.ttl_restore is not None
            or svc is None or svc.ttl <= spec.ttl_floor):  # fmt: skip
        return None
    stored = spec.to_dict()
    stored["rollout"] = {**stored["rollout"], "ttl_restore": svc.ttl, "ttl_lowered": f.now}
    text = (f"ttl-first: TTL {svc.ttl}s -> {spec.ttl_floor}s; the first traffic move waits "
            f"{svc.ttl + spec.propagation:g}s")  # fmt: skip
    rollout = note(replace(r, spec=stored), f.now, text, message=text)
    return Plan(rollout, (Change.put(replace(svc, ttl=spec.ttl_floor)),))


def _ttl_wait(f: Facts) -> float:
    """Seconds before the first traffic move of a ttl_first rollout (answers cached with
    the old TTL must have expired)."""
    spec = f.spec
    if spec.ttl_restore is None or spec.ttl_lowered is None:
        return 0.0
    return max(spec.ttl_lowered + spec.ttl_restore + spec.propagation - f.now, 0.0)


def _restore_ttl(f: Facts) -> tuple[list[Change], str]:
    """The TTL put back at the end of a ttl_first rollout (unless changed meanwhile)."""
    svc, spec = f.service, f.spec
    if spec.ttl_restore is None or svc is None or svc.ttl == spec.ttl_restore:
        return [], ""
    if svc.ttl != spec.ttl_floor:
        return [], f"; TTL left at {svc.ttl}s (changed meanwhile)"
    return [Change.put(replace(svc, ttl=spec.ttl_restore))], f"; TTL {spec.ttl_restore}s again"


# -- phases -------------------------------------------------------------------------------------


def _pending(f: Facts) -> Plan:
    r = f.rollout
    if r.intent in (ABORT, ROLLBACK):
        return Plan(_to(f, ABORTED, "aborted before it started", intent=None))
    if f.waiting_for is not None:
        return Plan(_say(r, f"waiting for rollout {f.waiting_for} of this service to finish"))
    return Plan(_to(f, STARTING, f"starting {f.spec.total()} containers of {r.version}"))


def _starting(f: Facts) -> Plan:
    r = f.rollout
    if r.intent in (ABORT, ROLLBACK):
        return _abort(f, f"aborted while starting{_why(r)}")
    lowered = _lower_ttl(f)
    if lowered is not None:
        return lowered
    mine = _mine(f)
    start = tuple(
        rep.name for rep in mine
        if rep.name in f.allocations
        and (rep.name not in f.containers or not f.containers[rep.name].running)
    )  # fmt: skip
    ready: dict[str, int] = {dc: 0 for dc, n in f.spec.replicas.items() if n}
    for rep in mine:
        c = f.containers.get(rep.name)
        if c is not None and c.running and f.healthy.get(rep.name) and rep.name in f.allocations:
            ready[rep.dc] += 1
    healthy, total = sum(ready.values()), len(mine)
    if healthy == total and _ttl_wait(f) > 0:
        text = (f"{total}/{total} healthy; ttl-first: waiting {_ttl_wait(f):g}s for answers "
                f"cached with the old TTL")  # fmt: skip
        return Plan(_say(replace(r, ready=ready), text), (), start)
    if healthy == total:
        register = [
            Change.put(
                Endpoint(
                    f.spec.service,
                    rep.name,
                    rep.dc,
                    f.allocations[rep.name].address,
                    f.spec.port,
                    r.version,
                    f.spec.weight,
                    True,
                    {"rollout": r.id, "host": rep.host},
                )
            )
            for rep in mine
        ]
        r = replace(r, ready=ready)
        f = replace(f, rollout=r)
        if r.previous is None or not f.spec.steps or r.intent == PROMOTE_FULL:
            return _promote(f, register, f"{total}/{total} healthy and registered")
        first = f.spec.steps[0]
        rollout = _to(f, CANARY, f"{total}/{total} healthy; canary at {first.percent:g}%",
                      step=0, percent=first.percent, intent=None)  # fmt: skip
        changes = [*register, _release(f, r.previous, r.version, first.percent)]
        return Plan(rollout, tuple(changes), start)
    if f.now > r.since + f.spec.health.deadline:
        cause = f": {f.problem}" if f.problem else ""
        return _abort(f, f"health deadline passed with {healthy}/{total} healthy{cause}")
    status = f"{healthy}/{total} containers healthy"
    return Plan(_say(replace(r, ready=ready), status), (), start)


def _canary(f: Facts) -> Plan:
    r = f.rollout
    if r.intent in (ABORT, ROLLBACK):
        return _abort(f, f"aborted at {r.percent:g}%{_why(r)}")
    decision, why = decide(f.spec.analysis, f.analysis, r.since, f.now)
    if decision == "abort":
        extra = {"analysis": analysis_rows(f), "at_percent": r.percent}
        return _abort(f, f"aborted at {r.percent:g}%: {why}", extra)
    steps = f.spec.steps
    step = steps[min(max(r.step, 0), len(steps) - 1)]
    target: str | None = None
    if r.intent == PROMOTE_FULL:
        target = "promote"
    elif r.intent == PROMOTE:
        target = "next"
    elif r.paused:
        return Plan(_say(r, f"paused at {r.percent:g}%"))
    elif step.manual:
        return Plan(_say(r, f"at {r.percent:g}%, waiting for promote"))
    elif f.now >= r.since + max(step.pause or 0.0, dwell(f)):
        if decision == "hold":
            return Plan(_say(r, f"at {r.percent:g}%, holding: {why}"))
        target = "next"
    if target is None:
        hold = max(step.pause or 0.0, dwell(f))
        return Plan(_say(r, f"at {r.percent:g}%, holding {hold:g}s before the next step"))
    if f.now < r.since + dwell(f):
        return Plan(_say(r, f"at {r.percent:g}%, holding TTL + propagation ({dwell(f):g}s)"))
    if target == "next" and r.step + 1 < len(steps):
        nxt = steps[r.step + 1]
        rollout = _to(f, CANARY, f"canary at {nxt.percent:g}%", step=r.step + 1,
                      percent=nxt.percent, intent=None, paused=False)  # fmt: skip
        return Plan(rollout, (_release(f, r.previous, r.version, nxt.percent),))
    mine = _mine(f)
    healthy = sum(1 for rep in mine if rep.name in f.endpoints and f.endpoints[rep.name].healthy)
    if healthy < len(mine):  # promotion needs the new version at its full healthy count
        return Plan(_say(r, f"at {r.percent:g}%, waiting for {len(mine)}/{len(mine)} healthy "
                            f"{r.version} containers before promotion ({healthy} now)"))  # fmt: skip
    return _promote(f, [], f"promoted {r.version} from {r.percent:g}%")


def _promote(f: Facts, extra: list[Change], text: str) -> Plan:
    """stable = new, canary cleared, every older endpoint to weight 0, in one write."""
    r = f.rollout
    mine = {rep.name for rep in _mine(f)}
    old = {eid: ep.weight for eid, ep in f.endpoints.items() if eid not in mine}
    changes = [*extra, _release(f, r.version), *_weights(f, dict.fromkeys(old, 0))]
    if not old:
        restore, said = _restore_ttl(f)
        done = _to(f, DONE, text + said, percent=100.0, intent=None, paused=False)
        return Plan(done, (*changes, *restore))
    rollout = _to(f, DRAINING, f"{text}; draining {len(old)} older endpoints",
                  drained=old, percent=100.0, intent=None, paused=False)  # fmt: skip
    return Plan(rollout, tuple(changes))


def _abort(f: Facts, text: str, extra: Mapping[str, object] | None = None) -> Plan:
    """Canary cleared at once, the new endpoints to weight 0; cleanup after the dwell."""
    changes: list[Change] = []
    if f.release is not None and (f.release.canary or f.release.canary_percent):
        changes.append(_release(f, f.release.stable))
    changes += _weights(f, {rep.name: 0 for rep in _mine(f)})
    rollout = _to(f, ABORTING, text, extra, intent=None, percent=0.0, paused=False)
    return Plan(rollout, tuple(changes))


def _draining(f: Facts) -> Plan:
    r = f.rollout
    if r.intent == ROLLBACK:
        return _rollback(f)
    if f.now < r.since + dwell(f):
        return Plan(_say(r, f"draining older endpoints ({dwell(f):g}s)"))
    restore, said = _restore_ttl(f)  # the last move has converged: one floor TTL is past
    if f.spec.bake > 0 and r.intent != FINISH:
        text = f"keeping the previous containers warm for {f.spec.bake:g}s{said}"
        return Plan(_to(f, BAKING, text), tuple(restore))
    return Plan(_to(f, CLEANUP, f"removing the previous containers{said}", intent=None),
                tuple(restore))  # fmt: skip


def _baking(f: Facts) -> Plan:
    r = f.rollout
    if r.intent == ROLLBACK:
        return _rollback(f)
    if r.intent == FINISH or f.now >= r.since + f.spec.bake:
        return Plan(_to(f, CLEANUP, "removing the previous containers", intent=None))
    return Plan(r)


def _rollback(f: Facts) -> Plan:
    """The flip back: previous stable, its endpoints at their weights, ours at 0."""
    r = f.rollout
    warm = {eid: w for eid, w in r.drained.items() if eid in f.endpoints}
    if r.previous is None or not any(f.endpoints[eid].healthy for eid in warm):
        text = "rollback refused: the previous containers are gone or unhealthy (rollback again redeploys)"
        return Plan(_say(replace(r, intent=None), text))
    changes = [
        _release(f, r.previous),
        *_weights(f, warm),
        *_weights(f, {rep.name: 0 for rep in _mine(f)}),
    ]
    rollout = _to(f, ROLLING_BACK, f"rolled back to {r.previous}", intent=None, percent=0.0)
    return Plan(rollout, tuple(changes))


def _cleanup_phase(f: Facts) -> Plan:
    changes, remove, finished = _cleanup(f, f.rollout.drained)
    if finished:
        restore, said = _restore_ttl(f)
        return Plan(_to(f, DONE, f"{f.rollout.version} is stable{said}"), tuple(restore))
    return Plan(f.rollout, tuple(changes), (), tuple(remove))


def _undo(done: str) -> Callable[[Facts], Plan]:
    def handler(f: Facts) -> Plan:
        r = f.rollout
        mine = [rep.name for rep in _mine(f)]
        if any(n in f.endpoints for n in mine) and f.now < r.since + dwell(f):
            return Plan(r)  # let cached answers expire before the containers go
        changes, remove, finished = _cleanup(f, mine)
        if finished:
            restore, said = _restore_ttl(f)
            text = f"{r.message}; the new containers are removed{said}"
            return Plan(_to(f, done, text), tuple(restore))
        return Plan(r, tuple(changes), (), tuple(remove))

    return handler


_HANDLERS = {
    PENDING: _pending,
    STARTING: _starting,
    CANARY: _canary,
    DRAINING: _draining,
    BAKING: _baking,
    CLEANUP: _cleanup_phase,
    ABORTING: _undo(ABORTED),
    ROLLING_BACK: _undo(ROLLED_BACK),
}
