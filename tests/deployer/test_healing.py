"""Self-healing replicas against memory engines and a fake clock: dead containers are
replaced, long-unhealthy ones after ``replace_after``, at a bounded rate; scale intents;
promotion only at the full healthy count; pulls retried with backoff until a deadline."""

from __future__ import annotations

from dataclasses import replace

from deployer import intents
from deployer.container import container_name
from deployer.engine import Container
from deployer.healing import IN_FLIGHT, HealFacts, event, heal, recent
from deployer.spec import ReleaseSpec
from registry import Rollout, Snapshot
from registry.liveness import controllers
from tests.deployer.fakes import SERVICE, World, phase

V1 = [container_name(SERVICE, dc, "v1", n) for dc, n in (("cloud", 1), ("idc", 1), ("idc", 2))]


def endpoints(snap: Snapshot) -> dict[str, tuple[str, int, bool]]:
    return {e.id: (e.address, e.weight, e.healthy) for e in snap.endpoints_of(SERVICE).values()}


def texts(r: Rollout) -> list[str]:
    return [str(e["text"]) for e in r.events]


async def deployed(world: World, **overrides: object) -> Rollout:
    r = await world.deploy("v1", **overrides)
    await world.until(phase(r.id, "done"))
    return await world.rollout(r.id)


async def test_a_killed_container_is_replaced_and_answered_again_after_rise(world: World) -> None:
    r = await deployed(world)
    before = endpoints(await world.snap())[V1[1]]
    created = world.created()
    world.engine("memory://idc-a").kill(V1[1])
    await world.tick()  # the pass sees it exited: replaced at once, endpoint unhealthy
    snap = await world.snap()
    assert endpoints(snap)[V1[1]] == (before[0], 100, False)
    assert world.containers()[V1[1]] == "running" and world.created() == created + 1
    assert any(t.startswith(f"replacing {V1[1]}: its container exited") for t in texts(
        snap.rollouts[r.key]))  # fmt: skip
    await world.tick()  # one good probe: rise = 2, still out of the answers
    assert endpoints(await world.snap())[V1[1]][2] is False
    snap = await world.until(lambda s: endpoints(s)[V1[1]][2] is True)
    assert endpoints(snap)[V1[1]] == before  # same name, same address, same weight
    assert world.engine("memory://idc-a").specs[V1[1]].address == before[0]


async def test_a_removed_container_is_recreated(world: World) -> None:
    await deployed(world)
    del world.engine("memory://cloud-a").containers[V1[0]]
    await world.until(lambda s: endpoints(s)[V1[0]][2] is True and V1[0] in world.containers())
    assert world.containers()[V1[0]] == "running"


async def test_an_unhealthy_container_is_replaced_only_after_replace_after(world: World) -> None:
    r = await deployed(world, replace_after="20s")
    address = endpoints(await world.snap())[V1[2]][0]
    created = world.created()
    world.down.add(address)  # running, but its probes fail
    await world.until(lambda s: endpoints(s)[V1[2]][2] is False)
    for _ in range(15):
        await world.tick()
    assert world.created() == created  # not yet: 20 s have not passed
    world.down.discard(address)  # the replacement would be healthy
    world.down.add(address)
    await world.until(lambda _: world.created() == created + 1, ticks=30)
    rollout = await world.rollout(r.id)
    assert any("unhealthy for" in t and "replace_after 20s" in t for t in texts(rollout))


async def test_replacements_are_rate_limited_and_recorded(world: World) -> None:
    r = await deployed(world, replace_limit=1, replace_window="10m")
    engine = world.engine("memory://idc-a")
    engine.kill(V1[1])
    await world.tick()
    assert engine.containers[V1[1]].state == "running"
    engine.kill(V1[1])  # it dies again at once: a thrash loop, held by the limit
    for _ in range(5):
        await world.tick()
    assert engine.containers[V1[1]].state == "exited"
    rollout = await world.rollout(r.id)
    assert recent(rollout, "replace", world.clock() - 600) == 1
    held = [t for t in texts(rollout) if "held" in t]
    assert held == [f"replacement of {V1[1]} held: 1 replacements within 600s"]  # recorded once
    world.clock.t += 600  # the window passes
    await world.tick()
    assert engine.containers[V1[1]].state == "running"


async def test_healing_events_make_room_before_the_release_story() -> None:
    r = Rollout(SERVICE, "r1", "v1", events=({"time": 1.0, "phase": "done", "percent": 100.0,
                                              "text": "deploy by me"},))  # fmt: skip
    for i in range(80):
        r = event(r, 2.0 + i, "replace", f"replacing x{i}")
    assert len(r.events) == 50 and r.events[0]["text"] == "deploy by me"
    assert r.events[-1]["text"] == "replacing x79"


async def test_scale_up_and_down_is_a_recorded_intent(world: World) -> None:
    r = await deployed(world)
    await world.act(intents.scale, {"idc": 3}, actor="ops")
    snap = await world.snap()
    assert snap.rollouts[r.key].spec["replicas"]["idc"] == 3
    assert texts(snap.rollouts[r.key])[-1] == "scale idc 2->3 by ops"
    third = container_name(SERVICE, "idc", "v1", 3)
    snap = await world.until(lambda s: endpoints(s).get(third, ("", 0, False))[2] is True)
    assert endpoints(snap)[third][1] == 100 and len(endpoints(snap)) == 4
    await world.act(intents.scale, {"idc": 1, "cloud": 2}, actor="ops")
    await world.tick(0.1)
    snap = await world.snap()  # first weight 0 (cached answers expire), not removed yet
    assert endpoints(snap)[third][1] == 0 and endpoints(snap)[V1[2]][1] == 0
    assert third in world.containers()
    snap = await world.until(lambda s: third not in endpoints(s) and V1[2] not in endpoints(s)
                             and len(endpoints(s)) == 3 and all(h for _, _, h in endpoints(s).values()))  # fmt: skip
    await world.until(lambda s: {a.owner for a in s.allocations.values()}
                      == {V1[0], V1[1], container_name(SERVICE, "cloud", "v1", 2)})  # fmt: skip
    assert third not in world.containers() and V1[2] not in world.containers()


async def test_scale_refuses_what_the_pool_cannot_hold(world: World) -> None:
    await deployed(world)
    import pytest

    from deployer.errors import SpecError

    with pytest.raises(SpecError, match="holds 11 addresses; 6 replicas need 12"):
        await world.act(intents.scale, {"idc": 6})


async def test_promotion_waits_for_the_full_healthy_count(world: World) -> None:
    await deployed(world)
    r = await world.deploy("v2", steps=[{"percent": 50, "pause": "0s"}], replace_after="1h")
    await world.until(phase(r.id, "canary"))
    snap = await world.snap()
    victim = container_name(SERVICE, "idc", "v2", 1)
    world.down.add(endpoints(snap)[victim][0])
    await world.until(lambda s: endpoints(s)[victim][2] is False)
    for _ in range(30):
        await world.tick()
    rollout = await world.rollout(r.id)
    assert rollout.phase == "canary"
    assert "waiting for 3/3 healthy v2 containers before promotion (2 now)" in rollout.message
    world.down.clear()
    await world.until(phase(r.id, "draining", "baking", "cleanup", "done"))


async def test_a_missing_image_is_pulled_with_backoff_then_aborts_naming_the_cause(
    world: World,
) -> None:
    for host in ("memory://idc-a", "memory://idc-b", "memory://cloud-a"):
        world.engine(host).images = {"app:v1"}
    r = await world.deploy("v9", pull_deadline="20s")
    snap = await world.until(phase(r.id, "aborted"), ticks=60)
    final = snap.rollouts[r.key].message
    assert "image app:v9 is missing and the pull failed" in final
    assert "cannot be pulled for 20s" in final
    assert world.containers() == {} and not snap.allocations


async def test_every_pass_leaves_a_heartbeat(world: World) -> None:
    await world.tick()
    beats = controllers(await world.store.nodes())  # the store's liveness entries
    assert [(h["id"], h["time"], h["every"]) for h in beats] == [
        (world.controller.name, world.clock(), 1.0)
    ]
    await world.tick()
    (beat,) = controllers(await world.store.nodes())
    assert beat["time"] == world.clock()
    assert (await world.snap()).heartbeats == {}  # no registry record any more


async def test_the_replacement_limit_is_shared_by_stable_and_canary(world: World) -> None:
    await deployed(world, replace_limit=1, replace_window="10m")
    r = await world.deploy("v2", steps=[{"percent": 50, "pause": "manual"}], replace_limit=1,
                           replace_window="10m")  # fmt: skip
    await world.until(phase(r.id, "canary"))
    world.engine("memory://idc-a").kill(V1[1])
    await world.tick()
    assert world.containers()[V1[1]] == "running"  # the one replacement of the window
    canary = container_name(SERVICE, "idc", "v2", 1)
    host = next(h for h, e in world.engines.items() if canary in e.containers)
    world.engine(host).kill(canary)
    for _ in range(3):
        await world.tick()
    assert world.containers()[canary] == "exited"  # held: the service used its limit
    assert any("held" in t for t in texts(await world.rollout(r.id)))


async def test_a_replacement_under_way_is_not_replaced_again(world: World) -> None:
    """Two controllers see the same dead container: the one that recorded its replacement
    first does it; the other leaves it alone while the replaced container is still there
    or none is yet (it would replace the replacement halfway, twice the budget)."""
    r = await deployed(world)
    engine = world.engine("memory://idc-a")
    engine.kill(V1[1])
    dead = engine.containers[V1[1]]
    snap = await world.snap()
    allocs = {a.owner: a for a in snap.allocations.values()}
    spec = ReleaseSpec.from_dict(r.spec)

    def facts(r: Rollout, container: Container | None, now: float) -> HealFacts:
        containers = {n: c for e in world.engines.values() for n, c in e.containers.items()}
        containers.pop(V1[1])
        if container is not None:
            containers[V1[1]] = container
        return HealFacts(rollout=r, spec=spec, now=now, endpoints=snap.endpoints_of(SERVICE),
                         containers=containers, allocations=allocs)  # fmt: skip

    def plan(r: Rollout, container: Container | None, now: float) -> tuple[str, ...]:
        return heal(facts(r, container, now)).replace

    now = world.clock()
    first = heal(facts(r, dead, now))
    assert first.replace == (V1[1],)
    recorded = first.rollout  # what the first controller wrote
    assert recorded.events[-1]["name"] == V1[1] and recorded.events[-1]["replaced"] == dead.id
    assert plan(recorded, dead, now + 1) == ()  # the old one, not removed yet
    assert plan(recorded, None, now + 2) == ()  # removed, not created yet
    assert plan(recorded, replace(dead, state="removing"), now + 2) == ()
    fresh_dead = replace(dead, id="another", state="exited")  # the replacement itself died
    assert plan(recorded, fresh_dead, now + 3) == (V1[1],)
    grace = IN_FLIGHT + spec.stop_timeout  # a replacement that never finished is redone
    assert plan(recorded, None, now + grace + 1) == (V1[1],)
