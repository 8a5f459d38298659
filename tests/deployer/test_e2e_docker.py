"""End to end: a private dockerd, two datacenters (two Docker networks with their own
pools), a real ``httpdns serve`` node and a ``rolling controller`` process sharing one
SQLite registry file, and the ``rolling`` CLI driving releases.

One test walks one release history, step after step: v1, then a canary of v2, an
aborted v3, and v4 through a controller crash; then containers die. (One test, not one
per step: each step needs the ones before it, and every test must pass alone.)
"""

from __future__ import annotations

import asyncio
import http.client
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest

import registry
from deployer.addresses import mac_for
from deployer.container import LABEL_SERVICE, LABEL_VERSION, ContainerSpec, container_name
from deployer.docker_engine import DockerEngine
from deployer.errors import EngineError, EngineUnavailableError
from registry import Change, ChangeSet, Datacenter, Service, Snapshot
from tests.deployer.dockerd import Dockerd, free_subnets
from tests.servers import Node, admin_call, wait_until

SERVICE = "e2e.rolling.test"
REPO = "rolling-e2e/app"
TTL = 1
PROPAGATION = 1.0  # the spec's allowance: a registry change reaches the answers within this
DWELL = TTL + PROPAGATION
# 2,000 distinct clients: consecutive /24s of the carrier-grade NAT range (the steering key
# of an IPv4 client is its /24, so these are 2,000 different keys)
CLIENTS = [str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("100.64.0.1")) + 256 * i))
           for i in range(2000)]  # fmt: skip
SAMPLE = CLIENTS[::10]

pytestmark = pytest.mark.timeout(1200)


class Rig:
    """Everything one end-to-end run shares."""

    def __init__(self, daemon: Dockerd, workdir: Path) -> None:
        self.daemon = daemon
        self.workdir = workdir
        self.db = workdir / "registry.db"
        self.store = f"sqlite:///{self.db}"
        self.persist = workdir / "persist"
        self.subnets = dict(zip(("idc", "cloud"), free_subnets(2), strict=True))
        self.config = workdir / "rolling.toml"
        self.controller: subprocess.Popen[bytes] | None = None
        self.controller_log = workdir / "controller.log"
        self.node: Node | None = None

    # -- setting up ---------------------------------------------------------------------------

    def setup(self) -> None:
        for version in ("v1", "v2", "v3", "v4"):
            self.daemon.build_image(REPO, version)
        dcs = {}
        for dc, subnet in self.subnets.items():
            net = ipaddress.IPv4Network(subnet)
            name = self.daemon.network(f"rolling-e2e-{dc}-{os.getpid()}", subnet)
            dcs[dc] = {"hosts": [self.daemon.url], "network": name,
                       "pool": f"{net.network_address + 10}-{net.network_address + 40}"}  # fmt: skip
        lines = [
            f'store = "{self.store}"',
            'dns = ["10.0.0.2", "10.0.0.3"]',
            f'persist_root = "{self.persist}"',
            "[extra_hosts]",
            '"db.internal" = "10.0.0.5"',
        ]
        for dc, table in dcs.items():
            lines += [f"[datacenters.{dc}]", f'hosts = ["{table["hosts"][0]}"]',
                      f'network = "{table["network"]}"', f'pool = "{table["pool"]}"']  # fmt: skip
        self.config.write_text("\n".join(lines) + "\n")
        asyncio.run(self._seed())
        self.node = Node(self.store, self.workdir / "node").start()
        self.start_controller()

    async def _seed(self) -> None:
        store = await registry.open_store(self.store)
        try:
            await store.apply([
                Change.put(Datacenter("idc")),
                Change.put(Datacenter("cloud", "cloud", writable=False)),
                Change.put(Service(SERVICE, {"default": {"idc": 50, "cloud": 50}}, ttl=TTL)),
            ])  # fmt: skip
        finally:
            await store.close()

    def start_controller(self) -> None:
        with open(self.controller_log, "ab") as log:
            self.controller = subprocess.Popen(
                [*self.cli(), "controller", "--interval", "0.1"], stdout=log, stderr=log
            )

    def kill_controller(self) -> None:
        """SIGKILL, as a crash would."""
        assert self.controller is not None
        self.controller.send_signal(signal.SIGKILL)
        self.controller.wait(10)
        self.controller = None

    def teardown(self) -> None:
        if self.controller is not None:
            self.controller.terminate()
            try:
                self.controller.wait(20)
            except subprocess.TimeoutExpired:
                self.controller.kill()
                self.controller.wait(10)
        if self.node is not None:
            self.node.stop()

    # -- driving ------------------------------------------------------------------------------

    def cli(self) -> list[str]:
        return [sys.executable, "-m", "deployer.cli", "--store", self.store, "--config",
                str(self.config), "--actor", "e2e"]  # fmt: skip

    def rolling(self, *args: str) -> str:
        done = subprocess.run([*self.cli(), *args], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "COLUMNS": "250"})  # fmt: skip
        assert done.returncode == 0, f"rolling {' '.join(args)}: {done.stderr}"
        return done.stdout

    def spec(self, steps: list[dict[str, Any]]) -> Path:
        path = self.workdir / f"spec-{len(list(self.workdir.glob('spec-*')))}.toml"
        lines = [
            f'service = "{SERVICE}"',
            f'image = "{REPO}:{{version}}"',
            'command = ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]',
            "port = 8080",
            'stop_timeout = "1s"',
            "[replicas]", "idc = 2", "cloud = 2",
            "[resources]", "cores = 0.1", 'memory = "32m"',
            "[health]", 'http = "/"', 'interval = "0.2s"', 'timeout = "0.5s"', "rise = 2",
            "fall = 2", 'deadline = "30s"',
            "[rollout]", f'propagation = "{PROPAGATION}s"', 'bake = "0s"',
        ]  # fmt: skip
        for step in steps:
            lines += ["[[steps]]", f"percent = {step['percent']}", f'pause = "{step["pause"]}"']
        path.write_text("\n".join(lines) + "\n")
        return path

    # -- observing ----------------------------------------------------------------------------

    def snap(self) -> Snapshot:
        async def read() -> Snapshot:
            store = await registry.open_store(self.store)
            try:
                return await store.snapshot()
            finally:
                await store.close()

        return asyncio.run(read())

    def audit(self, since: int) -> list[ChangeSet]:
        async def read() -> list[ChangeSet]:
            store = await registry.open_store(self.store)
            try:
                return await store.audit(since)
            finally:
                await store.close()

        return asyncio.run(read())

    def rollout(self) -> dict[str, Any]:
        return json.loads(self.rolling("status", SERVICE, "--json"))  # type: ignore[no-any-return]

    def wait_rollout(self, predicate: Callable[[dict[str, Any]], bool], what: str,
                     timeout: float = 60.0) -> dict[str, Any]:  # fmt: skip
        seen: dict[str, Any] = {}

        def check() -> bool:
            self.alive()
            seen.update(self.rollout())
            return predicate(seen)

        try:
            wait_until(check, timeout, what)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; last status {seen}; log:\n{self.log_tail()}") from None
        return seen

    def alive(self) -> None:
        if self.controller is not None and self.controller.poll() is not None:
            raise AssertionError(f"the controller died:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return "\n".join(self.controller_log.read_text(errors="replace").splitlines()[-30:])

    def synced(self) -> None:
        """Wait until the node answers from the registry's current revision."""
        revision = self.snap().revision
        assert self.node is not None

        def caught_up() -> bool:
            with urllib.request.urlopen(self.node.url + "/healthz", timeout=2) as r:  # type: ignore[union-attr]
                return int(json.loads(r.read())["revision"]) >= revision

        wait_until(caught_up, 10, f"the node to reach revision {revision}")

    def answers(self, clients: list[str]) -> dict[str, list[str]]:
        """The node's answer (DNSPod-style /d) for each client address."""
        assert self.node is not None
        conn = http.client.HTTPConnection("127.0.0.1", self.node.port, timeout=5)
        out = {}
        try:
            for ip in clients:
                conn.request("GET", f"/d?dn={SERVICE}&ip={ip}")
                resp = conn.getresponse()
                body = resp.read().decode()
                assert resp.status == 200, body
                out[ip] = [a for a in body.split(";") if a]
        finally:
            conn.close()
        return out

    def by_address(self) -> dict[str, tuple[str, str, bool]]:
        """address -> (version, dc, healthy) of the registered endpoints."""
        return {e.address: (e.version, e.dc, e.healthy)
                for e in self.snap().endpoints_of(SERVICE).values()}  # fmt: skip

    def share(self, version: str) -> float:
        """Percent of the 2,000 clients answered with ``version``; every answer is checked to
        come from one registered version."""
        endpoints = self.by_address()
        hits = 0
        for ip, addrs in self.answers(CLIENTS).items():
            assert addrs, f"no answer for {ip}"
            versions = {endpoints[a][0] for a in addrs}
            assert len(versions) == 1, (ip, addrs, versions)
            hits += versions == {version}
        return hits / len(CLIENTS) * 100

    def fetch_answered(self) -> dict[str, str]:
        """GET / from every address the sample of clients was answered with: address -> body."""
        addresses = {a for addrs in self.answers(SAMPLE).values() for a in addrs}
        return {a: fetch(a) for a in sorted(addresses)}

    def containers(self, **labels: str) -> list[dict[str, Any]]:
        want = [f"{LABEL_SERVICE}={SERVICE}", *(f"rolling.{k}={v}" for k, v in labels.items())]
        return self.daemon.api.containers(all=True, filters={"label": want})  # type: ignore[no-any-return]


def count_block_io(container_id: str, persist: Path) -> None:
    """Make a cgroup v1 kernel count the container's block IO. Kernels of the 6.x series
    count v1 ``blkio.throttle.io_service_bytes`` only for devices with a throttle rule, so
    a rule far above any real rate is set on the device holding /persist (as an operator
    of such a host does once per container); cgroup v2's io.stat needs none."""
    blkio = Path("/sys/fs/cgroup/blkio/docker") / container_id
    if not blkio.is_dir():
        return  # cgroup v2 (or another layout): nothing to do
    dev = Path(
        f"/sys/dev/block/{os.major(persist.stat().st_dev)}:{os.minor(persist.stat().st_dev)}"
    )
    if (dev / "partition").exists():
        dev = dev.resolve().parent  # rules apply to whole disks
    number = (dev / "dev").read_text().strip()
    for name in ("blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device"):
        (blkio / name).write_text(f"{number} {1 << 40}\n")


def fetch(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}:8080/", timeout=3) as r:
        return r.read().decode().strip()  # type: ignore[no-any-return]


def names(version: str) -> set[str]:
    return {container_name(SERVICE, dc, version, n) for dc in ("idc", "cloud") for n in (1, 2)}


@pytest.fixture(scope="module")
def rig(dockerd: Dockerd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    r = Rig(dockerd, tmp_path_factory.mktemp("e2e"))
    try:
        r.setup()
        yield r
    finally:
        r.teardown()
        for c in r.containers():
            dockerd.api.remove_container(c["Id"], force=True)


def step_deploy_v1_answers_reach_v1_containers(rig: Rig) -> None:
    rig.rolling("deploy", str(rig.spec([])), "--version", "v1")
    status = rig.wait_rollout(lambda s: s["phase"] == "done", "v1 to be done")
    assert status["datacenters"] == {"cloud": {"healthy": 2, "total": 2},
                                     "idc": {"healthy": 2, "total": 2}}  # fmt: skip
    rig.synced()
    endpoints = rig.by_address()
    assert {v for v, _, _ in endpoints.values()} == {"v1"} and len(endpoints) == 4
    fetched = rig.fetch_answered()
    assert set(fetched.values()) == {"version v1"}
    assert {endpoints[a][1] for a in fetched} == {"idc", "cloud"}  # both datacenters answer
    assert {c["Names"][0].lstrip("/") for c in rig.containers()} == names("v1")


def step_docker_inspect_shows_the_article_container_practice(rig: Rig) -> None:
    name = container_name(SERVICE, "idc", "v1", 1)
    info = rig.daemon.api.inspect_container(name)
    host = info["HostConfig"]
    assert (host["CpuPeriod"], host["CpuQuota"]) == (100000, 10000)  # 0.1 core, absolute quota
    assert host["Memory"] == host["MemorySwap"] == 32 << 20  # no swap
    net = next(iter(info["NetworkSettings"]["Networks"].values()))
    ip = net["IPAddress"]
    assert ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(rig.subnets["idc"])
    assert (
        net["MacAddress"]
        == mac_for(ip)
        == "02:42:" + ":".join(f"{int(o):02x}" for o in ip.split("."))
    )
    mount = next(m for m in info["Mounts"] if m["Destination"] == "/persist")
    assert mount["Source"] == f"{rig.persist}/{ip}" and mount["RW"] is True
    assert Path(mount["Source"]).is_dir()
    assert info["Config"]["Hostname"] == "e2e-idc-1"
    assert host["Dns"] == ["10.0.0.2", "10.0.0.3"]
    assert host["ExtraHosts"] == ["db.internal:10.0.0.5"]
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    labels = info["Config"]["Labels"]
    assert (labels[LABEL_SERVICE], labels[LABEL_VERSION], labels["rolling.dc"]) == (
        SERVICE, "v1", "idc"
    )  # fmt: skip
    assert labels["rolling.rollout"] == rig.rollout()["id"]
    allocated = {a.owner: a.address for a in rig.snap().allocations.values()}
    assert allocated[name] == ip


def step_canary_steps_move_the_share_of_clients(rig: Rig) -> None:
    steps = [{"percent": p, "pause": "manual"} for p in (10, 50, 100)]
    rig.rolling("deploy", str(rig.spec(steps)), "--version", "v2")
    for i, percent in enumerate((10, 50, 100)):
        rig.wait_rollout(lambda s, p=percent: s["phase"] == "canary" and s["percent"] == p,
                         f"the canary at {percent}%")  # fmt: skip
        rig.synced()
        share = rig.share("v2")
        print(f"step {percent}%: {share:.2f}% of {len(CLIENTS)} clients answered with v2")
        assert abs(share - percent) <= 2, f"{share}% of clients on v2 at the {percent}% step"
        endpoints = rig.by_address()
        for address, body in rig.fetch_answered().items():
            assert body == f"version {endpoints[address][0]}"
        if i == 0:  # a manual pause holds: nothing moves for twice the minimum hold
            deadline = time.monotonic() + 2 * DWELL
            while time.monotonic() < deadline:
                s = rig.rollout()
                assert (s["phase"], s["percent"]) == ("canary", 10), s
        rig.rolling("promote", SERVICE)
    rig.wait_rollout(lambda s: s["phase"] == "done", "v2 to be done")
    snap = rig.snap()
    release = snap.releases[SERVICE]
    assert (release.stable, release.canary, release.canary_percent) == ("v2", None, 0)
    assert {e.version for e in snap.endpoints_of(SERVICE).values()} == {"v2"}
    assert {c["Names"][0].lstrip("/") for c in rig.containers()} == names("v2")
    assert {a.owner for a in snap.allocations.values()} == names("v2")
    rig.synced()
    assert rig.share("v2") == 100


def step_abort_returns_every_answer_to_stable_within_one_propagation(rig: Rig) -> None:
    rig.rolling("deploy", str(rig.spec([{"percent": 50, "pause": "manual"}])), "--version", "v3")
    rig.wait_rollout(lambda s: s["phase"] == "canary" and s["percent"] == 50, "v3 at 50%")
    rig.synced()
    v3 = {a for a, (v, _, _) in rig.by_address().items() if v == "v3"}
    assert any(set(addrs) & v3 for addrs in rig.answers(SAMPLE).values())
    rig.rolling("abort", SERVICE)
    aborted_at = time.monotonic()

    def stable_only() -> bool:
        return not any(set(addrs) & v3 for addrs in rig.answers(SAMPLE).values())

    wait_until(stable_only, 10, "answers without v3")
    elapsed = time.monotonic() - aborted_at
    print(f"abort: every sampled answer back on v2 {elapsed:.3f}s after the intent")
    assert elapsed <= PROPAGATION, f"answers went back to v2 after {elapsed:.2f}s"
    assert rig.share("v2") == 100
    status = rig.wait_rollout(lambda s: s["phase"] == "aborted", "v3 to be aborted")
    assert "abort" in status["message"]
    assert not rig.containers(version="v3")
    assert {a.owner for a in rig.snap().allocations.values()} == names("v2")
    history = json.loads(rig.rolling("history", SERVICE, "--json"))
    assert [h["phase"] for h in history[:3]] == ["aborted", "done", "done"]


def step_a_killed_controller_resumes_without_duplicates_or_orphans(rig: Rig) -> None:
    rig.rolling("deploy", str(rig.spec([{"percent": 50, "pause": "0s"}])), "--version", "v4")
    wait_until(lambda: len(rig.containers(version="v4")) >= 1, 30, "a first v4 container")
    rig.kill_controller()  # in the middle of starting containers
    assert rig.rollout()["phase"] in ("starting", "canary")
    rig.start_controller()
    rig.wait_rollout(lambda s: s["phase"] == "canary", "v4 canary")
    rig.kill_controller()  # in the middle of a canary step
    rig.start_controller()
    rig.wait_rollout(lambda s: s["phase"] == "done", "v4 to be done")
    containers = rig.containers()
    assert sorted(c["Names"][0].lstrip("/") for c in containers) == sorted(names("v4"))
    snap = rig.snap()
    allocated = {a.owner: a.address for a in snap.allocations.values()}
    assert set(allocated) == names("v4")
    for c in containers:
        net = next(iter(c["NetworkSettings"]["Networks"].values()))
        assert net["IPAddress"] == allocated[c["Names"][0].lstrip("/")]
    assert len(set(allocated.values())) == 4
    assert {e.version for e in snap.endpoints_of(SERVICE).values()} == {"v4"}
    listed = json.loads(rig.rolling("ps", SERVICE, "--json"))
    assert {(c["name"], c["address"], c["mac"], c["state"]) for c in listed} == {
        (n, allocated[n], mac_for(allocated[n]), "running") for n in names("v4")
    }


def step_killed_containers_are_replaced_and_answered_again(rig: Rig) -> None:
    victims = [container_name(SERVICE, "idc", "v4", 1), container_name(SERVICE, "cloud", "v4", 2)]
    allocated = {a.owner: a.address for a in rig.snap().allocations.values()}
    before = {n: rig.daemon.api.inspect_container(n)["Id"] for n in victims}
    killed_at = time.monotonic()
    for name in victims:
        rig.daemon.api.kill(name)  # Docker's unless-stopped does not bring these back

    def replaced() -> bool:
        for name in victims:
            try:
                info = rig.daemon.api.inspect_container(name)
            except docker.errors.NotFound:  # between the removal and the new one
                return False
            if info["Id"] == before[name] or info["State"]["Status"] != "running":
                return False
        return True

    wait_until(replaced, 30, "new containers under the old names")
    print(f"replaced {len(victims)} killed containers in {time.monotonic() - killed_at:.2f}s")
    wait_until(lambda: all(rig.by_address()[allocated[n]][2] for n in victims), 30,
               "the replacements to be healthy again")  # fmt: skip
    for name in victims:  # same name, same address, same MAC
        net = next(
            iter(rig.daemon.api.inspect_container(name)["NetworkSettings"]["Networks"].values())
        )
        assert (net["IPAddress"], net["MacAddress"]) == (allocated[name], mac_for(allocated[name]))
        assert fetch(allocated[name]) == "version v4"
    rig.synced()
    answered = {a for addrs in rig.answers(CLIENTS).values() for a in addrs}
    assert {allocated[n] for n in victims} <= answered
    events = json.loads(rig.rolling("history", SERVICE, "--json"))[0]["events"]
    texts = [e["text"] for e in events]
    for name in victims:
        assert any(t.startswith(f"replacing {name}: its container exited") for t in texts), texts
    assert sorted(c["Names"][0].lstrip("/") for c in rig.containers()) == sorted(names("v4"))


def step_two_controllers_replace_killed_containers_without_crashing(rig: Rig) -> None:
    """The lab's race: two controllers see the same dead containers at once."""
    second_log = rig.workdir / "controller-2.log"
    with open(second_log, "ab") as log:
        second = subprocess.Popen([*rig.cli(), "controller", "--interval", "0.1"], stdout=log,
                                  stderr=log)  # fmt: skip
    try:
        wait_until(lambda: len(rig.rollout()["controller"]["controllers"]) >= 2
                   and all(c["running"] for c in rig.rollout()["controller"]["controllers"][:2]),
                   10, "two running controllers")  # fmt: skip
        # two replacements: with the step before, within the spec's limit (5 in 5 minutes)
        victims = [
            container_name(SERVICE, "idc", "v4", 2),
            container_name(SERVICE, "cloud", "v4", 1),
        ]
        allocated = {a.owner: a.address for a in rig.snap().allocations.values()}
        before = {n: rig.daemon.api.inspect_container(n)["Id"] for n in victims}
        killed_at = time.time()
        for name in victims:
            rig.daemon.api.kill(name)

        def replaced() -> bool:
            for name in victims:
                try:
                    info = rig.daemon.api.inspect_container(name)
                except docker.errors.NotFound:
                    return False
                if info["Id"] == before[name] or info["State"]["Status"] != "running":
                    return False
            return True

        wait_until(replaced, 60, "the killed containers replaced")
        wait_until(lambda: all(rig.by_address()[allocated[n]][2] for n in victims), 60,
                   "the replacements healthy")  # fmt: skip
        rig.alive()
        assert second.poll() is None, second_log.read_text(errors="replace")[-3000:]
        events = json.loads(rig.rolling("history", SERVICE, "--json"))[0]["events"]
        for name in victims:  # one controller replaced each; the other left it alone
            done = [e for e in events if e.get("kind") == "replace" and e.get("name") == name
                    and e["time"] >= killed_at]  # fmt: skip
            assert len(done) == 1, done
        names_now = sorted(c["Names"][0].lstrip("/") for c in rig.containers())
        assert names_now == sorted(names("v4"))  # no duplicate, nothing left behind
        for name in victims:
            assert fetch(allocated[name]) == "version v4"
        for log in (rig.controller_log, second_log):
            text = log.read_text(errors="replace")
            assert "Traceback" not in text, text[-3000:]
    finally:
        second.terminate()
        second.wait(20)


async def step_the_engine_adapter_samples_and_wraps_docker_errors(rig: Rig) -> None:
    engine = DockerEngine(rig.daemon.url)
    try:
        name = container_name(SERVICE, "cloud", "v4", 1)
        found = await engine.inspect(name)
        assert found is not None and found.running and found.mac == mac_for(found.address)
        listed = await engine.list({LABEL_SERVICE: SERVICE, "rolling.dc": "cloud"})
        assert {c.name for c in listed} == {name, container_name(SERVICE, "cloud", "v4", 2)}
        stats = await engine.stats(name)  # the Docker stats API (the remote-host fallback)
        assert stats.memory_limit_bytes == 32 << 20 and stats.memory_bytes < 32 << 20
        assert (stats.cpu_quota, stats.cpu_period) == (10000, 100000) and stats.pids >= 1
        assert stats.source == "api" and stats.net_rx_bytes > 0
        assert await engine.inspect("no-such-container") is None
        await engine.remove("no-such-container")  # already gone is fine
        bad = ContainerSpec(name="rolling-e2e-bad", image=f"{REPO}:v1", command=(),
                            hostname="bad", network="no-such-network", address="10.0.0.1",
                            mac=mac_for("10.0.0.1"), cpu_period=100000, cpu_quota=10000,
                            memory=32 << 20, memory_swap=32 << 20,
                            persist=str(rig.persist / "bad"), restart="no")  # fmt: skip
        with pytest.raises(EngineError) as info:
            await engine.run(bad)
        assert info.value.host == rig.daemon.url and rig.daemon.url in info.value.detail
    finally:
        await engine.close()
    gone = DockerEngine(f"unix://{rig.workdir}/no-docker.sock")
    with pytest.raises(EngineUnavailableError) as unreachable:
        await gone.list({})
    assert "no-docker.sock" in unreachable.value.detail and unreachable.value.status == 503


def step_a_missing_image_is_refused_with_nothing_recorded(rig: Rig) -> None:
    before = rig.snap()
    done = subprocess.run([*rig.cli(), "deploy", str(rig.spec([])), "--version", "nosuch"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1
    line = done.stderr.strip()
    assert line.startswith(f"error: image_unavailable: image {REPO}:nosuch is not on docker "
                           f"{rig.daemon.url} and cannot be pulled")  # fmt: skip
    assert len(line.splitlines()) == 1
    after = rig.snap()
    assert after.rollouts == before.rollouts and after.allocations == before.allocations


def step_an_exhausted_pool_is_refused_at_deploy_time(rig: Rig) -> None:
    snap = rig.snap()
    net = ipaddress.IPv4Network(rig.subnets["idc"])
    pool = [str(net.network_address + i) for i in range(10, 41)]
    taken = {a.address for a in snap.allocations.values() if a.dc == "idc"}
    free = [a for a in pool if a not in taken]
    fillers = [registry.Allocation("idc", a, f"filler-{i}") for i, a in enumerate(free[1:])]

    async def put(changes: list[Change]) -> None:
        store = await registry.open_store(rig.store)
        try:
            await store.apply(changes)
        finally:
            await store.close()

    asyncio.run(put([Change.put(a) for a in fillers]))
    try:
        done = subprocess.run([*rig.cli(), "deploy", str(rig.spec([])), "--version", "v1"],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 1
        assert done.stderr.strip() == (
            f"error: pool_exhausted: datacenter idc: pool {pool[0]}-{pool[-1]} has 1 of its "
            "31 addresses free; 2 are needed"
        )
        assert rig.snap().rollouts == snap.rollouts
    finally:
        asyncio.run(put([Change.delete("allocation", a.key) for a in fillers]))


def step_stats_rows_carry_the_eight_figures_and_they_move(rig: Rig) -> None:
    eight = ("cpu_percent", "memory_bytes", "net_rx_bytes", "net_tx_bytes", "blkio_read_bytes",
             "blkio_write_bytes", "pids", "tcp_connections")  # fmt: skip
    name = container_name(SERVICE, "idc", "v4", 2)
    address = next(a.address for a in rig.snap().allocations.values() if a.owner == name)

    def rows() -> dict[str, dict[str, Any]]:
        out = json.loads(rig.rolling("ps", SERVICE, "--stats", "--json", "--interval", "1"))
        return {r["name"]: r for r in out}

    first = rows()
    assert set(first) == names("v4")
    for row in first.values():
        assert row["stats_source"] == "cgroup"  # this machine is the Docker host
        assert all(isinstance(row[k], int | float) for k in eight), row
        assert 0 < row["memory_bytes"] < row["memory_limit_bytes"] == 32 << 20
        assert row["pids"] >= 1 and (row["cpu_quota"], row["cpu_period"]) == (10000, 100000)
    api = rig.daemon.api
    box = api.inspect_container(name)["Id"]
    count_block_io(box, rig.persist)

    def run(cmd: str, detach: bool = False) -> None:
        ex = api.exec_create(box, ["/bin/busybox", "sh", "-c", cmd])
        out = api.exec_start(ex["Id"], detach=detach)
        if not detach:
            assert api.exec_inspect(ex["Id"])["ExitCode"] == 0, out

    # disk: 8 MiB written and read back past the page cache; network: 2 MiB fetched from
    # a neighbour; a second process; a CPU burner; and a connection held open
    run("/bin/busybox dd if=/dev/zero of=/persist/blob bs=1M count=8 oflag=direct")
    run("/bin/busybox dd if=/persist/blob of=/dev/null bs=1M iflag=direct")
    neighbour = container_name(SERVICE, "idc", "v4", 1)
    api.exec_start(api.exec_create(neighbour, ["/bin/busybox", "dd", "if=/dev/zero",
                                               "of=/www/big", "bs=1M", "count=2"])["Id"])  # fmt: skip
    neighbour_ip = rig.daemon.api.inspect_container(neighbour)["NetworkSettings"]["Networks"]
    neighbour_ip = next(iter(neighbour_ip.values()))["IPAddress"]
    run(f"/bin/busybox wget -q -O /dev/null http://{neighbour_ip}:8080/big")
    run("/bin/busybox sleep 30", detach=True)
    run("i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done", detach=True)
    held = socket.create_connection((address, 8080), timeout=5)
    try:
        second = rows()
    finally:
        held.close()
    a, b = first[name], second[name]
    print({k: (a[k], b[k]) for k in eight})
    assert b["net_rx_bytes"] - a["net_rx_bytes"] >= 2 << 20
    assert b["net_tx_bytes"] > a["net_tx_bytes"]
    assert b["blkio_write_bytes"] - a["blkio_write_bytes"] >= 8 << 20
    assert b["blkio_read_bytes"] - a["blkio_read_bytes"] >= 8 << 20
    assert b["pids"] >= a["pids"] + 2  # the sleep and the burner's shell
    assert b["tcp_connections"] >= 1 and b["tcp_states"].get("established", 0) >= 1
    assert b["cpu_percent"] > 0 and b["cpu_percent"] <= 100 * 0.1 * 1.5  # quota: 0.1 core
    assert b["cpu_throttled_periods"] >= a["cpu_throttled_periods"]
    text = rig.rolling("ps", SERVICE, "--stats")
    assert name in text and "net rx/tx" in text


def step_plan_from_metrics_recommends_and_applies_a_scale_intent(rig: Rig) -> None:
    out = json.loads(rig.rolling("plan", "--from-metrics", SERVICE, "--qps", "500",
                                 "--container", "1c1g", "--apply", "--json"))  # fmt: skip
    assert out["containers"] == 4 and out["qps"] == 500 and out["memory"] > 0
    assert out["current"] == {"idc": 2, "cloud": 2}
    assert {r["dc"]: r["containers"] for r in out["plan"]} == {"idc": 2, "cloud": 2}  # --min 2
    events = json.loads(rig.rolling("history", SERVICE, "--json"))[0]["events"]
    assert events[-1]["text"] == "scale cloud 2->2, idc 2->2 by e2e"


def step_a_killed_controller_shows_in_status_within_three_intervals(rig: Rig) -> None:
    assert rig.rollout()["controller"]["running"] is True
    # Its passes are liveness entries in the store: no registry record, not a DNS node.
    since = rig.snap().revision
    first = rig.rollout()["controller"]["last_reconcile"]
    wait_until(lambda: rig.rollout()["controller"]["last_reconcile"] >= first + 3, 10,
               "three more passes")  # fmt: skip
    assert [c.kind for cs in rig.audit(since) for c in cs.changes if c.kind == "heartbeat"] == []
    assert rig.node is not None
    status, body = admin_call(rig.node.url, "GET", "/api/v1/nodes")
    assert status == 200 and isinstance(body, dict), body
    assert [n["address"] for n in body["nodes"]] == [rig.node.url]
    rig.kill_controller()
    killed = time.monotonic()
    every = rig.rollout()["controller"]["controllers"][0]
    wait_until(lambda: rig.rollout()["controller"]["running"] is False, 10, "status to notice")
    noticed = time.monotonic() - killed
    print(f"status said 'controller not running' {noticed:.2f}s after the kill")
    assert noticed <= 3 * 1.0 + 1.5  # heartbeats every max(interval, 1 s)
    assert "controller not running: the last reconcile was" in rig.rolling("status", SERVICE)
    assert every["running"] is True
    rig.start_controller()
    wait_until(lambda: rig.rollout()["controller"]["running"] is True, 10, "a running controller")


STEPS: list[Callable[[Rig], Any]] = [
    step_deploy_v1_answers_reach_v1_containers,
    step_docker_inspect_shows_the_article_container_practice,
    step_canary_steps_move_the_share_of_clients,
    step_abort_returns_every_answer_to_stable_within_one_propagation,
    step_a_killed_controller_resumes_without_duplicates_or_orphans,
    step_killed_containers_are_replaced_and_answered_again,
    step_two_controllers_replace_killed_containers_without_crashing,
    step_the_engine_adapter_samples_and_wraps_docker_errors,
    step_a_missing_image_is_refused_with_nothing_recorded,
    step_an_exhausted_pool_is_refused_at_deploy_time,
    step_stats_rows_carry_the_eight_figures_and_they_move,
    step_plan_from_metrics_recommends_and_applies_a_scale_intent,
    step_a_killed_controller_shows_in_status_within_three_intervals,
]


def test_a_release_history_end_to_end(rig: Rig) -> None:
    for step in STEPS:
        done = step(rig)
        if asyncio.iscoroutine(done):
            asyncio.run(done)
