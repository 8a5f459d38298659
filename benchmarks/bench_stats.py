"""Container stats at fleet speed (issue 16): cgroup files against the Docker stats API.

1. Simulated: 1,000 containers' cgroup trees (v2 and v1 layouts, as the kernel lays
   them out) and their network namespaces' /proc files in a temporary directory; one
   full collection = one walk of the tree to find the containers, two passes of reads
   ``--interval`` apart (the CPU rate's window), the figures computed. Target ≤ 2 s.
2. Real: ``--real`` busybox containers (default 50) on a private dockerd; the same
   collection from their real cgroups, against the reference measured in the same
   run on the same containers: the Docker stats API, one request after another (as
   ``rolling ps --stats`` did before) and in parallel (16 at a time, the fallback for
   remote engines).

    .venv/bin/python benchmarks/bench_stats.py [--containers 1000] [--real 50] [--interval 0.5]

The real part needs root and dockerd (``scripts/install``); ``--real 0`` skips it.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

# the private dockerd of the end-to-end tests lives under tests/
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deployer.cgroup import Layout
from deployer.docker_engine import DockerEngine
from deployer.engine import Container
from deployer.stats import collect, read_cgroups

NET_DEV = (
    "Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n"
    "    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n"
    "  eth0: {rx} 12 0 0 0 0 0 0 {tx} 20 0 0 0 0 0 0\n"
)
SNMP = (
    "Ip: Forwarding DefaultTTL\nIp: 1 64\n"
    "Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets "
    "CurrEstab InSegs\nTcp: 1 200 120000 -1 5 7 0 0 {est} 100\n"
)
SOCKSTAT = "sockets: used 5\nTCP: inuse {est} orphan 0 tw 1 alloc 3 mem 1\n"


def simulate(root: Path, n: int, version: int) -> Layout:
    """``n`` containers' cgroup directories and /proc/PID/net files under ``root``."""
    cg = root / "cgroup"
    proc = root / "proc"
    if version == 2:
        cg.mkdir(parents=True)
        (cg / "cgroup.controllers").write_text("cpu io memory pids\n")
    for i in range(n):
        cid = f"{i:064x}"
        pid = 10_000 + i
        files: dict[Path, str] = {}
        if version == 2:
            d = cg / "system.slice" / f"docker-{cid}.scope"
            files = {
                d / "cgroup.procs": f"{pid}\n",
                d / "cpu.stat": f"usage_usec {i * 1000}\nnr_periods 10\nnr_throttled 1\n"
                "throttled_usec 500\n",
                d / "cpu.max": "400000 100000\n",
                d / "memory.current": f"{(i + 10) << 20}\n",
                d / "memory.stat": "anon 1\ninactive_file 4096\n",
                d / "memory.max": f"{8 << 30}\n",
                d / "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
                d / "io.stat": f"8:0 rbytes={i} wbytes={2 * i} rios=1 wios=1 dbytes=0 dios=0\n",
                d / "pids.current": "3\n",
            }
        else:
            rel = Path("docker") / cid
            files = {
                cg / "cpu" / rel / "cpu.stat": "nr_periods 10\nnr_throttled 1\nthrottled_time 5\n",
                cg / "cpu" / rel / "cpu.cfs_quota_us": "400000\n",
                cg / "cpu" / rel / "cpu.cfs_period_us": "100000\n",
                cg / "cpuacct" / rel / "cpuacct.usage": f"{i * 1_000_000}\n",
                cg / "memory" / rel / "memory.usage_in_bytes": f"{(i + 10) << 20}\n",
                cg / "memory" / rel / "memory.limit_in_bytes": f"{8 << 30}\n",
                cg / "memory" / rel / "memory.stat": "total_inactive_file 4096\n",
                cg / "memory" / rel / "memory.oom_control": "oom_kill_disable 0\noom_kill 0\n",
                cg / "blkio" / rel / "blkio.throttle.io_service_bytes": f"8:0 Read {i}\n"
                f"8:0 Write {2 * i}\nTotal {3 * i}\n",
                cg / "pids" / rel / "pids.current": "3\n",
                cg / "pids" / rel / "cgroup.procs": f"{pid}\n",
            }
        net = proc / str(pid) / "net"
        files[net / "dev"] = NET_DEV.format(rx=1000 + i, tx=2000 + i)
        files[net / "snmp"] = SNMP.format(est=i % 8)
        files[net / "sockstat"] = SOCKSTAT.format(est=i % 8)
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return Layout.detect(str(cg))


async def simulated(n: int, interval: float) -> None:
    for version in (2, 1):
        root = Path(tempfile.mkdtemp(prefix=f"rolling-bench-cg{version}-"))
        try:
            layout = simulate(root, n, version)
            start = time.perf_counter()
            paths = {f"c{i}": rel for i, rel in enumerate(layout.index().values())}
            found = time.perf_counter()
            figures = await read_cgroups(layout, paths, interval=interval, proc=str(root / "proc"))
            total = time.perf_counter() - start
            assert len(figures) == n, len(figures)
            reads = total - interval
            print(f"simulated cgroup v{version}: {n} containers in {total:.3f} s "
                  f"(find {found - start:.3f} s, reads {reads:.3f} s + {interval:g} s interval; "
                  f"{reads / n * 1e6:.0f} us per container)  target <= 2 s: "
                  f"{'met' if total <= 2 else 'NOT met'}")  # fmt: skip
        finally:
            shutil.rmtree(root, ignore_errors=True)


async def real(count: int, interval: float) -> None:
    from tests.deployer.dockerd import Dockerd, free_subnets

    daemon = Dockerd()
    try:
        daemon.start(free_subnets(1, "10.234")[0])
        image = daemon.build_image("rolling-bench/stats", "v1")
        api = daemon.api
        started = time.perf_counter()
        for i in range(count):
            host = api.create_host_config(cpu_period=100000, cpu_quota=10000, mem_limit=32 << 20)
            c = api.create_container(image, ["/bin/busybox", "sleep", "600"],
                                     name=f"rolling-bench-{i}", host_config=host,
                                     labels={"rolling.bench": "1"})  # fmt: skip
            api.start(c["Id"])
        print(f"real: {count} containers started in {time.perf_counter() - started:.1f} s")
        engine = DockerEngine(daemon.url)
        try:
            found = await engine.list({"rolling.bench": "1"})
            start = time.perf_counter()
            figures = await collect(engine, found, interval=interval)
            files = time.perf_counter() - start
            assert len(figures) == count and all(s.source == "cgroup" for s in figures.values())
            start = time.perf_counter()
            parallel = await collect(engine, [_remote(c) for c in found], interval=interval)
            api_parallel = time.perf_counter() - start
            assert len(parallel) == count
            sample = found[: min(5, count)]
            start = time.perf_counter()
            for c in sample:  # the old `rolling ps --stats`: one after another
                await engine.stats(c.name)
            per = (time.perf_counter() - start) / len(sample)
        finally:
            await engine.close()
        print(f"real cgroup files:           {count} containers in {files:.3f} s "
              f"(incl. {interval:g} s interval)")  # fmt: skip
        print(f"reference, stats API x16:    {count} containers in {api_parallel:.3f} s "
              f"({api_parallel / files:.1f}x the files)")  # fmt: skip
        print(f"reference, stats API serial: {per:.3f} s per container -> {per * count:.1f} s "
              f"for {count}, {per * 1000 / 60:.1f} min for 1,000 ({per * count / files:.0f}x)")  # fmt: skip
    finally:
        daemon.cleanup()
        daemon.stop()


def _remote(c: Container) -> Container:
    """The container as a remote engine would list it (no cgroup found here)."""
    return Container(c.name, c.host, c.state, c.labels, c.address, c.mac, c.image, "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=1000)
    parser.add_argument("--real", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args()
    asyncio.run(simulated(args.containers, args.interval))
    if args.real:
        asyncio.run(real(args.real, args.interval))


if __name__ == "__main__":
    main()
