"""``[[analysis]]`` checks wired into the controller (memory engines, a SQLite store, a fake
clock and an analyst returning what the test sets): a failing check aborts with the value
and the threshold in the event, no data holds a timed step until the check's timeout,
passing checks let the steps advance, and ``rolling status`` data carries the last values.
The same against a real Prometheus and real containers: ``test_analysis_prometheus.py``."""

from __future__ import annotations

from typing import Any

from deployer import intents
from deployer.controller import Controller
from deployer.status import analysis_lines, summary
from registry import Snapshot
from tests.deployer.fakes import SERVICE, World, phase

ERRORS = {"name": "errors", "prometheus": "http://prom:9090", "query": "sum(errors)",
          "max": 0.01, "timeout": "60s", "interval": "2s"}  # fmt: skip
STEPS = [{"percent": 10, "pause": "20s"}, {"percent": 50, "pause": "20s"}]


async def canary(world: World, **overrides: Any) -> str:
    """v1 stable, then v2 in its first canary step; the rollout id."""
    r = await world.deploy("v1")
    await world.until(phase(r.id, "done"))
    r = await world.deploy("v2", steps=STEPS, analysis=[ERRORS], **overrides)
    await world.until(phase(r.id, "canary"))
    return r.id


def percent(snap: Snapshot) -> float:
    return snap.releases[SERVICE].canary_percent


async def test_a_failing_check_aborts_with_the_value_and_the_threshold(world: World) -> None:
    world.metric["errors"] = 0.001
    rid = await canary(world)
    await world.tick(5)
    world.metric["errors"] = 0.25
    snap = await world.until(phase(rid, "aborting", "aborted"))
    r = snap.rollouts[f"{SERVICE}/{rid}"]
    rel = snap.releases[SERVICE]
    assert (rel.stable, rel.canary, rel.canary_percent) == ("v1", None, 0)
    abort = next(e for e in r.events if e["phase"] == "aborting")
    assert "analysis errors: 0.25 is past max 0.01" in abort["text"]
    assert abort["analysis"]["errors"] == {"value": 0.25, "verdict": "fail",
                                           "threshold": "max 0.01"}  # fmt: skip
    row = summary(snap, r)["analysis"][0]
    assert (row["value"], row["verdict"], row["percent"]) == (0.25, "fail", 10)
    await world.until(phase(rid, "aborted"))


async def test_no_data_holds_past_the_pause_until_the_timeout(world: World) -> None:
    rid = await canary(world)  # world.metric has no value: no data
    since = (await world.rollout(rid)).since
    for _ in range(25):  # 50 s: past the 20 s pause, before the 60 s timeout
        await world.tick(2)
    r = await world.rollout(rid)
    assert r.phase == "canary" and r.step == 0 and percent(await world.snap()) == 10
    assert "waiting for data from errors" in r.message
    assert summary(await world.snap(), r)["analysis"][0]["verdict"] == "nodata"
    snap = await world.until(phase(rid, "aborting", "aborted"), seconds=2)
    r = snap.rollouts[f"{SERVICE}/{rid}"]
    abort = next(e for e in r.events if e["phase"] == "aborting")
    assert "no data for 60s" in abort["text"] and abort["time"] - since >= 60


async def test_data_arriving_before_the_timeout_lets_the_step_proceed(world: World) -> None:
    rid = await canary(world)
    for _ in range(15):  # 30 s without data: held past the 20 s pause
        await world.tick(2)
    assert percent(await world.snap()) == 10
    world.metric["errors"] = 0.0
    snap = await world.until(lambda s: percent(s) == 50, seconds=2)
    assert snap.rollouts[f"{SERVICE}/{rid}"].phase == "canary"


async def test_passing_checks_advance_every_step_and_each_step_is_measured(world: World) -> None:
    world.metric["errors"] = 0.004
    rid = await canary(world)
    snap = await world.until(phase(rid, "draining", "baking", "cleanup", "done"), seconds=2)
    steps = {step for _, step in world.evaluated}
    assert steps == {0, 1}  # every canary step evaluated its checks
    r = snap.rollouts[f"{SERVICE}/{rid}"]
    kept = [e for e in r.events if e.get("kind") == "analysis"]
    assert [e["percent"] for e in kept] == [10, 50]  # one history entry per step, kept
    assert all(e["analysis"]["errors"]["value"] == 0.004 for e in kept)
    line = analysis_lines([summary(snap, r)])
    assert line == [f"  {SERVICE} analysis errors: 0.004 pass at 50% (max 0.01)"]


async def test_a_failing_check_aborts_a_paused_step_and_promote_skips_no_data(
    world: World,
) -> None:
    rid = await canary(world)
    await world.act(intents.promote)  # an operator's word does not wait for data
    await world.until(lambda s: percent(s) == 50)
    await world.act(intents.pause)
    world.metric["errors"] = 1.0
    snap = await world.until(phase(rid, "aborting", "aborted"))
    assert "past max 0.01" in snap.rollouts[f"{SERVICE}/{rid}"].message


async def test_a_spec_without_analysis_is_never_evaluated(world: World) -> None:
    r = await world.deploy("v1")
    await world.until(phase(r.id, "done"))
    r = await world.deploy("v2", steps=STEPS)
    await world.until(phase(r.id, "done", "draining", "baking", "cleanup"))
    assert world.evaluated == []
    assert summary(await world.snap(), await world.rollout(r.id))["analysis"] == []


def heartbeat(v1: int, v2: int) -> dict[str, Any]:
    """A node's heartbeat publishing answers of the last 10 s (as ``httpdns serve`` does)."""
    rows = [[SERVICE, "idc", "v1", "stable", v1], [SERVICE, "idc", "v2", "canary", v2]]
    return {"id": "node-1", "answers": {"windows": {"10": {"seconds": 10.0, "rows": rows}}}}


async def test_share_checks_read_the_fleet_answers_from_the_store(world: World) -> None:
    world.controller = Controller(world.store, world.engine, clock=world.clock,
                                  prober=world.probe, monotonic=world.clock, sweep_every=0.0)  # fmt: skip
    r = await world.deploy("v1")
    await world.until(phase(r.id, "done"))
    share = {"name": "share", "share_tolerance": 2, "timeout": "120s", "interval": "1s"}
    r = await world.deploy("v2", steps=STEPS, analysis=[share])
    await world.until(phase(r.id, "canary"))
    await world.store.heartbeat("node-1", heartbeat(91, 9), 600)  # 9 % against 10 %
    snap = await world.until(lambda s: percent(s) == 50, seconds=2)
    kept = [e for e in snap.rollouts[r.key].events if e.get("kind") == "analysis"]
    assert kept[0]["analysis"]["share"] == {"value": 1.0, "verdict": "pass",
                                            "threshold": "share within 2 points"}  # fmt: skip
    await world.store.heartbeat("node-1", heartbeat(80, 20), 600)  # 20 % against 50 %
    snap = await world.until(phase(r.id, "aborting", "aborted"), seconds=2)
    assert "analysis share: 30 is past share within 2 points" in snap.rollouts[r.key].message
