"""The controller's own metrics: ``rolling controller --metrics HOST:PORT`` serves
``/metrics`` (Prometheus text format, rendered by ``prometheus-client``).

========================================  =====================  ===============================
metric                                    labels                 what
========================================  =====================  ===============================
``rolling_rollouts``                      ``phase``              rollout records per phase
``rolling_rollout_step``                  ``service``            current canary step (1-based;
                                                                 0 before the first) of a live
                                                                 rollout
``rolling_rollout_canary_percent``        ``service``            its canary share
``rolling_analysis_value``                ``service``, ``check`` last value of an analysis check
                                                                 of a canary step (absent: none)
``rolling_health_probes_total``           ``result``             probes, ``ok`` or ``fail``
``rolling_containers``                    ``state``              the managed services'
                                                                 containers, by Docker state
``rolling_reconcile_passes_total``                               reconcile passes done
``rolling_reconcile_errors_total``                               passes (or services in one)
                                                                 that failed
``rolling_last_reconcile_timestamp_seconds``                     when the last pass ended
========================================  =====================  ===============================

Cardinality is the registry's: phases are the state machine's constants, services
are the ones with a live rollout, checks those of their spec, states Docker's few.

The values are read from the controller at scrape time (a custom collector over
``ControllerStats``), so a scrape never waits for a pass and costs nothing between
scrapes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector


@dataclass
class ControllerStats:
    """What the controller saw: kept up to date by its passes, read by the collector."""

    rollouts: dict[str, str] = field(default_factory=dict)  # key -> phase
    steps: dict[str, tuple[int, float]] = field(default_factory=dict)  # live: service -> step, %
    analysis: dict[tuple[str, str], float | None] = field(default_factory=dict)  # (svc, check)
    probes: dict[str, int] = field(default_factory=lambda: {"ok": 0, "fail": 0})
    containers: dict[str, dict[str, str]] = field(default_factory=dict)  # service -> name: state
    passes: int = 0
    errors: int = 0
    last_pass: float | None = None

    def saw_rollouts(
        self, phases: Mapping[str, str], steps: Mapping[str, tuple[int, float]]
    ) -> None:
        """The rollout records of the last pass (key -> phase) and each live one's step."""
        self.rollouts = dict(phases)
        self.steps = dict(steps)
        live = set(steps)
        self.analysis = {k: v for k, v in self.analysis.items() if k[0] in live}


class _Collector(Collector):
    def __init__(self, stats: ControllerStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        by_phase = GaugeMetricFamily(
            "rolling_rollouts", "rollout records per phase", labels=["phase"]
        )
        counts: dict[str, int] = {}
        for phase in s.rollouts.values():
            counts[phase] = counts.get(phase, 0) + 1
        for phase, n in sorted(counts.items()):
            by_phase.add_metric([phase], n)
        yield by_phase
        step = GaugeMetricFamily(
            "rolling_rollout_step", "current step of a live rollout (1-based)", labels=["service"]
        )
        pct = GaugeMetricFamily(
            "rolling_rollout_canary_percent", "canary share of a live rollout", labels=["service"]
        )
        for service, (n, percent) in sorted(s.steps.items()):
            step.add_metric([service], n)
            pct.add_metric([service], percent)
        yield step
        yield pct
        analysis = GaugeMetricFamily(
            "rolling_analysis_value",
            "last value of an analysis check of a canary step",
            labels=["service", "check"],
        )
        for (service, check), value in sorted(s.analysis.items()):
            if value is not None:
                analysis.add_metric([service, check], value)
        yield analysis
        probes = CounterMetricFamily(
            "rolling_health_probes", "health probes by result", labels=["result"]
        )
        for result, n in sorted(s.probes.items()):
            probes.add_metric([result], n)
        yield probes
        states = GaugeMetricFamily(
            "rolling_containers", "containers of the managed services by state", labels=["state"]
        )
        per_state: dict[str, int] = {}
        for found in s.containers.values():
            for state in found.values():
                per_state[state] = per_state.get(state, 0) + 1
        for state, n in sorted(per_state.items()):
            states.add_metric([state], n)
        yield states
        yield CounterMetricFamily(
            "rolling_reconcile_passes", "reconcile passes done", value=s.passes
        )
        yield CounterMetricFamily(
            "rolling_reconcile_errors", "reconcile passes or services that failed", value=s.errors
        )
        if s.last_pass is not None:
            yield GaugeMetricFamily(
                "rolling_last_reconcile_timestamp_seconds",
                "when the last reconcile pass ended (Unix time)",
                value=s.last_pass,
            )


def registry_of(stats: ControllerStats) -> CollectorRegistry:
    """A registry holding only the controller's metrics."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector(stats))
    return reg


async def serve(stats: ControllerStats, host: str, port: int) -> web.AppRunner:
    """Serve ``/metrics`` on ``host:port`` until the returned runner is cleaned up."""
    reg = registry_of(stats)

    async def metrics(_request: web.Request) -> web.Response:
        resp = web.Response(body=generate_latest(reg))
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
