"""The cache-miss path, in process: a new client /24 on every request.

Drives the fast path's ``FastServer.respond`` (the code a ``/d`` request runs
after llhttp framing: parameters, client, steering, encoding, front cache)
directly, without sockets, over a registry of N services x 4 endpoints (2
datacenters, 70/30, ``answers=2``), and reports, per mode:

* requests per CPU-second and per-request latency (p50, p99, max) of the last
  ``--requests`` requests, after ``--warm`` requests that let hot services
  get their bucket maps;
* garbage-collector pauses measured with ``gc.callbacks`` during those requests:
  count and longest pause per generation;
* the table's bucket maps (count, bytes) and maps built during the timed part.

Modes: ``maps`` (the node's default), ``full`` (maps, but the ``/d`` miss lane
off: every miss through the dialect function, as before the lane existed) and
``decide`` (no bucket maps: every decision by ``steering.decide``, as before maps
existed); ``dns-ecs`` drives the
DNS listener's ``DnsEngine.respond`` instead, with a UDP A query carrying an
EDNS client-subnet option from a new /24 each time (the miss of
``bench_dns.py``'s ECS case). The reference in the
same run is a dict lookup plus a bytes join per request (the floor of any
Python hot path). The server benchmark with sockets is ``bench_http.py`` (case
"a new client /24 every request").

    .venv/bin/python benchmarks/bench_miss.py [--services 1000] [--requests 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import benchlib as bl
from bench_dns import ecs_query

from httpdns.config import Config
from httpdns.dialects import Context
from httpdns.dnsserver import DnsEngine
from httpdns.fasthttp import FastServer
from httpdns.routes import QUERY_ROUTES, Router
from httpdns.table import HOT_MISSES, RoutingTable
from registry import Snapshot
from registry.store import open_store


def client_ip(i: int) -> str:
    """The i-th client, each in its own /24."""
    return f"{11 + (i >> 16) % 200}.{(i >> 8) & 255}.{i & 255}.{1 + i % 250}"


class Pauses:
    """Collector pauses by generation, through ``gc.callbacks``."""

    def __init__(self) -> None:
        self.by_gen: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.by_gen[info["generation"]].append(time.perf_counter() - self._start)

    def __enter__(self) -> Pauses:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)

    def text(self) -> str:
        return ", ".join(
            f"gen{g} {len(p)}x max {max(p, default=0) * 1000:.1f}ms" for g, p in self.by_gen.items()
        )


def load(services: int, work: Path) -> Snapshot:
    url = bl.seed(work / "registry.db", services, 4)

    async def snap() -> Snapshot:
        store = await open_store(url)
        try:
            return await store.snapshot()
        finally:
            await store.close()

    return asyncio.run(snap())


def run_mode(snap: Snapshot, mode: str, args: argparse.Namespace, start: int) -> dict[str, Any]:
    table = RoutingTable(snap, hot_misses=None if mode == "decide" else HOT_MISSES)
    names = [bl.service_name(i) for i in range(args.services)]
    if mode == "dns-ecs":
        engine = DnsEngine(table, Config())

        def ask(request: bytes) -> None:
            engine.respond(request, "127.0.0.1", True)

        def requests(first: int, n: int) -> list[bytes]:
            return [
                ecs_query(names[i % len(names)], i, ((11 + (i >> 16) % 200) << 16) | (i & 0xFFFF))
                for i in range(first, first + n)
            ]

    else:
        fast = FastServer(Context(table, Config()), QUERY_ROUTES, lambda: None)  # type: ignore[arg-type,return-value]
        if mode in ("full", "decide"):
            fast.miss_lanes = fast.direct = {}  # the lane answers only from maps; "decide" has none
        found = Router(QUERY_ROUTES).match(b"GET", b"/d")
        assert found is not None
        route, account = found
        headers = b"\r\nhost: bench\r\n"

        def ask(request: bytes) -> None:
            fast.respond(route, account, b"GET", request, headers, b"", "127.0.0.1")

        def requests(first: int, n: int) -> list[bytes]:
            return [
                f"/d?dn={names[i % len(names)]}&ip={client_ip(i)}".encode()
                for i in range(first, first + n)
            ]

    gc.collect()
    gc.freeze()  # as ``serve`` does once the table is built
    for request in requests(start, args.warm):
        ask(request)
    built_before = table.maps_built
    timed = requests(start + args.warm, args.requests)
    lat: list[float] = []
    clock = time.perf_counter
    profile = cProfile.Profile() if args.profile else None
    with Pauses() as pauses:
        if profile is not None:
            profile.enable()
        cpu = time.process_time()
        for request in timed:
            t = clock()
            ask(request)
            lat.append(clock() - t)
        cpu = time.process_time() - cpu
        if profile is not None:
            profile.disable()
    gc.unfreeze()
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    lat.sort()
    stats = table.stats()
    return {
        "mode": mode,
        "per_cpu_s": len(timed) / cpu,
        "p50": lat[len(lat) // 2] * 1000,
        "p99": lat[int(len(lat) * 0.99)] * 1000,
        "max": lat[-1] * 1000,
        "gc": pauses.text(),
        "gc_max": max((max(p, default=0) for p in pauses.by_gen.values()), default=0) * 1000,
        "maps": f"{stats['bucket_maps']} maps, {stats['bucket_map_bytes'] / 2**20:.0f} MiB, "
        f"{table.maps_built - built_before} built while timed",
    }


def reference(n: int) -> float:
    d = {i: b"x" * 20 for i in range(1000)}
    cpu = time.process_time()
    for i in range(n):
        b"".join((b"HTTP/1.1 200 OK\r\n", d[i % 1000]))
    return n / (time.process_time() - cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--warm", type=int, default=100_000, help="requests before timing")
    ap.add_argument("--requests", type=int, default=100_000, help="timed requests")
    ap.add_argument("--modes", default="decide,full,maps,dns-ecs")
    ap.add_argument("--profile", action="store_true", help="print a cProfile of each mode")
    args = ap.parse_args()
    with TemporaryDirectory() as tmp:
        snap = load(args.services, Path(tmp))
    ref = reference(args.requests)
    print(
        f"bench_miss: /d through FastServer.respond, {args.services:,} services x 4 endpoints, "
        f"a new /24 per request; {args.warm:,} warm-up + {args.requests:,} timed requests; "
        f"{bl.loadavg()}"
    )
    print(f"{'reference: dict lookup + join':32} {ref:>12,.0f}/CPU-s")
    for k, mode in enumerate(args.modes.split(",")):
        r = run_mode(snap, mode, args, 1_000_000 * (k + 1))
        print(
            f"{('DNS ECS miss' if mode == 'dns-ecs' else '/d miss path, ' + mode):32} {r['per_cpu_s']:>12,.0f}/CPU-s  p50 {r['p50']:.3f} ms"
            f"  p99 {r['p99']:.3f} ms  max {r['max']:.1f} ms"
        )
        print(f"{'':32} GC: {r['gc']}; {r['maps']}")


if __name__ == "__main__":
    main()
