"""What the server benchmarks (bench_http, bench_dns, bench_memory) share.

Seeding a SQLite registry, starting ``httpdns serve`` and the reference servers
pinned to a CPU, running wrk and dnsperf pinned to another and parsing their
output, and result rows: every benchmark prints its own table and, with
``--json FILE``, appends its rows there so ``bench_report.py`` (run by
``scripts/bench``) prints one combined table.

Rows are dicts: ``bench``, ``measure``, ``figure`` (text), ``target`` (text, may be
empty), ``met`` (True, False or None when there is no target), ``note``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVER_CPU = os.environ.get("BENCH_SERVER_CPU", "1")
LOAD_CPU = os.environ.get("BENCH_LOAD_CPU", "0")
DOMAIN = "bench.example"


# -- small things -----------------------------------------------------------------


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free for TCP and UDP on 127.0.0.1."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = int(t.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def need(tool: str) -> str:
    """The path of an installed tool, or exit naming the package (scripts/bench installs it)."""
    path = shutil.which(tool) or (shutil.which(tool, path="/usr/sbin:/sbin") if tool else None)
    if path is None:
        sys.exit(f"{tool} is not installed (scripts/bench installs it with apt-get)")
    return path


def pinned(cpu: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run on CPU ``cpu`` (taskset), or as is when taskset or the CPU is missing."""
    ts = shutil.which("taskset")
    if ts is None or int(cpu) >= (os.cpu_count() or 1):
        return list(argv)
    return [ts, "-c", cpu, *argv]


def loadavg() -> str:
    """The 1/5/15-minute load averages and the CPU count, as ``uptime`` shows them."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"


def httpdns_cmd() -> list[str]:
    """The ``httpdns`` executable of this interpreter's environment."""
    exe = Path(sys.executable).parent / "httpdns"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "httpdns.cli"]


def service_name(i: int) -> str:
    return f"svc{i}.{DOMAIN}"


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """Status and body of a GET (no exception on HTTP errors)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def rss_kb(pid: int) -> int:
    """VmRSS of a process in KiB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid``."""
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads) and of its descendants alive now."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in [pid, *descendants(pid)]:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total


def children_cpu() -> float:
    """User + system CPU time of this process's finished children (wrk, dnsperf)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def descendants(pid: int) -> list[int]:
    out = []
    for c in children(pid):
        out += [c, *descendants(c)]
    return out


# -- the registry -----------------------------------------------------------------


async def _seed(url: str, services: int, endpoints: int, answers: int) -> None:
    from registry import Change, Datacenter, Endpoint, Release, Service, open_store

    store = await open_store(url)
    try:
        await store.apply(
            [
                Change.put(Datacenter("idc", "idc", True)),
                Change.put(Datacenter("cloud", "cloud", True)),
            ],
            actor="bench",
        )
        batch: list[Any] = []
        for s in range(services):
            name = service_name(s)
            traffic = {"default": {"idc": 70, "cloud": 30}}
            batch.append(Change.put(Service(name, traffic, "ro", 30, answers)))
            batch.append(Change.put(Release(name, "v1")))
            for e in range(endpoints):
                dc = "idc" if e % 2 == 0 else "cloud"
                net = 10 if dc == "idc" else 172
                addr = f"{net}.{16 + s // 250 % 16}.{s % 250}.{e + 1}"
                batch.append(Change.put(Endpoint(name, f"e{e}", dc, addr, 80, "v1")))
            if len(batch) > 20_000:
                await store.apply(batch, actor="bench")
                batch = []
        if batch:
            await store.apply(batch, actor="bench")
    finally:
        await store.close()


def seed(db: Path, services: int, endpoints: int, answers: int = 2) -> str:
    """A fresh SQLite registry at ``db``: 2 datacenters (idc 70 / cloud 30, both writable),
    ``services`` services ``svcN.bench.example`` with ``endpoints`` endpoints each,
    alternating between the datacenters. Returns the store URL."""
    for p in db.parent.glob(db.name + "*"):
        p.unlink()
    url = f"sqlite:///{db}"
    asyncio.run(_seed(url, services, endpoints, answers))
    return url


# -- servers ----------------------------------------------------------------------


@dataclass
class Proc:
    """A server we started, its log and how to reach it."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int
    dns_port: int = 0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> int | None:
        """SIGTERM (then SIGKILL after 10 s); the exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode


def start(name: str, argv: Sequence[str], workdir: Path, port: int) -> Proc:
    log = workdir / f"{name}.log"
    fh = open(log, "wb")  # noqa: SIM115 - handed to the child
    try:
        popen = subprocess.Popen(list(argv), stdout=fh, stderr=subprocess.STDOUT, cwd=workdir)
    finally:
        fh.close()
    return Proc(name, popen, log, port)


def start_httpdns(
    workdir: Path,
    store: str,
    *,
    dns: bool = False,
    workers: int = 1,
    cpu: str | None = SERVER_CPU,
    zone: str = DOMAIN,
    config: Path | None = None,
) -> Proc:
    """``httpdns serve`` (one process unless ``workers``), pinned to ``cpu``; waits for /healthz.

    With ``dns`` it also serves UDP/TCP DNS on ``proc.dns_port``; ``config`` is a TOML file."""
    port = free_port()
    argv = [*httpdns_cmd(), "serve", "--http", f"127.0.0.1:{port}", "--store", store,
            "--zone", zone, "--log-level", "warning"]  # fmt: skip
    if config is not None:
        argv += ["--config", str(config)]
    dns_port = free_port() if dns else 0
    if dns:
        argv += ["--dns", f"127.0.0.1:{dns_port}"]
    if workers > 1:
        argv += ["--workers", str(workers)]
    if cpu is not None:
        argv = pinned(cpu, argv)
    proc = start(f"httpdns-{port}", argv, workdir, port)
    proc.dns_port = dns_port
    wait_http(proc, "/healthz", 120)
    return proc


def wait_http(proc: Proc, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            status, _ = get(f"http://127.0.0.1:{proc.port}{path}", 1.0)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    proc.stop()
    raise RuntimeError(f"{proc.name} did not answer {path} within {timeout:.0f} s:\n{proc.tail()}")


def nginx_conf(port: int, body: bytes) -> str:
    """nginx returning ``body`` (text/plain) for every request, one worker, no logs."""
    text = body.decode("latin-1").replace("\\", "\\\\").replace('"', '\\"')
    return f"""daemon off;
worker_processes 1;
pid nginx.pid;
error_log stderr;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    default_type text/plain;
    client_body_temp_path tmp;
    proxy_temp_path tmp;
    fastcgi_temp_path tmp;
    uwsgi_temp_path tmp;
    scgi_temp_path tmp;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "{text}"; }}
    }}
}}
"""


def start_nginx(workdir: Path, body: bytes, cpu: str | None = SERVER_CPU) -> Proc:
    """nginx (generated config in ``workdir/nginx-PORT``) answering ``body``; waits until it does."""
    exe = need("nginx")
    port = free_port()
    prefix = workdir / f"nginx-{port}"
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    (prefix / "nginx.conf").write_text(nginx_conf(port, body))
    argv = [exe, "-p", str(prefix), "-c", "nginx.conf", "-e", "stderr"]
    if cpu is not None:
        argv = pinned(cpu, argv)
    proc = start(f"nginx-{port}", argv, workdir, port)
    wait_http(proc, "/", 20)
    status, got = get(f"http://127.0.0.1:{port}/x")
    if status != 200 or got != body:
        proc.stop()
        raise RuntimeError(f"nginx answers {status} {got!r}, not 200 {body!r}")
    return proc


# -- wrk ----------------------------------------------------------------------------


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: str  # "" when none
    raw: str
    server_cpu_s: float = 0.0  # CPU time the server used during the run, when measured
    client_cpu_s: float = 0.0  # CPU time wrk used
    max_ms: float = 0.0  # the slowest request (wrk's "Latency ... Max")

    @property
    def per_cpu_s(self) -> float:
        """Requests per second of server CPU time: the efficiency, robust to CPU contention."""
        return self.requests / self.server_cpu_s if self.server_cpu_s > 0 else 0.0

    @property
    def projected(self) -> float:
        """Requests/s with a whole core each for server and wrk: the lower of the two rates
        per CPU-second (an estimate for an idle machine; 0 when not measured)."""
        if self.server_cpu_s <= 0 or self.client_cpu_s <= 0:
            return 0.0
        return min(self.per_cpu_s, self.requests / self.client_cpu_s)

    @property
    def clean(self) -> bool:
        return self.non_2xx == 0 and not self.socket_errors


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"cannot read the latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> WrkResult:
    """Requests/s, p50, p99, totals and errors from ``wrk --latency`` output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    total = re.search(r"(\d+) requests in ([\d.]+(?:us|ms|s|m)),", out)
    if not (rps and p50 and p99 and total):
        raise RuntimeError(f"cannot parse the wrk output:\n{out}")
    non = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors:\s+(.*)", out)
    lat = re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", out, re.M)
    return WrkResult(
        rps=float(rps.group(1)),
        p50_ms=_ms(p50.group(1)),
        p99_ms=_ms(p99.group(1)),
        requests=int(total.group(1)),
        seconds=_ms(total.group(2)) / 1000,
        non_2xx=int(non.group(1)) if non else 0,
        socket_errors=errs.group(1).strip() if errs else "",
        raw=out,
        max_ms=_ms(lat.group(1)) if lat else 0.0,
    )


def wrk(
    url: str,
    *,
    seconds: float,
    connections: int,
    threads: int = 1,
    script: Path | None = None,
    script_args: Sequence[str] = (),
    cpu: str | None = LOAD_CPU,
    server: int | None = None,
) -> WrkResult:
    """Run wrk (pinned to ``cpu``) against ``url`` and parse it; with ``server`` (a pid),
    also the CPU time that process and its children used meanwhile."""
    argv = [need("wrk"), f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency",
            "--timeout", "5s"]  # fmt: skip
    if script is not None:
        argv += ["-s", str(script)]
    argv.append(url)
    if script_args:
        argv += ["--", *script_args]
    return _load(argv, "wrk", parse_wrk, server, seconds, cpu)


# -- dnsperf ------------------------------------------------------------------------


@dataclass
class DnsperfResult:
    qps: float
    sent: int
    completed: int
    lost: int
    avg_latency_ms: float
    rcodes: str
    raw: str
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0

    @property
    def per_cpu_s(self) -> float:
        """Queries answered per second of server CPU time."""
        return self.completed / self.server_cpu_s if self.server_cpu_s > 0 else 0.0

    @property
    def projected(self) -> float:
        """Queries/s with a whole core each for server and dnsperf (see WrkResult)."""
        if self.server_cpu_s <= 0 or self.client_cpu_s <= 0:
            return 0.0
        return min(self.per_cpu_s, self.completed / self.client_cpu_s)


def parse_dnsperf(out: str) -> DnsperfResult:
    """Queries per second, sent/completed/lost, average latency and rcodes from dnsperf."""
    qps = re.search(r"Queries per second:\s+([\d.]+)", out)
    sent = re.search(r"Queries sent:\s+(\d+)", out)
    completed = re.search(r"Queries completed:\s+(\d+)", out)
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    lat = re.search(r"Average Latency \(s\):\s+([\d.]+)", out)
    rcodes = re.search(r"Response codes:\s+(.*)", out)
    if not (qps and sent and completed and lost):
        raise RuntimeError(f"cannot parse the dnsperf output:\n{out}")
    return DnsperfResult(
        qps=float(qps.group(1)),
        sent=int(sent.group(1)),
        completed=int(completed.group(1)),
        lost=int(lost.group(1)),
        avg_latency_ms=float(lat.group(1)) * 1000 if lat else float("nan"),
        rcodes=rcodes.group(1).strip() if rcodes else "",
        raw=out,
    )


def dnsperf(
    port: int,
    names: Path,
    *,
    seconds: float,
    clients: int = 1,
    outstanding: int = 100,
    cpu: str | None = LOAD_CPU,
    server: int | None = None,
    binary: bool = False,
    once: bool = False,
) -> DnsperfResult:
    """Run dnsperf over UDP (pinned to ``cpu``) at an unlimited rate and parse it; with
    ``server`` (a pid), also the CPU time that process used meanwhile. ``binary``: the
    file holds wire messages, each after a 2-byte length (``dnsperf -B``); ``once``: go
    through the file once (``-n 1``), at most ``seconds``."""
    argv = [need("dnsperf"), "-s", "127.0.0.1", "-p", str(port), "-d", str(names),
            "-l", f"{seconds:g}", "-c", str(clients), "-q", str(outstanding), "-t", "2"]  # fmt: skip
    if binary:
        argv.append("-B")
    if once:
        argv += ["-n", "1"]
    return _load(argv, "dnsperf", parse_dnsperf, server, seconds, cpu)


# -- results ------------------------------------------------------------------------


def row(
    bench: str, measure: str, figure: str, target: str = "", met: bool | None = None,
    note: str = "",
) -> dict[str, Any]:  # fmt: skip
    return {"bench": bench, "measure": measure, "figure": figure, "target": target,
            "met": met, "note": note}  # fmt: skip


def met_text(met: bool | None) -> str:
    return "" if met is None else ("yes" if met else "NO")


def print_rows(rows: Sequence[dict[str, Any]], width: int = 58) -> None:
    print(f"{'measure':{width}} {'figure':>22}  {'target':14} met")
    for r in rows:
        print(f"{r['measure']:{width}} {r['figure']:>22}  {r['target']:14} {met_text(r['met'])}")
        if r.get("note"):
            print(f"{'':{width}}   ({r['note']})")


def run_main(
    bench: str,
    args: Any,
    run: Callable[[Any, Path, list[Proc]], tuple[list[dict[str, Any]], str]],
) -> None:
    """Run ``run(args, workdir, procs)`` in a fresh work directory, stop every process it
    left in ``procs``, print the table and save it (``args.json``). A benchmark that
    cannot finish (say, our server answers 500) is reported as a failed row, then exit 1."""
    work = Path(tempfile.mkdtemp(prefix=f"bench-{bench}-"))
    procs: list[Proc] = []
    before = loadavg()
    failed: BaseException | None = None
    try:
        rows, header = run(args, work, procs)
    except Exception as exc:  # report why, as a row of the table
        failed = exc
        logs = "; ".join(f"{p.name} log: {p.tail(3)}" for p in procs if p.name.startswith("http"))
        rows = [row(bench, "benchmark run", "FAILED", "finishes", False,
                    f"{type(exc).__name__}: {exc}"[:600] + (f" ({logs[:600]})" if logs else ""))]  # fmt: skip
        header = f"bench_{bench}: did not finish"
    finally:
        for p in procs:
            p.stop()
        if not getattr(args, "keep", False):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work}", file=sys.stderr)
    header += f"; before: {before}; after: {loadavg()}"
    print(header)
    print_rows(rows)
    save(getattr(args, "json", None), rows, header)
    if failed is not None:
        traceback.print_exception(failed)
        sys.exit(1)


def save(path: str | None, rows: Sequence[dict[str, Any]], header: str) -> None:
    """Append ``rows`` (and the benchmark's header line) to the JSON-lines file ``path``."""
    if not path:
        return
    with open(path, "a") as f:
        f.write(json.dumps({"header": header, "rows": list(rows)}) + "\n")


def _load(argv: list[str], tool: str, parse: Any, server: Any, seconds: float, cpu: Any) -> Any:
    """Run a load generator (pinned to ``cpu``), parse its report, and attach the CPU
    seconds the server and the generator used meanwhile."""
    if cpu is not None:
        argv = pinned(cpu, argv)
    cpu0 = cpu_seconds(server) if server else 0.0
    own0 = children_cpu()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    own = children_cpu() - own0
    if done.returncode != 0:
        raise RuntimeError(f"{tool} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    res = parse(done.stdout)
    if server:
        res.server_cpu_s = cpu_seconds(server) - cpu0
        res.client_cpu_s = own
    return res
