"""``deployer.metrics``: the controller's collector read at scrape time (a controller
driven through a rollout by the in-memory world), and ``rolling controller --metrics``
refusing a bad address. Scraped by a real Prometheus in ``test_analysis_prometheus.py``."""

from __future__ import annotations

from click.testing import CliRunner
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from deployer.cli import main
from deployer.metrics import registry_of
from tests.deployer.fakes import SERVICE, World, phase


def samples(world: World) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry_of(world.controller.stats)).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_the_collector_follows_the_controller(world: World) -> None:
    r = await world.deploy("v1")
    await world.until(phase(r.id, "done"))
    r = await world.deploy("v2", analysis=[{"name": "errors", "prometheus": "http://p:9090",
                                            "query": "x", "max": 1, "interval": "1s"}])  # fmt: skip
    world.metric["errors"] = 0.25
    await world.until(phase(r.id, "canary"))
    await world.tick()
    seen = samples(world)
    assert seen[("rolling_rollouts", (("phase", "done"),))] == 1
    assert seen[("rolling_rollouts", (("phase", "canary"),))] == 1
    assert seen[("rolling_rollout_step", (("service", SERVICE),))] == 1
    assert seen[("rolling_rollout_canary_percent", (("service", SERVICE),))] == 10
    assert seen[("rolling_analysis_value", (("check", "errors"), ("service", SERVICE)))] == 0.25
    assert seen[("rolling_containers", (("state", "running"),))] == 6  # v1 and v2, 3 each
    assert seen[("rolling_health_probes_total", (("result", "ok"),))] >= 6
    assert seen[("rolling_reconcile_passes_total", ())] >= 2
    engine = world.engine("memory://cloud-a")
    for name in list(engine.containers):
        engine.kill(name)  # exited: seen on the next observation
    await world.controller.sweep(SERVICE)  # observes the containers without healing them
    seen = samples(world)
    assert seen[("rolling_containers", (("state", "exited"),))] == 2
    assert seen[("rolling_containers", (("state", "running"),))] == 4


def test_a_bad_metrics_address_is_a_usage_error(tmp_path: object) -> None:
    result = CliRunner().invoke(main, ["--store", "sqlite://:memory:", "controller",
                                       "--metrics", "nowhere"])  # fmt: skip
    assert result.exit_code == 2 and "is not HOST:PORT" in result.output
