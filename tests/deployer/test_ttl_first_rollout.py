"""``[rollout] ttl_first = true``: the controller lowers the service TTL to the floor when
a rollout starts, moves traffic first one old TTL (plus propagation) later, holds each
step for the floor's dwell, and restores the TTL one dwell after the last move (or when
an abort ends); the old TTL is kept in the rollout's stored spec, so a restarted
controller still restores it. Memory engines, a SQLite store, a fake clock."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from deployer import intents
from deployer.errors import SpecError
from registry import Change, Snapshot
from tests.deployer.fakes import SERVICE, World, phase, spec

TTL_FIRST = {"propagation": "5s", "bake": "0s", "ttl_first": True, "ttl_floor": "2s"}
STEPS = [{"percent": 10, "pause": "1s"}, {"percent": 50, "pause": "1s"}]


def ttl(snap: Snapshot) -> int:
    return snap.services[SERVICE].ttl


async def v2(world: World, **overrides: Any) -> str:
    """v1 stable (TTL 10), then v2 deployed TTL-first; the rollout id."""
    r = await world.deploy("v1")
    await world.until(phase(r.id, "done"))
    r = await world.deploy("v2", steps=STEPS, rollout=TTL_FIRST, **overrides)
    return r.id


async def test_lowered_first_moved_one_old_ttl_later_restored_after_the_last_move(
    world: World,
) -> None:
    rid = await v2(world)
    snap = await world.until(lambda s: ttl(s) == 2, seconds=0.5)
    lowered = world.clock()
    r = snap.rollouts[f"{SERVICE}/{rid}"]
    assert r.spec["rollout"]["ttl_restore"] == 10 and r.phase == "starting"
    assert "ttl-first: TTL 10s -> 2s" in r.events[-1]["text"]
    snap = await world.until(phase(rid, "canary"), seconds=0.5)
    assert world.clock() - lowered >= 15  # one old TTL (10) + propagation (5)
    began = world.clock()
    snap = await world.until(lambda s: s.releases[SERVICE].canary_percent == 50, seconds=0.5)
    assert 7 <= world.clock() - began < 10  # the floor's dwell (2 + 5), not the old one's
    assert ttl(snap) == 2
    snap = await world.until(phase(rid, "draining"), seconds=0.5)
    moved = world.clock()
    assert ttl(snap) == 2  # still low while the promotion converges
    snap = await world.until(lambda s: ttl(s) == 10, seconds=0.5)
    assert world.clock() - moved >= 7
    snap = await world.until(phase(rid, "done"))
    assert ttl(snap) == 10 and snap.releases[SERVICE].stable == "v2"


async def test_an_abort_restores_the_ttl_and_a_restarted_controller_too(world: World) -> None:
    rid = await v2(world)
    await world.until(lambda s: ttl(s) == 2, seconds=0.5)
    world.controller = world.new_controller()  # the old TTL is in the registry, not in memory
    await world.until(phase(rid, "canary"), seconds=0.5)
    await world.act(intents.abort)
    snap = await world.until(phase(rid, "aborted"))
    assert ttl(snap) == 10 and "TTL 10s again" in snap.rollouts[f"{SERVICE}/{rid}"].message


async def test_a_ttl_changed_meanwhile_is_left_alone(world: World) -> None:
    rid = await v2(world)
    snap = await world.until(lambda s: ttl(s) == 2, seconds=0.5)
    await world.store.apply([Change.put(replace(snap.services[SERVICE], ttl=30))])
    snap = await world.until(phase(rid, "done"))
    assert ttl(snap) == 30
    assert any("TTL left at 30s" in e["text"] for e in snap.rollouts[f"{SERVICE}/{rid}"].events)


async def test_a_first_deploy_and_a_ttl_at_the_floor_are_not_lowered(world: World) -> None:
    r = await world.deploy("v1", rollout=TTL_FIRST)
    snap = await world.until(phase(r.id, "done"))
    assert ttl(snap) == 10 and "ttl_restore" not in snap.rollouts[r.key].spec["rollout"]
    r = await world.deploy("v2", steps=STEPS, rollout={**TTL_FIRST, "ttl_floor": "10s"})
    snap = await world.until(phase(r.id, "done"))
    assert ttl(snap) == 10 and "ttl_restore" not in snap.rollouts[r.key].spec["rollout"]


@pytest.mark.parametrize(
    ("rollout", "field"),
    [
        ({"ttl_first": "yes"}, "rollout.ttl_first"),
        ({"ttl_floor": "0s"}, "rollout.ttl_floor"),
        ({"ttl_floor": "soon"}, "rollout.ttl_floor"),
        ({"ttl_restore": -1}, "rollout.ttl_restore"),
    ],
)
def test_bad_ttl_first_keys_name_the_key(rollout: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as err:
        spec("v1", rollout=rollout)
    assert err.value.field == field


def test_the_noted_ttl_round_trips_and_a_redeploy_starts_without_it() -> None:
    noted = spec("v1", rollout={**TTL_FIRST, "ttl_restore": 300, "ttl_lowered": 12.5})
    again = type(noted).from_dict(noted.to_dict())
    assert (again.ttl_first, again.ttl_floor, again.ttl_restore, again.ttl_lowered) == (
        True, 2, 300, 12.5)  # fmt: skip
    assert noted.without_steps().ttl_restore is None
