"""Reading container figures from cgroup files (v1 and v2 trees written here, as the
kernel lays them out) and the network namespace's /proc files; rates from two samples;
the recommendation of ``plan --from-metrics`` from fake load figures."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployer.autoscale import Load, MetricsError, prometheus_qps, recommend, split_of
from deployer.cgroup import Layout
from deployer.engine import Container, MemoryEngine, Stats
from deployer.errors import SpecError
from deployer.stats import between, collect

CID = "a" * 64
NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  999999     10    0    0    0     0          0         0   999999     10    0    0    0     0       0          0
  eth0:    1500     12    0    0    0     0          0         0     2500     20    0    0    0     0       0          0
"""
SNMP = """Ip: Forwarding DefaultTTL
Ip: 1 64
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs
Tcp: 1 200 120000 -1 5 7 0 0 2 100
Udp: InDatagrams NoPorts
Udp: 0 0
"""
SOCKSTAT = """sockets: used 5
TCP: inuse 3 orphan 0 tw 1 alloc 3 mem 1
UDP: inuse 0 mem 0
"""


def write(base: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def proc_of(root: Path, pid: int) -> Path:
    proc = root / "proc"
    write(proc / str(pid) / "net", {"dev": NET_DEV, "snmp": SNMP, "sockstat": SOCKSTAT})
    return proc


def v2_tree(root: Path, usage_usec: int) -> Path:
    cg = root / "cgroup"
    (cg / "cgroup.controllers").parent.mkdir(parents=True, exist_ok=True)
    (cg / "cgroup.controllers").write_text("cpu io memory pids\n")
    write(cg / "system.slice" / f"docker-{CID}.scope", {
        "cgroup.procs": "4242\n4243\n",
        "cpu.stat": f"usage_usec {usage_usec}\nuser_usec 1\nsystem_usec 1\nnr_periods 50\n"
                    "nr_throttled 7\nthrottled_usec 250000\n",
        "cpu.max": "10000 100000\n",
        "memory.current": str(40 << 20),
        "memory.stat": f"anon 1\nfile 2\ninactive_file {8 << 20}\n",
        "memory.max": str(64 << 20),
        "memory.events": "low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\n",
        "io.stat": "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"
                   "8:16 rbytes=1000 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
        "pids.current": "3\n",
    })  # fmt: skip
    return cg


def v1_tree(root: Path, usage_ns: int) -> Path:
    cg = root / "cgroup"
    rel = f"docker/{CID}"
    write(
        cg / "cpu" / rel,
        {
            "cpu.stat": "nr_periods 50\nnr_throttled 7\nthrottled_time 250000000\n",
            "cpu.cfs_quota_us": "10000\n",
            "cpu.cfs_period_us": "100000\n",
        },
    )
    write(cg / "cpuacct" / rel, {"cpuacct.usage": f"{usage_ns}\n"})
    write(cg / "memory" / rel, {
        "memory.usage_in_bytes": str(40 << 20),
        "memory.limit_in_bytes": str(64 << 20),
        "memory.stat": f"cache 5\ntotal_inactive_file {8 << 20}\n",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
    })  # fmt: skip
    write(cg / "blkio" / rel, {"blkio.throttle.io_service_bytes":
                               "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Total 12288\n"
                               "8:16 Read 1000\n8:16 Write 0\nTotal 13288\n"})  # fmt: skip
    write(cg / "pids" / rel, {"pids.current": "3\n", "cgroup.procs": "4242\n"})
    return cg


@pytest.mark.parametrize("version", [1, 2])
def test_every_figure_is_read_from_the_cgroup_and_the_netns(tmp_path: Path, version: int) -> None:
    proc = proc_of(tmp_path, 4242)
    cg = v1_tree(tmp_path, 2_000_000_000) if version == 1 else v2_tree(tmp_path, 2_000_000)
    layout = Layout.detect(str(cg))
    assert layout.version == version
    index = layout.index()
    assert list(index) == [CID]
    a = layout.read(index[CID], 10.0, proc=str(proc))
    if version == 1:
        (cg / "cpuacct" / "docker" / CID / "cpuacct.usage").write_text("2500000000\n")
    else:
        path = cg / "system.slice" / f"docker-{CID}.scope" / "cpu.stat"
        path.write_text(path.read_text().replace("usage_usec 2000000", "usage_usec 2500000"))
    b = layout.read(index[CID], 11.0, proc=str(proc))
    s = between(a, b)
    assert s == Stats(
        cpu_percent=50.0,  # 0.5 s of CPU in 1 s
        memory_bytes=32 << 20,  # 40m used, 8m of it inactive page cache
        memory_limit_bytes=64 << 20,
        net_rx_bytes=1500,  # eth0 only, not lo
        net_tx_bytes=2500,
        blkio_read_bytes=5096,
        blkio_write_bytes=8192,
        pids=3,
        tcp_connections=2,  # the TCP MIB's CurrEstab
        cpu_throttled_periods=7,
        cpu_throttled_seconds=0.25,
        oom_kills=1,
        cpu_quota=10000,
        cpu_period=100000,
        tcp_states={"established": 2, "in_use": 3, "time_wait": 1, "orphan": 0},
    )


async def test_collect_reads_local_containers_and_asks_the_api_for_the_rest(tmp_path: Path) -> None:
    proc = proc_of(tmp_path, 4242)
    layout = Layout.detect(str(v2_tree(tmp_path, 1_000_000)))
    engine = MemoryEngine("memory://h")
    from deployer.container import build, replicas
    from tests.deployer.fakes import spec

    s = spec("v1")
    rep = replicas(s, "v1")[0]
    await engine.run(build(s, "v1", "r1", rep, "10.2.0.2"))
    local = Container("local", "memory://h", "running", id=CID)
    remote = Container(rep.name, "memory://h", "running", id="b" * 64)
    stopped = Container("stopped", "memory://h", "exited", id="c" * 64)
    got = await collect(engine, [local, remote, stopped], interval=0.01, layout=layout,
                        proc=str(proc))  # fmt: skip
    assert set(got) == {"local", rep.name}
    assert got["local"].source == "cgroup" and got["local"].net_rx_bytes == 1500
    assert got[rep.name].source == "api" and got[rep.name].tcp_connections is None


def test_a_recommendation_from_fake_load_figures() -> None:
    def fig(cpu: float, mem: int) -> Stats:
        return Stats(cpu, mem, 8 << 30, 0, 0, 0, 0, 1, 0)

    # 6 containers carry 12,000 QPS using 9 cores and 12 GiB: 0.75 cores, 1 GiB per kQPS
    load = Load.measure(12000, [fig(150.0, 2 << 30)] * 6)
    assert (load.cores, load.memory, load.containers) == (9.0, 12 << 30, 6)
    assert load.cpu_per_kqps == 0.75 and load.mem_per_kqps == 1 << 30
    split = split_of({"default": {"idc": 70, "cloud": 30, "other": 50}}, ["idc", "cloud"])
    assert split == {"cloud": 30.0, "idc": 70.0}
    rows = {r.dc: (r.containers, r.bound) for r in recommend(load, split, (4, 8 << 30), 0.3)}
    # idc: 8,400 QPS -> 6.3 cores / 2.8 usable per container = 3 (cpu); cloud: 3,600 -> 2
    assert rows == {"idc": (3, "cpu"), "cloud": (2, "minimum")}
    with pytest.raises(SpecError, match="no load measured"):
        recommend(Load(0, 1, 1, 1), split, (4, 8 << 30))


@pytest.fixture
def prometheus() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            empty = "nosuch" in self.path
            result = [] if empty else [{"metric": {}, "value": [1.0, "1234.5"]},
                                       {"metric": {}, "value": [1.0, "100"]}]  # fmt: skip
            body = json.dumps({"status": "success",
                               "data": {"resultType": "vector", "result": result}}).encode()  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_qps_comes_from_a_prometheus_query(prometheus: str) -> None:
    assert prometheus_qps(prometheus, 'sum(rate(x{service="a"}[5m]))') == 1334.5
    with pytest.raises(MetricsError, match="returned no series"):
        prometheus_qps(prometheus, "nosuch")
    with pytest.raises(MetricsError, match=r"prometheus http://127\.0\.0\.1:9"):
        prometheus_qps("http://127.0.0.1:9", "x", timeout=2)
