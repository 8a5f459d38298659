"""Scale benchmark (issue 20, "Scale"): one node over a registry of 100,000 services.

A registry of ``--services`` services x ``--endpoints`` endpoints (``benchlib``'s
seed: 2 datacenters, 70/30, ``answers=2``) is seeded into SQLite, and with
``--redis`` also into a redis-server started here. For each store, one
``httpdns serve`` (pinned to the server CPU) is started and measured:

- start: from spawning the process until it answers a real ``/d`` query (the
  snapshot load, the table build and the first compile included). Target <= 3 s.
  The same on a 10-service registry is the reference floor (interpreter start,
  imports, listening).
- memory: VmRSS after answering ``/d`` for ``--distinct`` distinct services (each
  compiled lazily on its first query), and VmHWM, the peak since the start (the
  snapshot load included). Target <= 600 MB.
- change: ``--changes`` weight changes through the node's admin API (each flips a
  service between the datacenters, so the answer proves it), half on services
  already answered (compiled), half on services never asked; the time from
  sending the change until ``/d`` answers with the new weights. Target <= 50 ms.

    .venv/bin/python benchmarks/bench_scale.py [--services 100000] [--endpoints 4]
        [--distinct 20000] [--changes 40] [--redis] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import socket
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import benchlib as bl

BENCH = "scale"
TOKEN = "bench"
START_TARGET_S = 3.0
RSS_TARGET_MB = 600.0
CHANGE_TARGET_S = 0.050
CLIENT = "203.0.113.9"
ADDR = re.compile(rb"\d+\.\d+\.\d+\.\d+")


def status_kb(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` figure (VmRSS, VmHWM) in KiB; 0 when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def spawn(work: Path, store: str) -> bl.Proc:
    """``httpdns serve`` with an admin token, pinned to the server CPU; not waited for."""
    port = bl.free_port()
    argv = [*bl.httpdns_cmd(), "serve", "--http", f"127.0.0.1:{port}", "--store", store,
            "--zone", bl.DOMAIN, "--admin-token", TOKEN, "--log-level", "warning"]  # fmt: skip
    return bl.start(f"httpdns-{port}", bl.pinned(bl.SERVER_CPU, argv), work, port)


def first_answer(proc: bl.Proc, timeout: float = 120.0) -> float:
    """Seconds from now (just after the spawn) until ``/d`` answers 200 for svc0."""
    t0 = time.perf_counter()
    url = f"http://127.0.0.1:{proc.port}/d?dn={bl.service_name(0)}&ip={CLIENT}"
    while time.perf_counter() - t0 < timeout:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            status, _ = bl.get(url, 1.0)
            if status == 200:
                return time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.002)
    raise RuntimeError(f"{proc.name} did not answer within {timeout:.0f} s:\n{proc.tail()}")


async def ask(session: aiohttp.ClientSession, port: int, name: str) -> bytes:
    async with session.get(
        f"http://127.0.0.1:{port}/d", params={"dn": name, "ip": CLIENT}
    ) as r:  # fmt: skip
        body = await r.read()
        if r.status != 200:
            raise RuntimeError(f"/d for {name}: {r.status} {body[:200]!r}")
        return body


async def distinct(port: int, services: int, n: int, concurrency: int = 16) -> float:
    """Ask ``/d`` for ``n`` distinct services (spread over the registry); the seconds taken."""
    step = max(1, services // n)
    names = [bl.service_name((i * step) % services) for i in range(n)]
    queue = iter(names)
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def worker() -> None:
            for name in queue:
                await ask(session, port, name)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0


async def changes(port: int, services: int, n: int, step: int) -> tuple[list[float], list[float]]:
    """Seconds from each weight change sent until ``/d`` shows it: on answered services
    (multiples of ``step``, compiled by ``distinct``) and on services never asked."""
    hot: list[float] = []
    cold: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for i in range(n):
            is_hot = i % 2 == 0
            k = (i * 7919 * step) % services if is_hot else (i * 7919 * step + 1) % services
            name = bl.service_name(k)
            to_idc = (i // 2) % 2 == 0
            net = b"10." if to_idc else b"172."
            table = {"default": {"idc": 100, "cloud": 0} if to_idc else {"idc": 0, "cloud": 100}}
            t0 = time.perf_counter()
            async with session.put(
                f"http://127.0.0.1:{port}/api/v1/services/{name}/traffic",
                json=table, headers={"Authorization": f"Bearer {TOKEN}"},
            ) as r:  # fmt: skip
                if r.status != 200:
                    raise RuntimeError(f"PUT traffic of {name}: {r.status} {await r.text()}")
            while True:
                addrs = ADDR.findall(await ask(session, port, name))
                if addrs and all(a.startswith(net) for a in addrs):
                    break
                if time.perf_counter() - t0 > 10:
                    raise RuntimeError(f"the change of {name} did not show within 10 s")
            (hot if is_hot else cold).append(time.perf_counter() - t0)
    return hot, cold


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def measure(
    work: Path, procs: list[bl.Proc], label: str, store: str, ref_store: str, args: Any
) -> list[dict[str, Any]]:
    """The rows for one store: start (and its 10-service floor), memory, changes."""
    ref = spawn(work, ref_store)
    procs.append(ref)
    ref_start = first_answer(ref)
    ref.stop()

    proc = spawn(work, store)
    procs.append(proc)
    start = first_answer(proc)
    hwm_start = status_kb(proc.pid, "VmHWM") / 1024
    took = asyncio.run(distinct(proc.port, args.services, args.distinct))
    rss = status_kb(proc.pid, "VmRSS") / 1024
    hwm = status_kb(proc.pid, "VmHWM") / 1024
    step = max(1, args.services // args.distinct)
    hot, cold = asyncio.run(changes(proc.port, args.services, args.changes, step))
    proc.stop()

    def ms(x: float) -> str:
        return f"{x * 1000:.1f} ms"

    both = hot + cold
    rows = [
        bl.row(BENCH, f"{label}: spawn -> first /d answered", f"{start:.2f} s",
               f"<= {START_TARGET_S:g} s", start <= START_TARGET_S,
               f"10-service registry, the floor: {ref_start:.2f} s; "
               f"VmHWM at first answer {hwm_start:.0f} MB"),
        bl.row(BENCH, f"{label}: VmRSS after {args.distinct} distinct services",
               f"{rss:.0f} MB", f"<= {RSS_TARGET_MB:g} MB", rss <= RSS_TARGET_MB,
               f"{args.distinct} first queries took {took:.1f} s"),
        bl.row(BENCH, f"{label}: VmHWM (peak since the start)", f"{hwm:.0f} MB",
               f"<= {RSS_TARGET_MB:g} MB", hwm <= RSS_TARGET_MB),
        bl.row(BENCH, f"{label}: change -> /d shows it, p50 ({len(both)})",
               ms(statistics.median(both)), f"<= {CHANGE_TARGET_S * 1000:g} ms",
               statistics.median(both) <= CHANGE_TARGET_S),
        bl.row(BENCH, f"{label}: change -> /d shows it, max", ms(max(both)),
               f"<= {CHANGE_TARGET_S * 1000:g} ms", max(both) <= CHANGE_TARGET_S,
               f"answered services max {ms(max(hot))}, never-asked max {ms(max(cold))}; "
               f"p99 {ms(pct(both, 99))}"),
    ]  # fmt: skip
    return rows


def start_redis(work: Path, procs: list[bl.Proc]) -> int:
    """A redis-server on a free port (no persistence), in ``procs``; its port."""
    exe = bl.need("redis-server")
    port = bl.free_port()
    argv = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(work)]  # fmt: skip
    proc = bl.start(f"redis-{port}", argv, work, port)
    procs.append(proc)
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return port
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"redis-server did not listen:\n{proc.tail()}")


def run(args: Any, work: Path, procs: list[bl.Proc]) -> tuple[list[dict[str, Any]], str]:
    t0 = time.perf_counter()
    store = bl.seed(work / "registry.db", args.services, args.endpoints)
    seeded = time.perf_counter() - t0
    ref_store = bl.seed(work / "ref.db", 10, args.endpoints)
    rows = measure(work, procs, "SQLite", store, ref_store, args)
    header_extra = f"SQLite seeded in {seeded:.0f} s"
    if args.redis:
        port = start_redis(work, procs)
        url, ref_url = f"redis://127.0.0.1:{port}/1", f"redis://127.0.0.1:{port}/2"
        t0 = time.perf_counter()
        asyncio.run(bl._seed(url, args.services, args.endpoints, 2))
        header_extra += f", Redis in {time.perf_counter() - t0:.0f} s"
        asyncio.run(bl._seed(ref_url, 10, args.endpoints, 2))
        rows += measure(work, procs, "Redis", url, ref_url, args)
    header = (
        f"bench_scale: {args.services} services x {args.endpoints} endpoints, one node, "
        f"{args.distinct} distinct services asked, {args.changes} changes; {header_extra}"
    )
    return rows, header


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, default=100_000)
    ap.add_argument("--endpoints", type=int, default=4)
    ap.add_argument("--distinct", type=int, default=20_000, help="distinct services asked")
    ap.add_argument("--changes", type=int, default=40, help="weight changes timed")
    ap.add_argument("--redis", action="store_true", help="also on a redis-server started here")
    ap.add_argument("--json", help="append the result rows to this JSON-lines file")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    if shutil.which("redis-server") is None and args.redis:
        raise SystemExit("redis-server is not installed (scripts/install installs it)")
    bl.run_main(BENCH, args, run)


if __name__ == "__main__":
    main()
