"""The state machine alone: facts in, plan out (no store, no engine, no clock)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from deployer.container import container_name
from deployer.engine import Container
from deployer.rollout import Facts, advance, dwell
from registry import Allocation, Endpoint, Release, Rollout
from tests.deployer.fakes import SERVICE, spec

V1 = [container_name(SERVICE, dc, "v1", n) for dc, n in (("cloud", 1), ("idc", 1), ("idc", 2))]
V2 = [container_name(SERVICE, dc, "v2", n) for dc, n in (("cloud", 1), ("idc", 1), ("idc", 2))]
S = spec("v2")


def rollout(**fields: Any) -> Rollout:
    base = Rollout(SERVICE, "r5", "v2", previous="v1", since=100.0, created=100.0,
                   spec=S.to_dict())  # fmt: skip
    return replace(base, **fields)


def endpoint(name: str, weight: int = 100, healthy: bool = True) -> Endpoint:
    dc = "cloud" if "-cloud-" in name else "idc"
    return Endpoint(SERVICE, name, dc, f"10.0.0.{sum(map(ord, name)) % 250}", 8080,
                    name.split("-")[-2], weight, healthy)  # fmt: skip


def facts(r: Rollout, now: float, **kw: Any) -> Facts:
    return Facts(rollout=r, spec=S, now=now, ttl=10, **kw)


def running(*names: str) -> dict[str, Container]:
    return {n: Container(n, "memory://x", "running") for n in names}


def allocations(*names: str) -> dict[str, Allocation]:
    return {n: Allocation("idc", f"10.0.0.{i + 10}", n) for i, n in enumerate(names)}


def test_pending_waits_for_an_earlier_rollout() -> None:
    plan = advance(facts(rollout(), 200.0, waiting_for="r4"))
    assert plan.rollout.phase == "pending" and "r4" in plan.rollout.message and not plan.changes
    assert advance(facts(rollout(), 200.0)).rollout.phase == "starting"


def test_starting_creates_only_allocated_missing_containers() -> None:
    f = facts(rollout(phase="starting"), 101.0, allocations=allocations(V2[0], V2[1]),
              containers={V2[0]: Container(V2[0], "memory://x", "exited")})  # fmt: skip
    plan = advance(f)
    assert plan.start == (V2[0], V2[1]) and not plan.changes


def test_canary_begins_once_every_replica_is_healthy() -> None:
    names = V2
    f = facts(rollout(phase="starting"), 101.0, allocations=allocations(*names),
              containers=running(*names), healthy=dict.fromkeys(names, True),
              release=Release(SERVICE, "v1"))  # fmt: skip
    plan = advance(f)
    assert (plan.rollout.phase, plan.rollout.step, plan.rollout.percent) == ("canary", 0, 10)
    puts = {c.key: c.value for c in plan.changes}
    assert puts[SERVICE] == Release(SERVICE, "v1", "v2", 10)
    assert {k for k in puts if k != SERVICE} == {f"{SERVICE}/{n}" for n in names}
    one_down = replace(f, healthy={**f.healthy, names[0]: False})
    assert advance(one_down).rollout.phase == "starting"


def test_the_minimum_hold_is_ttl_plus_propagation() -> None:
    r = rollout(phase="canary", step=0, percent=10, intent="promote")
    assert dwell(facts(r, 0)) == 15
    assert advance(facts(r, 114.9)).rollout.step == 0
    assert advance(facts(r, 115.0)).rollout.step == 1


def test_abort_flips_the_release_and_zeroes_the_new_weights_in_one_plan() -> None:
    r = rollout(phase="canary", step=1, percent=50, intent="abort")
    eps = {n: endpoint(n) for n in V1 + V2}
    plan = advance(facts(r, 120.0, endpoints=eps, release=Release(SERVICE, "v1", "v2", 50)))
    assert plan.rollout.phase == "aborting" and plan.rollout.percent == 0
    puts = {c.key: c.value for c in plan.changes}
    assert puts[SERVICE] == Release(SERVICE, "v1")
    assert all(puts[f"{SERVICE}/{n}"].weight == 0 for n in V2)  # type: ignore[union-attr]
    assert not any(f"{SERVICE}/{n}" in puts for n in V1)


def test_undo_deregisters_then_removes_then_frees() -> None:
    r = rollout(phase="aborting", since=100.0)
    eps = {n: endpoint(n, weight=0) for n in V2}
    held = running(*V2)
    allocs = allocations(*V2)
    early = advance(facts(r, 110.0, endpoints=eps, containers=held, allocations=allocs))
    assert not early.changes and not early.remove  # cached answers still point there
    step1 = advance(facts(r, 116.0, endpoints=eps, containers=held, allocations=allocs))
    assert {c.op for c in step1.changes} == {"delete"} and not step1.remove
    assert {c.kind for c in step1.changes} == {"endpoint"}
    step2 = advance(facts(r, 117.0, containers=held, allocations=allocs))
    assert set(step2.remove) == set(V2) and not step2.changes
    step3 = advance(facts(r, 118.0, allocations=allocs))
    assert {c.kind for c in step3.changes} == {"allocation"} and len(step3.changes) == 3
    done = advance(facts(r, 119.0))
    assert done.rollout.phase == "aborted"


def test_rollback_is_refused_when_the_previous_containers_are_not_healthy() -> None:
    r = rollout(phase="baking", intent="rollback", drained=dict.fromkeys(V1, 100))
    eps = {**{n: endpoint(n, 0, healthy=False) for n in V1}, **{n: endpoint(n) for n in V2}}
    plan = advance(facts(r, 130.0, endpoints=eps))
    assert plan.rollout.phase == "baking" and plan.rollout.intent is None
    assert "refused" in plan.rollout.message and not plan.changes
    eps[V1[0]] = endpoint(V1[0], 0, healthy=True)
    plan = advance(facts(r, 130.0, endpoints=eps))
    assert plan.rollout.phase == "rolling-back"
    puts = {c.key: c.value for c in plan.changes}
    assert puts[SERVICE] == Release(SERVICE, "v1")
    assert puts[f"{SERVICE}/{V1[0]}"].weight == 100  # type: ignore[union-attr]


def test_terminal_phases_plan_nothing() -> None:
    for phase in ("done", "aborted", "rolled-back"):
        r = rollout(phase=phase)
        plan = advance(facts(r, 1e9))
        assert plan.rollout == r and not plan.changes and not plan.start and not plan.remove
