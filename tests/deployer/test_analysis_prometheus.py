"""Rollouts that judge themselves, for real: a private dockerd runs the canary containers
(busybox httpd serving a static ``/metrics.txt`` the test rewrites with ``docker exec``), a
real Prometheus (Debian's, started here on loopback, 1 s scrape interval) scrapes them and
a ``rolling controller`` process, whose ``[[analysis]]`` query it answers.

- no data holds a timed step past its pause, and the step proceeds once the metric is
  healthy; past the check's timeout without data, the rollout aborts;
- the canary's error counter crossing the threshold aborts the rollout (the event names
  the value and the threshold);
- the controller's own ``/metrics`` (rollouts by phase, step, analysis values, probes,
  containers by state) is scraped by the same Prometheus and ``promtool check metrics``
  is clean.

Each test deploys its own service, so the tests pass alone and in any order."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import registry
from deployer.container import container_name
from registry import Change, Datacenter, Service
from tests.deployer.dockerd import Dockerd, free_subnets
from tests.servers import free_port, need, prometheus_query, prometheus_scalar, wait_until

REPO = "rolling-analysis/app"
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
POOL = (10, 41)  # host numbers of the pool in the test /24: Prometheus scrapes them all

pytestmark = pytest.mark.timeout(600)


@dataclass
class Rig:
    daemon: Dockerd
    workdir: Path
    store: str
    config: Path
    prometheus: str
    metrics_port: int
    controller: subprocess.Popen[bytes]
    controller_log: Path

    def rolling(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "deployer.cli", "--store", self.store, "--config",
             str(self.config), "--actor", "analysis-test", *args],
            capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "250"},
        )  # fmt: skip
        assert done.returncode == 0, f"rolling {' '.join(args)}: {done.stderr}"
        return done.stdout

    def status(self, service: str) -> dict[str, Any]:
        return json.loads(self.rolling("status", service, "--json"))  # type: ignore[no-any-return]

    def wait_status(
        self, service: str, predicate: Callable[[dict[str, Any]], bool], what: str,
        timeout: float = 90.0,
    ) -> dict[str, Any]:  # fmt: skip
        seen: dict[str, Any] = {}

        def check() -> bool:
            if self.controller.poll() is not None:
                raise AssertionError(f"the controller died:\n{self.log_tail()}")
            seen.clear()
            seen.update(self.status(service))
            return predicate(seen)

        try:
            wait_until(check, timeout, what)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; last status {seen}; log:\n{self.log_tail()}") from None
        return seen

    def log_tail(self) -> str:
        return "\n".join(self.controller_log.read_text(errors="replace").splitlines()[-30:])

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query through the Prometheus HTTP API; the result vector."""
        return prometheus_query(self.prometheus, expr)

    def scalar(self, expr: str) -> float | None:
        return prometheus_scalar(self.prometheus, expr)

    def seed(self, service: str) -> None:
        async def put() -> None:
            store = await registry.open_store(self.store)
            try:
                await store.apply([Change.put(Service(service, {"default": {"idc": 100}}, ttl=1))])
            finally:
                await store.close()

        asyncio.run(put())

    def spec(self, service: str, steps: list[tuple[int, str]], **check: Any) -> Path:
        lines = [
            f'service = "{service}"', f'image = "{REPO}:{{version}}"',
            'command = ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]', "port = 8080",
            'stop_timeout = "1s"', "[replicas]", "idc = 1",
            "[resources]", "cores = 0.1", 'memory = "32m"',
            "[health]", 'http = "/"', 'interval = "0.2s"', 'timeout = "0.5s"', "rise = 2",
            "fall = 2", 'deadline = "30s"',
            "[rollout]", 'propagation = "1s"', 'bake = "0s"',
        ]  # fmt: skip
        for percent, pause in steps:
            lines += ["[[steps]]", f"percent = {percent}", f'pause = "{pause}"']
        if check:
            lines += ["[[analysis]]", 'name = "errors"', f'prometheus = "{self.prometheus}"',
                      "query = 'max(app_errors_total{service=\"{service}\"})'",
                      'interval = "1s"']  # fmt: skip
            lines += [f"{k} = {json.dumps(v)}" for k, v in check.items()]
        path = self.workdir / f"{service}-{len(list(self.workdir.glob('*.toml')))}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def stable(self, service: str) -> None:
        """v1 deployed (no steps: promoted at once) and done."""
        self.seed(service)
        self.rolling("deploy", str(self.spec(service, [])), "--version", "v1")
        self.wait_status(service, lambda s: s["phase"] == "done", f"v1 of {service}")

    def set_errors(self, service: str, version: str, value: float) -> None:
        """Rewrite the canary container's ``/metrics.txt`` (what Prometheus scrapes)."""
        name = container_name(service, "idc", version, 1)
        text = (f"# TYPE app_errors_total counter\n"
                f'app_errors_total{{service="{service}"}} {value}\n')  # fmt: skip
        cmd = f"printf '%s' '{text}' > /www/metrics.tmp && mv /www/metrics.tmp /www/metrics.txt"
        ex = self.daemon.api.exec_create(name, ["/bin/busybox", "sh", "-c", cmd])
        self.daemon.api.exec_start(ex["Id"])
        assert self.daemon.api.exec_inspect(ex["Id"])["ExitCode"] == 0


@pytest.fixture(scope="module")
def rig(dockerd: Dockerd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    prometheus = need("prometheus")
    workdir = tmp_path_factory.mktemp("analysis")
    for version in ("v1", "v2"):
        dockerd.build_image(REPO, version)
    net = ipaddress.IPv4Network(free_subnets(1)[0])
    network = dockerd.network(f"rolling-analysis-{os.getpid()}", str(net))
    first, last = (net.network_address + n for n in POOL)
    store = f"sqlite:///{workdir / 'registry.db'}"
    config = workdir / "rolling.conf"
    config.write_text(
        f'store = "{store}"\npersist_root = "{workdir / "persist"}"\n[datacenters.idc]\n'
        f'hosts = ["{dockerd.url}"]\nnetwork = "{network}"\npool = "{first}-{last}"\n'
    )

    async def seed() -> None:
        s = await registry.open_store(store)
        try:
            await s.apply([Change.put(Datacenter("idc"))])
        finally:
            await s.close()

    asyncio.run(seed())
    metrics_port, prom_port = free_port(), free_port()
    targets = [f"'{net.network_address + n}:8080'" for n in range(POOL[0], POOL[1] + 1)]
    (workdir / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  scrape_timeout: 900ms\n"
        "scrape_configs:\n"
        "  - job_name: apps\n    metrics_path: /metrics.txt\n"
        f"    static_configs:\n      - targets: [{', '.join(targets)}]\n"
        "  - job_name: rolling\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
    )
    prom_log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 - closed at teardown
    prom = subprocess.Popen(
        [prometheus, f"--config.file={workdir / 'prometheus.yml'}",
         f"--storage.tsdb.path={workdir / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=prom_log, stderr=prom_log,
    )  # fmt: skip
    controller_log = workdir / "controller.log"
    with open(controller_log, "wb") as log:
        controller = subprocess.Popen(
            [sys.executable, "-m", "deployer.cli", "--store", store, "--config", str(config),
             "controller", "--interval", "0.2", "--metrics", f"127.0.0.1:{metrics_port}"],
            stdout=log, stderr=log,
        )  # fmt: skip
    rig = Rig(dockerd, workdir, store, config, f"http://127.0.0.1:{prom_port}", metrics_port,
              controller, controller_log)  # fmt: skip
    try:

        def scraping() -> bool:
            if prom.poll() is not None:
                raise RuntimeError((workdir / "prometheus.log").read_text()[-2000:])
            if controller.poll() is not None:
                raise RuntimeError(rig.log_tail())
            try:
                return rig.scalar('up{job="rolling"}') == 1.0
            except OSError:
                return False

        wait_until(scraping, 60, "Prometheus scraping the controller")
        yield rig
    finally:
        controller.terminate()
        try:
            controller.wait(20)
        except subprocess.TimeoutExpired:
            controller.kill()
            controller.wait(10)
        prom.terminate()
        prom.wait(10)
        prom_log.close()


def test_no_data_holds_the_step_and_a_healthy_canary_proceeds(rig: Rig) -> None:
    service = "hold.analysis.test"
    rig.stable(service)
    spec = rig.spec(service, [(50, "1s")], max=5, timeout="120s")
    rig.rolling("deploy", str(spec), "--version", "v2")
    began = time.monotonic()
    # the step's minimum hold is TTL 1 + propagation 1 and its pause 1 s: the message says
    # it is held by the analysis only once those have passed
    held = rig.wait_status(service, lambda s: "waiting for data from errors" in s["message"],
                           "the step held for want of data")  # fmt: skip
    assert held["phase"] == "canary" and held["percent"] == 50
    assert held["analysis"][0]["verdict"] == "nodata"
    time.sleep(3)  # a negative check: nothing moves while there is no data
    assert rig.status(service)["phase"] == "canary" and time.monotonic() - began > 5
    rig.set_errors(service, "v2", 0)
    done = rig.wait_status(service, lambda s: s["phase"] == "done", "v2 promoted")
    assert done["release"]["stable"] == "v2"
    history = json.loads(rig.rolling("history", service, "--json"))
    events = [e for r in history for e in r["events"] if e.get("kind") == "analysis"]
    assert events and events[-1]["analysis"]["errors"]["value"] == 0.0
    assert events[-1]["analysis"]["errors"]["verdict"] == "pass"


def test_no_data_past_the_timeout_aborts(rig: Rig) -> None:
    service = "timeout.analysis.test"
    rig.stable(service)
    rig.rolling("deploy", str(rig.spec(service, [(50, "1s")], max=5, timeout="4s")),
                "--version", "v2")  # fmt: skip
    s = rig.wait_status(service, lambda s: s["phase"] == "aborted", "the abort")
    assert "analysis errors: no data for 4s" in s["message"]
    assert s["release"]["stable"] == "v1" and s["release"]["canary"] is None


def test_the_error_metric_crossing_the_threshold_aborts(rig: Rig) -> None:
    service = "abort.analysis.test"
    rig.stable(service)
    rig.rolling("deploy", str(rig.spec(service, [(50, "manual")], max=5, timeout="120s")),
                "--version", "v2")  # fmt: skip
    rig.wait_status(service, lambda s: s["phase"] == "canary", "the canary")
    rig.set_errors(service, "v2", 2)
    seen = rig.wait_status(service, lambda s: s["analysis"][0]["value"] == 2.0, "a value of 2")
    assert seen["analysis"][0]["verdict"] == "pass" and seen["phase"] == "canary"
    assert "errors: 2 pass at 50% (max 5)" in rig.rolling("status", service)
    # the controller's metrics, through Prometheus: the step and the check's value
    wait_until(
        lambda: (
            rig.scalar(f'rolling_analysis_value{{service="{service}",check="errors"}}') == 2
            and rig.scalar(f'rolling_rollout_step{{service="{service}"}}') == 1
            and rig.scalar(f'rolling_rollout_canary_percent{{service="{service}"}}') == 50
        ),
        20,
        "Prometheus to see the controller's analysis value and step",
    )
    rig.set_errors(service, "v2", 9)
    s = rig.wait_status(service, lambda s: s["phase"] in ("aborting", "aborted"), "the abort")
    assert "analysis errors: 9 is past max 5" in s["message"]
    assert s["release"]["canary"] is None and s["release"]["stable"] == "v1"
    assert s["analysis"][0] == {"name": "errors", "value": 9.0, "verdict": "fail",
                                "threshold": "max 5", "percent": 50.0,
                                "time": s["analysis"][0]["time"]}  # fmt: skip
    rig.wait_status(service, lambda s: s["phase"] == "aborted", "the new containers removed")


def test_the_controller_metrics_are_scraped_and_promtool_clean(rig: Rig) -> None:
    promtool = need("promtool")
    service = "metrics.analysis.test"
    rig.stable(service)
    wait_until(
        lambda: (
            (rig.scalar('rolling_rollouts{phase="done"}') or 0) >= 1
            and (rig.scalar('rolling_containers{state="running"}') or 0) >= 1
            and (rig.scalar('rolling_health_probes_total{result="ok"}') or 0) >= 2
            and (rig.scalar("rolling_reconcile_passes_total") or 0) >= 1
        ),
        20,
        "Prometheus to see the controller's rollouts, containers and probes",
    )
    body = OPENER.open(f"http://127.0.0.1:{rig.metrics_port}/metrics", timeout=5).read()
    types = dict(re.findall(r"^# TYPE (\w+) (\w+)$", body.decode(), re.M))
    assert types == {
        "rolling_rollouts": "gauge", "rolling_rollout_step": "gauge",
        "rolling_rollout_canary_percent": "gauge", "rolling_analysis_value": "gauge",
        "rolling_health_probes_total": "counter", "rolling_containers": "gauge",
        "rolling_reconcile_passes_total": "counter",
        "rolling_reconcile_errors_total": "counter",
        "rolling_last_reconcile_timestamp_seconds": "gauge",
    }  # fmt: skip
    out = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                         timeout=30)  # fmt: skip
    assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), out
