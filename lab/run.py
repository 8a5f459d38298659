"""``scripts/lab [--quick] [--out DIR]``: build the hybrid-cloud lab on this machine, run
the scenario of ``lab.scenario`` with the clients running throughout, write the report,
and remove everything it made.

The topology (all on this machine; nothing leaves it):

- namespaces ``hdl-idc`` and ``hdl-cloud`` (10.201.0.0/24, 10.202.0.0/24), each running
  an ``httpdns serve`` node (``--http`` and ``--dns`` on its own address, a local
  snapshot for fail-static starts) and a ``rolling controller``; namespaces
  ``hdl-north`` and ``hdl-mobile`` (10.211.0.0/24, 10.212.0.0/24) running the client
  regions (``lab.client``). The machine's own namespace routes between them.
- one private ``dockerd`` with a network per datacenter (10.201.1.0/24, 10.202.1.0/24);
  containers come from ``rolling`` only.
- one ``redis-server`` holding the registry, listening on the machine's end of each
  datacenter's veth (with ``--quick``); the full run adds a replica and three Sentinels,
  a Sentinel failover during stage 3 and a node killed during the rush.

One ``rolling controller`` runs, in the idc's namespace, for both datacenters: the
deployer has no per-datacenter scope (a controller acts on every service), and a second
controller racing the first at the setup's three simultaneous deploys crashed on an
assertion in ``deployer/docker_engine.py`` (``_run``: a container created, then not
found), so the lab runs the supported shape rather than hide that.

Cleanup runs on success, failure, SIGINT and SIGTERM: processes, containers, networks,
images, the daemon, the bridge and the namespaces. A lock file keeps two labs apart, so
a run can also remove the ``hdl-*`` namespaces a SIGKILLed one left behind.

Exit status: 0 when the scenario ran and no client request failed; 1 otherwise (the
report is still written when the clients ran); 2 on bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

from . import net, report, scenario
from .docker import Dockerd, DockerError
from .procs import Proc, ProcessError, Procs, free_port, redis_ping, wait_for
from .scenario import Fault, Hold, Op, Stage, Until

LOCK = Path("/run/lock/httpdns-lab.lock")
DEVICES = {True: 30, False: 50}  # simulated devices per region (quick, full)


class LabError(Exception):
    """The lab could not be built or a step of the scenario failed."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT: stop, clean up, exit non-zero."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def say(text: str) -> None:
    """Progress on stdout, flushed (the test and people read it live)."""
    print(text, flush=True)


class Lab:
    """One run: what it made (so it can remove it) and what it recorded."""

    def __init__(self, out: Path, quick: bool) -> None:
        self.out = out
        self.quick = quick
        self.run_dir = out / "run"
        self.logs = self.run_dir / "logs"
        self.procs = Procs(self.logs)
        self.namespaces: list[net.Namespace] = []
        self.dockerd: Dockerd | None = None
        self.token = secrets.token_hex(16)
        self.redis_port = 0
        self.sentinels: list[int] = []
        self.nodes: dict[str, Proc] = {}
        self.node_cmds: dict[str, list[str]] = {}
        self.clients: list[Proc] = []
        self.stage_runs: list[report.StageRun] = []
        self.setup_actions: list[dict[str, Any]] = []
        self.failed = -1  # failed client requests, once the report is written
        self.bin = Path(sys.executable).parent
        self.repo = Path(__file__).resolve().parent.parent

    # -- addresses ---------------------------------------------------------------------------

    def ns(self, name: str) -> net.Namespace:
        """The namespace of a datacenter or region."""
        return next(n for n in self.namespaces if n.name == name)

    def node_url(self, dc: str) -> str:
        """The HTTP base URL of a datacenter's node."""
        return f"http://{self.ns(dc).address}:{scenario.NODE_PORT}"

    def store_url(self, dc: str | None) -> str:
        """The registry URL as seen from a datacenter's namespace (None: this machine)."""
        host = "127.0.0.1" if dc is None else self.ns(dc).gateway
        if self.sentinels:
            hosts = ",".join(f"{host}:{p}" for p in self.sentinels)
            return f"redis+sentinel://{hosts}/labmaster/0"
        return f"redis://{host}:{self.redis_port}/0"

    # -- building ----------------------------------------------------------------------------

    def build(self) -> None:
        """Namespaces, dockerd and its networks and images, Redis, nodes, registry,
        controllers, v1 of every service."""
        # a fresh run directory: a node's snapshot from an earlier run would be newer than
        # the new, empty store, and the node would serve (and compare writes against) it
        shutil.rmtree(self.run_dir, ignore_errors=True)
        for d in (self.out, self.run_dir, self.logs, self.run_dir / "persist"):
            d.mkdir(parents=True, exist_ok=True)
        busy = net.overlapping(scenario.LAB_RANGES)
        if busy:
            raise LabError(f"the lab's ranges are in use on this machine: {busy[0]}")
        ranges = {**scenario.DATACENTERS, **scenario.REGIONS}
        for name, subnet in ranges.items():
            ns = net.Namespace(name, subnet)
            self.namespaces.append(ns)
            net.create(ns, scenario.LAB_RANGES)
        say(f"namespaces: {', '.join(f'{n.netns} {n.address}' for n in self.namespaces)}")
        self.dockerd = Dockerd(scenario.DOCKER_BRIDGE)
        self.dockerd.start()
        for tag in ("v1", "v2"):
            self.dockerd.build_image(tag)
        for dc, subnet in scenario.DOCKER_NETWORKS.items():
            self.dockerd.network(f"{net.PREFIX}{dc}", subnet)
        say(f"dockerd: {self.dockerd.url}, images hdl/app:v1 and v2, networks "
            f"{', '.join(scenario.DOCKER_NETWORKS.values())}")  # fmt: skip
        self.start_redis()
        for dc in scenario.DATACENTERS:
            self.start_node(dc)
        (self.run_dir / "registry.toml").write_text(scenario.registry_toml())
        self.operate(Op("httpdns", ("apply", str(self.run_dir / "registry.toml"))),
                     self.setup_actions)  # fmt: skip
        self.write_rolling_config()
        for dc in scenario.CONTROLLERS:
            self.procs.start(
                f"controller-{dc}",
                [*self.ns(dc).exec(), str(self.bin / "rolling"), "--store", self.store_url(dc),
                 "--config", str(self.run_dir / "rolling.toml"), "--actor", f"lab-{dc}",
                 "controller", "--interval", "1"],
            )  # fmt: skip
        for name, (service, replicas, steps) in scenario.SPECS.items():
            spec = scenario.release_spec(service, replicas, steps)
            (self.run_dir / f"{name}.toml").write_text(spec)
        for step in scenario.SETUP:
            self.step(step, self.setup_actions)

    def start_redis(self) -> None:
        """One redis-server (and, for the full run, a replica and three Sentinels) on the
        machine's end of each datacenter's veth."""
        binds = " ".join(["127.0.0.1", *(self.ns(dc).gateway for dc in scenario.DATACENTERS)])
        redis = shutil.which("redis-server")
        if redis is None:
            raise LabError("redis-server is missing (scripts/install installs it)")
        ports = [free_port()] + ([] if self.quick else [free_port()])
        self.redis_port = ports[0]
        # Sentinel hands out the master's address to nodes in every namespace: announce the
        # idc's gateway, which every namespace routes to (127.0.0.1 would be their own)
        announce = self.ns("idc").gateway
        for i, port in enumerate(ports):
            extra = [] if i == 0 else ["--replicaof", announce, str(ports[0])]
            if not self.quick:
                extra += ["--replica-announce-ip", announce]
            self.procs.start(
                f"redis-{port}",
                [redis, "--port", str(port), "--bind", binds, "--save", "", "--appendonly",
                 "no", "--protected-mode", "no", "--dir", str(self.run_dir), *extra],
            )  # fmt: skip
            wait_for(lambda p=port: redis_ping("127.0.0.1", p), 10, f"redis on {port}")  # type: ignore[misc]
        if self.quick:
            say(f"redis: {self.store_url(None)}")
            return
        sentinel = shutil.which("redis-sentinel")
        if sentinel is None:
            raise LabError("redis-sentinel is missing (scripts/install installs it)")
        for _ in range(3):
            port = free_port()
            conf = self.run_dir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind {binds}\nprotected-mode no\ndir {self.run_dir}\n"
                f"sentinel announce-ip {announce}\n"
                f"sentinel monitor labmaster {announce} {ports[0]} 2\n"
                "sentinel down-after-milliseconds labmaster 1000\n"
                "sentinel failover-timeout labmaster 5000\n"
            )
            self.procs.start(f"sentinel-{port}", [sentinel, str(conf)])
            wait_for(lambda p=port: redis_ping("127.0.0.1", p), 10, f"sentinel on {port}")  # type: ignore[misc]
            self.sentinels.append(port)
        say(f"redis: master {ports[0]}, replica {ports[1]}, sentinels {self.sentinels}")

    def start_node(self, dc: str) -> None:
        """The datacenter's httpdns node in its namespace; waits for /healthz."""
        ns = self.ns(dc)
        cmd = [*ns.exec(), str(self.bin / "httpdns"), "serve",
               "--http", f"{ns.address}:{scenario.NODE_PORT}",
               "--dns", f"{ns.address}:{scenario.DNS_PORT}",
               "--store", self.store_url(dc), "--admin-token", self.token,
               "--snapshot", str(self.run_dir / f"node-{dc}.snapshot")]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("HTTPDNS_")}
        self.node_cmds[dc] = cmd
        self.nodes[dc] = self.procs.start(f"node-{dc}", cmd, env)
        wait_for(lambda: self.healthy(dc), 30, f"the {dc} node")
        say(f"node {dc}: {self.node_url(dc)} (DNS {ns.address}:{scenario.DNS_PORT})")

    def healthy(self, dc: str) -> bool:
        """True when the datacenter's node answers /healthz (ProcessError if it died)."""
        proc = self.nodes[dc]
        if not proc.alive():
            raise ProcessError(f"node-{dc} exited:\n{proc.tail()}")
        try:
            with urllib.request.urlopen(self.node_url(dc) + "/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def write_rolling_config(self) -> None:
        """The deployer config: both datacenters on the private dockerd."""
        assert self.dockerd is not None
        lines = [f'store = "{self.store_url(None)}"',
                 f'persist_root = "{self.run_dir / "persist"}"']  # fmt: skip
        for dc, subnet in scenario.DOCKER_NETWORKS.items():
            base = subnet.rsplit(".", 1)[0]
            lines += [f"[datacenters.{dc}]", f'hosts = ["{self.dockerd.url}"]',
                      f'network = "{net.PREFIX}{dc}"', f'pool = "{base}.10-{base}.99"']  # fmt: skip
        (self.run_dir / "rolling.toml").write_text("\n".join(lines) + "\n")

    def start_clients(self) -> None:
        """One client process per region, in its namespace; waits for answers from both."""
        for region, home in scenario.HOME.items():
            other = next(dc for dc in scenario.DATACENTERS if dc != home)
            path = self.run_dir / f"clients-{region}.jsonl"
            cmd = [*self.ns(region).exec(), sys.executable, "-m", "lab.client",
                   "--region", region, "--server", self.node_url(home),
                   "--server", self.node_url(other), "--devices", str(DEVICES[self.quick]),
                   "--out", str(path)]  # fmt: skip
            for name in scenario.NAMES:
                cmd += ["--name", name]
            env = {**os.environ, "PYTHONPATH": str(self.repo)}
            self.clients.append(self.procs.start(f"clients-{region}", cmd, env))

        def answered() -> bool:
            self.procs.check()
            return all(p.exists() and '"ok": true' in p.read_text() for p in self.client_logs())

        wait_for(answered, 30, "both client regions to get answers")
        say(f"clients: {DEVICES[self.quick]} devices in each of {', '.join(scenario.HOME)}")

    def client_logs(self) -> list[Path]:
        """The client regions' JSON-lines files."""
        return [self.run_dir / f"clients-{region}.jsonl" for region in scenario.HOME]

    def stop_clients(self) -> None:
        """SIGTERM the client regions and wait for them (they flush on the way out)."""
        for proc in self.clients:
            proc.stop(15)

    # -- the scenario ------------------------------------------------------------------------

    def run_stages(self) -> None:
        """Every stage in order, recording its window and actions."""
        for stage in scenario.STAGES:
            self.run_stage(stage)

    def run_stage(self, stage: Stage) -> None:
        """One stage: its steps (and the full run's extra ones)."""
        say(f"\n=== {stage.name} ===\n{stage.summary}")
        run = report.StageRun(stage.name, stage.summary, time.time())
        self.stage_runs.append(run)
        steps = stage.steps + (() if self.quick else stage.full_only)
        for step in steps:
            self.step(step, run.actions)
        run.ended = time.time()

    def step(self, step: Op | Until | Hold | Fault, actions: list[dict[str, Any]]) -> None:
        """Carry out one step; LabError when it fails."""
        self.procs.check()
        if isinstance(step, Op):
            self.operate(step, actions)
        elif isinstance(step, Until):
            self.until(step)
        elif isinstance(step, Hold):
            self.hold(step.quick_seconds if self.quick else step.seconds)
        else:
            self.fault(step, actions)

    def command(self, op: Op) -> list[str]:
        """The argv of an operator command (global options first)."""
        args = [str(self.run_dir / f"{a[5:]}.toml") if a.startswith("SPEC:") else
                self.node_url(a[5:]) if a.startswith("NODE:") else a for a in op.args]  # fmt: skip
        if op.tool == "httpdns":
            return [str(self.bin / "httpdns"), "--server", self.node_url("idc"), "--token",
                    self.token, "--actor", "lab-operator", *args]  # fmt: skip
        return [str(self.bin / "rolling"), "--store", self.store_url(None), "--config",
                str(self.run_dir / "rolling.toml"), "--actor", "lab-operator", *args]  # fmt: skip

    def shown(self, op: Op, dry_run: bool = False) -> str:
        """The command as the README would show it (no token, no addresses)."""
        args = [f"{a[5:]}.toml" if a.startswith("SPEC:") else
                self.node_url(a[5:]) if a.startswith("NODE:") else a for a in op.args]  # fmt: skip
        return " ".join([op.tool, *args, *(["--dry-run"] if dry_run else [])])

    def operate(self, op: Op, actions: list[dict[str, Any]]) -> None:
        """Run an operator command, ``--dry-run`` first for ``httpdns`` writes."""
        record: dict[str, Any] = {"at": round(time.time(), 3), "command": self.shown(op)}
        if op.dry_run_only:
            record["dry_run_only"] = True
        if op.writes:
            code, output = self.retried([*self.command(op), "--dry-run"], self.shown(op, True),
                                        record)  # fmt: skip
            record["dry_run"] = output
            if op.expect_refusal != (code != 0):
                raise LabError(f"{self.shown(op, True)}: exit {code}, expected "
                               f"{'a refusal' if op.expect_refusal else 'success'}:\n{output}")  # fmt: skip
            if op.dry_run_only:
                actions.append(record)
                return
        code, output = self.retried(self.command(op), self.shown(op), record)
        record.update(output=output, exit=code)
        actions.append(record)
        if code != 0:
            raise LabError(f"{self.shown(op)} failed (exit {code}):\n{output}")
        if op.writes:  # the next step starts once every live node answers from it
            code, output = self.cli([str(self.bin / "httpdns"), "--server", self.node_url("idc"),
                                     "--token", self.token, "wait", "--timeout", "20"], "")  # fmt: skip
            if code != 0:
                raise LabError(f"httpdns wait: {output}")

    def retried(self, argv: list[str], shown: str, record: dict[str, Any]) -> tuple[int, str]:
        """Run a CLI; on a revision conflict run it again (up to 5 times), as the CLI's
        message says: the controller's health flips and replacements move the
        registry, and a command that read an older revision is refused. The
        conflicts are counted in ``record``."""
        code, output = self.cli(argv, shown)
        for _ in range(5):
            if code == 0 or "error: conflict:" not in output:
                break
            record["conflicts"] = record.get("conflicts", 0) + 1
            code, output = self.cli(argv, shown + "   # again, after a conflict")
        return code, output

    def cli(self, argv: list[str], shown: str) -> tuple[int, str]:
        """Run a CLI; print and return its exit status and output."""
        env = {**os.environ, "COLUMNS": "160", "NO_COLOR": "1"}
        env = {k: v for k, v in env.items() if not k.startswith(("HTTPDNS_", "ROLLING_"))}
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env,
                              check=False)  # fmt: skip
        output = (done.stdout + done.stderr).rstrip()
        if shown:
            say(f"$ {shown}\n{output}")
        return done.returncode, output

    def rollout(self, service: str) -> dict[str, Any]:
        """The service's current rollout, as ``rolling status --json`` shows it."""
        from deployer.cli import _current
        from deployer.status import summary
        from registry.store import open_store

        async def read() -> dict[str, Any]:
            store = await open_store(self.store_url(None))
            try:
                snap = await store.snapshot()
                r = _current(snap, service)
                return {} if r is None else summary(snap, r)
            finally:
                await store.close()

        return asyncio.run(read())

    def until(self, step: Until) -> None:
        """Wait for a rollout condition (LabError naming the last status on timeout)."""
        seen: dict[str, Any] = {}

        def ok() -> bool:
            self.procs.check()
            seen.clear()
            seen.update(self.rollout(step.service))
            if step.phase is not None and seen.get("phase") != step.phase:
                return False
            if step.percent is not None and seen.get("percent") != step.percent:
                return False
            dcs = seen.get("datacenters", {})
            return all(dcs.get(dc, {}).get("healthy") == n and dcs[dc]["total"] == n
                       for dc, n in step.healthy)  # fmt: skip

        try:
            wait_for(ok, step.timeout, f"{step.service}: {step}")
        except ProcessError as exc:
            raise LabError(f"{exc}; last status {json.dumps(seen)}") from None
        say(f"  {step.service}: phase {seen.get('phase')}, {seen.get('percent')} % "
            f"of {seen.get('version')}, {seen.get('datacenters')}")  # fmt: skip

    def hold(self, seconds: float) -> None:
        """Let the clients run, checking that every process is still up."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.procs.check()
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    def fault(self, step: Fault, actions: list[dict[str, Any]]) -> None:
        """Inject a failure of the full run."""
        record: dict[str, Any] = {"at": round(time.time(), 3)}
        if step.kind == "kill-node":
            self.nodes[step.target].kill()
            record["command"] = f"(fault) SIGKILL the {step.target} node for {step.seconds:.0f}s"
            say(record["command"])
            self.hold(step.seconds)
            env = {k: v for k, v in os.environ.items() if not k.startswith("HTTPDNS_")}
            self.nodes[step.target] = self.procs.start(
                f"node-{step.target}-2", self.node_cmds[step.target], env
            )
            wait_for(lambda: self.healthy(step.target), 30, f"the {step.target} node again")
        elif step.kind == "redis-failover":
            record["command"] = "(fault) SENTINEL FAILOVER labmaster"
            say(record["command"])
            before = self.master()
            with contextlib.suppress(OSError):
                _redis(self.sentinels[0], b"SENTINEL FAILOVER labmaster\r\n")
            wait_for(lambda: self.master() not in (before, ""), 30, "the Sentinel failover")
            record["output"] = f"master {before} -> {self.master()}"
            say(record["output"])
            actions.append(record)
            # Replication is asynchronous: the promoted replica may lack the last writes.
            # The nodes then keep their table (fail-static) and report the store regressed;
            # the operator re-seeds Redis from a node, as the README's table says.
            # Writes the old master took after the promotion are lost too (it stays master
            # until Sentinel reconfigures it); the nodes notice within their poll period.
            deadline = time.monotonic() + 25
            regressed = False
            while not regressed and time.monotonic() < deadline:
                self.hold(0.5)
                regressed = any(self.store_state(dc) == "regressed" for dc in scenario.DATACENTERS)
            self.cli(self.command(Op("httpdns", ("health",))), "httpdns health")
            if regressed:
                restore = Op("httpdns", ("registry", "restore", "--from-node", "NODE:idc"))
                self.operate(restore, actions)
                wait_for(lambda: all(self.store_state(dc) == "ok" for dc in scenario.DATACENTERS), 30,
                         "both nodes to see the store ok after the restore")  # fmt: skip
            return
        actions.append(record)

    def store_state(self, dc: str) -> str:
        """The store as the datacenter's node sees it: ok, regressed, damaged, unavailable."""
        try:
            with urllib.request.urlopen(self.node_url(dc) + "/healthz", timeout=1) as r:
                return str(json.loads(r.read()).get("store", ""))
        except urllib.error.HTTPError as exc:  # 503 still carries the body
            with exc:
                return str(json.loads(exc.read()).get("store", ""))
        except (OSError, ValueError):
            return ""

    def master(self) -> str:
        """The master's port as the first Sentinel sees it ("" when unknown)."""
        try:
            raw = _redis(self.sentinels[0], b"SENTINEL get-master-addr-by-name labmaster\r\n")
        except OSError:
            return ""
        parts = raw.decode(errors="replace").split("\r\n")
        return parts[4] if len(parts) > 4 else ""

    # -- the report and cleanup --------------------------------------------------------------

    def write_report(self, started: float) -> dict[str, Any]:
        """Read the client logs, write report.json, the plot and the summary."""
        records = report.read_records(p for p in self.client_logs() if p.exists())
        meta = {
            "quick": self.quick,
            "started": round(started, 3),
            "duration": round(time.time() - started, 1),
            "regions": list(scenario.HOME),
            "clients": DEVICES[self.quick] * len(scenario.HOME),
            "setup": self.setup_actions,
        }
        result = report.build(self.stage_runs, records, meta)
        report.write(result, records, self.out)
        return result

    def cleanup(self) -> None:
        """Remove everything this run made; every part is tried even if another fails."""
        for part in (self.procs.stop_all, self._docker_cleanup, self._net_cleanup):
            try:
                part()
            except Exception as exc:  # keep going: the other parts must still be removed
                say(f"cleanup: {part.__name__}: {exc}")

    def _docker_cleanup(self) -> None:
        if self.dockerd is not None:
            self.dockerd.cleanup()

    def _net_cleanup(self) -> None:
        for ns in self.namespaces:
            net.remove(ns.netns)


def _redis(port: int, command: bytes) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(command)
        return s.recv(4096)


def sweep() -> None:
    """Remove what a killed run left (only called while holding the lock)."""
    for netns in net.leftovers():
        say(f"removing {netns}, left by an earlier run")
        net.remove(netns)
    net.ip("link", "del", f"{net.PREFIX}dk0", check=False)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``scripts/lab``."""
    parser = argparse.ArgumentParser(prog="scripts/lab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="one Redis, shorter stages (<= 5 minutes); no injected faults")  # fmt: skip
    parser.add_argument("--out", default="lab-out", help="report directory [default: lab-out]")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("error: the lab needs root (network namespaces, dockerd)", file=sys.stderr)
        return 1
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    lock = open(LOCK, "w")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print(f"error: another lab is running (lock {LOCK})", file=sys.stderr)
        return 1
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    started = time.time()
    lab = Lab(Path(args.out).resolve(), args.quick)
    code = 1
    try:  # two levels: a signal during the error branch below must still be "interrupted"
        _run(lab, started)
        code = 0 if lab.failed == 0 else 1
    except Interrupted as exc:
        print(f"interrupted ({exc}): cleaning up", file=sys.stderr)
        code = 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut cleanup short
        lab.cleanup()
        say(f"cleaned up ({time.time() - started:.0f} s in all)")
    return code


def _run(lab: Lab, started: float) -> None:
    """Build, run the stages, write the report; on an error, report what ran."""
    try:
        sweep()
        lab.build()
        lab.start_clients()
        lab.run_stages()
        lab.stop_clients()
        result = lab.write_report(started)
        say(f"\n{result['requests']} requests, {result['failed_requests']} failed; "
            f"report: {lab.out / 'report.json'}, {lab.out / 'shares.png'}, "
            f"{lab.out / 'summary.md'}")  # fmt: skip
        for f in result["failures"][:20]:
            say(f"  failed: {f['time']} {f['client']} {f['name']}: {f['error']}")
        lab.failed = result["failed_requests"]
    except (LabError, ProcessError, DockerError, net.NetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        lab.failed = -1
        if lab.clients:
            with contextlib.suppress(LabError, ProcessError, OSError, ValueError):
                lab.stop_clients()
                lab.write_report(started)
