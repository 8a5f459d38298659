"""The controller against memory engines, a SQLite store and a fake clock: whole rollouts."""

from __future__ import annotations

import re

import pytest

from deployer import intents
from deployer.container import container_name
from deployer.errors import IntentRefusedError, NoRolloutError
from registry import Snapshot
from tests.deployer.fakes import SERVICE, World, phase

V1 = [container_name(SERVICE, dc, "v1", n) for dc, n in (("cloud", 1), ("idc", 1), ("idc", 2))]
V2 = [container_name(SERVICE, dc, "v2", n) for dc, n in (("cloud", 1), ("idc", 1), ("idc", 2))]


def versions(snap: Snapshot) -> dict[str, tuple[str, int, bool]]:
    return {e.id: (e.version, e.weight, e.healthy) for e in snap.endpoints_of(SERVICE).values()}


async def deployed_v1(world: World) -> Snapshot:
    r = await world.deploy("v1")
    return await world.until(phase(r.id, "done"))


async def test_first_deploy_starts_checks_registers_and_makes_stable(world: World) -> None:
    r = await world.deploy("v1")
    assert r.phase == "pending" and r.previous is None
    snap = await world.until(phase(r.id, "done"))
    assert snap.releases[SERVICE].stable == "v1" and snap.releases[SERVICE].canary is None
    assert versions(snap) == {name: ("v1", 100, True) for name in V1}
    assert sorted(world.containers()) == sorted(V1)
    assert world.created() == 3
    # two idc replicas go round-robin over the two idc hosts
    assert set(world.engine("memory://idc-a").containers) == {V1[1]}
    assert set(world.engine("memory://idc-b").containers) == {V1[2]}
    # every container holds its own address from its datacenter's pool
    addrs = {a.owner: a.address for a in snap.allocations.values()}
    assert addrs == {V1[0]: "10.2.0.2", V1[1]: "10.1.0.10", V1[2]: "10.1.0.11"}
    ep = snap.endpoints_of(SERVICE)[V1[1]]
    assert (ep.dc, ep.address, ep.port, ep.labels["rollout"]) == ("idc", "10.1.0.10", 8080, r.id)


async def test_endpoints_are_registered_only_once_every_replica_is_healthy(world: World) -> None:
    r = await world.deploy("v1")
    await world.tick()  # pending -> starting
    await world.tick()  # allocate + create
    snap = await world.snap()
    assert snap.rollouts[r.key].phase == "starting"
    assert len(world.containers()) == 3
    assert versions(snap) == {}  # rise = 2: nobody is healthy after one probe
    await world.until(lambda s: bool(s.endpoints_of(SERVICE)))
    assert len(versions(await world.snap())) == 3


async def test_canary_steps_hold_ttl_plus_propagation_and_pauses(world: World) -> None:
    await deployed_v1(world)
    r = await world.deploy("v2")
    snap = await world.until(phase(r.id, "canary"))
    assert snap.releases[SERVICE].canary == "v2" and snap.releases[SERVICE].canary_percent == 10
    assert snap.releases[SERVICE].stable == "v1"
    since = snap.rollouts[r.key].since
    # step 1 pauses 30 s (> TTL 10 + propagation 5): nothing moves before that
    snap = await world.until(lambda s: s.releases[SERVICE].canary_percent == 50)
    assert world.clock() - since >= 30
    # step 2 is manual: it holds however long we wait
    for _ in range(100):
        await world.tick(5)
    snap = await world.snap()
    assert snap.rollouts[r.key].percent == 50 and snap.rollouts[r.key].phase == "canary"
    assert "waiting for promote" in snap.rollouts[r.key].message
    await world.act(intents.promote)
    since = world.clock()
    snap = await world.until(lambda s: s.releases[SERVICE].canary_percent == 100, seconds=0.5)
    snap = await world.until(phase(r.id, "draining"), seconds=0.5)
    # the 100 % step held at least TTL + propagation (its own pause is 10 s)
    assert world.clock() - since >= 15
    rel = snap.releases[SERVICE]
    assert (rel.stable, rel.canary, rel.canary_percent) == ("v2", None, 0)
    eps = versions(snap)
    assert all(eps[n] == ("v1", 0, True) for n in V1)  # drained, still registered and warm
    assert all(eps[n] == ("v2", 100, True) for n in V2)


async def test_promote_waits_for_the_minimum_hold(world: World) -> None:
    await deployed_v1(world)
    r = await world.deploy("v2")
    snap = await world.until(phase(r.id, "canary"))
    start = snap.rollouts[r.key].since
    await world.act(intents.promote)
    snap = await world.until(lambda s: s.releases[SERVICE].canary_percent == 50, seconds=0.25)
    assert snap.rollouts[r.key].since - start >= 15  # TTL 10 + propagation 5


async def test_promote_full_skips_the_remaining_steps(world: World) -> None:
    await deployed_v1(world)
    r = await world.deploy("v2")
    await world.until(phase(r.id, "canary"))
    await world.act(intents.promote, full=True)
    snap = await world.until(phase(r.id, "draining"))
    assert snap.releases[SERVICE].stable == "v2"
    percents = [e["percent"] for e in snap.rollouts[r.key].events if e["phase"] == "canary"]
    assert 50 not in percents


async def test_pause_holds_a_timed_step_and_resume_continues(world: World) -> None:
    await deployed_v1(world)
    r = await world.deploy("v2")
    await world.until(phase(r.id, "canary"))
    await world.act(intents.pause)
    for _ in range(60):
        await world.tick()
    snap = await world.snap()
    assert snap.rollouts[r.key].percent == 10 and snap.rollouts[r.key].paused
    await world.act(intents.resume)
    await world.until(lambda s: s.releases[SERVICE].canary_percent == 50)


async def test_bake_then_cleanup_removes_the_previous_version(world: World) -> None:
    await deployed_v1(world)
    r = await world.deploy("v2", steps=[])
    snap = await world.until(phase(r.id, "baking"))
    assert sorted(world.containers()) == sorted(V1 + V2)  # warm during the bake
    snap = await world.until(phase(r.id, "done"))
    assert sorted(world.containers()) == sorted(V2)
    assert set(versions(snap)) == set(V2)
    assert {a.owner for a in snap.allocations.values()} == set(V2)
    assert world.clock() - snap.rollouts[r.key].created >= 60 + 15


async def test_abort_flips_traffic_at_once_then_removes_the_new_containers(world: World) -> None:
    await deployed_v1(world)
    r = await world.deploy("v2")
    await world.until(lambda s: s.releases[SERVICE].canary_percent == 50)
    await world.act(intents.abort)
    await world.tick(0.1)
    snap = await world.snap()
    rel = snap.releases[SERVICE]
    assert (rel.stable, rel.canary, rel.canary_percent) == ("v1", None, 0)
    assert all(versions(snap)[n][1] == 0 for n in V2)  # weight 0, still registered
    assert snap.rollouts[r.key].phase == "aborting"
    snap = await world.until(phase(r.id, "aborted"))
    assert sorted(world.containers()) == sorted(V1)
    assert set(versions(snap)) == set(V1)
    assert {a.owner for a in snap.allocations.values()} == set(V1)
    with pytest.raises(NoRolloutError):
        intents.abort(snap, SERVICE, world.clock())


async def test_health_deadline_aborts_automatically(world: World) -> None:
    await deployed_v1(world)
    world.down.update({"10.1.0.12", "10.1.0.13", "10.2.0.3"})  # v2's addresses never answer
    r = await world.deploy("v2")
    snap = await world.until(phase(r.id, "aborted"))
    final = snap.rollouts[r.key].message  # names the cause, not only the deadline
    assert "health deadline passed with 0/3 healthy" in final
    assert re.search(
        r"api\.example\.com-\w+-v2-\d: probe 10\.\d+\.0\.\d+:8080: Connection refused", final
    ), final
    assert snap.releases[SERVICE].stable == "v1"
    assert sorted(world.containers()) == sorted(V1)


async def test_rollback_while_warm_is_a_registry_flip(world: World) -> None:
    await deployed_v1(world)
    r = await world.deploy("v2", steps=[])
    await world.until(phase(r.id, "baking"))
    created = world.created()
    _, changes = intents.rollback(await world.snap(), SERVICE, world.clock())
    snap = await world.snap()
    await world.store.apply(changes, expected_revision=snap.revision)
    await world.tick(0.1)
    snap = await world.snap()
    assert snap.releases[SERVICE].stable == "v1"
    assert all(versions(snap)[n] == ("v1", 100, True) for n in V1)
    snap = await world.until(phase(r.id, "rolled-back"))
    assert sorted(world.containers()) == sorted(V1)
    assert world.created() == created  # nothing was started for the rollback


async def test_rollback_after_the_bake_redeploys_the_previous_version(world: World) -> None:
    await deployed_v1(world)
    r = await world.deploy("v2", steps=[])
    await world.until(phase(r.id, "done"))
    new, changes = intents.rollback(await world.snap(), SERVICE, world.clock())
    assert new is not None and new.version == "v1" and new.previous == "v2"
    snap = await world.snap()
    await world.store.apply(changes, expected_revision=snap.revision)
    snap = await world.until(phase(new.id, "done"))
    assert snap.releases[SERVICE].stable == "v1"
    assert sorted(world.containers()) == sorted(V1)
    assert not any(e["phase"] == "canary" for e in snap.rollouts[new.key].events)


async def test_a_restarted_controller_resumes_without_duplicates(world: World) -> None:
    await deployed_v1(world)
    r = await world.deploy("v2")
    await world.tick()
    await world.tick()  # v2 containers exist, not yet registered
    assert world.created() == 6
    for _ in range(3):  # crash and restart, three times
        await world.controller.close()
        world.controller = world.new_controller()
        await world.tick()
    snap = await world.until(phase(r.id, "canary"))
    assert world.created() == 6
    assert sorted(world.containers()) == sorted(V1 + V2)
    assert len({a.address for a in snap.allocations.values()}) == 6


async def test_the_sweep_removes_orphans_and_frees_their_addresses(world: World) -> None:
    snap = await deployed_v1(world)
    # a container left behind by a crashed run (no live rollout, no endpoint)
    stray = world.engine("memory://idc-a")
    from deployer.addresses import Pool, allocate
    from deployer.container import Replica, build
    from tests.deployer.fakes import spec

    s = spec("v0")
    rep = Replica(container_name(SERVICE, "idc", "v0", 1), "idc", 1, "memory://idc-a")
    got = await allocate(world.store, "idc", Pool.parse("p", s.placement["idc"].pool),
                         [rep.name], service=SERVICE, rollout="r0", clock=world.clock)  # fmt: skip
    await stray.run(build(s, "v0", "r0", rep, got[rep.name]))
    assert rep.name in world.containers()
    await world.tick()
    snap = await world.snap()
    assert rep.name not in world.containers()
    assert rep.name not in {a.owner for a in snap.allocations.values()}
    assert sorted(world.containers()) == sorted(V1)


async def test_deploy_is_refused_while_a_rollout_runs(world: World) -> None:
    await deployed_v1(world)
    await world.deploy("v2")
    with pytest.raises(IntentRefusedError):
        await world.deploy("v3")
    with pytest.raises(IntentRefusedError):
        await world.deploy("v1")  # the stable version


async def test_a_deploy_during_the_bake_finishes_it_first(world: World) -> None:
    await deployed_v1(world)
    r2 = await world.deploy("v2", steps=[])
    await world.until(phase(r2.id, "baking"))
    r3 = await world.deploy("v3", steps=[])
    snap = await world.until(phase(r2.id, "done"), seconds=0.5)
    assert snap.rollouts[r3.key].phase in ("pending", "starting")
    assert world.clock() - snap.rollouts[r2.key].since < 60  # the bake was cut short
    snap = await world.until(phase(r3.id, "baking"))
    assert snap.releases[SERVICE].stable == "v3"


async def test_a_pool_exhausted_after_the_deploy_aborts_naming_the_cause(world: World) -> None:
    r = await world.deploy("v1", datacenters={"idc": {"pool": "10.1.0.10-10.1.0.13"}})
    from deployer.addresses import Pool, allocate

    # someone else takes three of the four addresses before the controller starts
    await allocate(world.store, "idc", Pool.parse("p", "10.1.0.10-10.1.0.12"), ["a", "b", "c"],
                   clock=world.clock)  # fmt: skip
    snap = await world.until(phase(r.id, "aborted"))
    final = snap.rollouts[r.key].message
    assert "no free address" in final and "aborted while starting" in final
    assert world.containers() == {}
    assert {a.owner for a in snap.allocations.values()} == {"a", "b", "c"}
