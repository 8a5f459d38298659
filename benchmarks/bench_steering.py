"""Steering and compiled-table benchmark (issue: Core).

10,000 services x 20 endpoints in 2 datacenters. Measures the table build
(lazy: nothing compiled), the first query, compiling every service, one
service recompile, cached lookups, misses by ``steering.decide`` and by bucket
map, a bucket map's build, and resident memory, and prints them beside the
targets. Reference: a plain dict lookup in the same
run, the floor of any Python hot path.

    .venv/bin/python benchmarks/bench_steering.py [--services 10000]
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import time

from httpdns.table import A, Client, RoutingTable
from registry import Change, Datacenter, Endpoint, Release, Service, Snapshot


def build(n_services: int, per_service: int) -> Snapshot:
    changes = [
        Change.put(Datacenter("idc", "idc", True)),
        Change.put(Datacenter("cloud", "cloud", False)),
    ]
    for s in range(n_services):
        name = f"svc{s}.example.org"
        changes.append(Change.put(Service(name, {"default": {"idc": 70, "cloud": 30}}, "ro", 30)))
        changes.append(Change.put(Release(name, "v1", "v2", 5.0)))
        for e in range(per_service):
            dc = "idc" if e % 2 == 0 else "cloud"
            ver = "v2" if e % 10 == 9 else "v1"
            addr = f"10.{s // 256 % 256}.{s % 256}.{e + 1}"
            changes.append(Change.put(Endpoint(name, f"e{e}", dc, addr, 80, ver)))
    snap, _ = Snapshot().apply(changes, 1)
    return snap


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def per_call(fn, n: int) -> float:
    """Best of 5 runs, seconds per call."""
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        fn(n)
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=10_000)
    ap.add_argument("--endpoints", type=int, default=20)
    args = ap.parse_args()

    base_rss = rss_mb()
    snap = build(args.services, args.endpoints)
    gc.collect()
    snap_mem = rss_mb() - base_rss
    names = list(snap.services)
    t0 = time.perf_counter()
    table = RoutingTable(snap)  # lazy: compiles nothing yet
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    table.resolve(names[0], A, Client((10 << 24) | 7, 4))
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for name in names:
        table.compiled(name)
    compile_s = time.perf_counter() - t0
    gc.collect()
    mem = rss_mb() - base_rss - snap_mem

    # one-service recompile: change a weight, apply, median of 200
    times = []
    for i in range(200):
        name = names[i * 37 % len(names)]
        svc = snap.services[name]
        new = Service(name, {"default": {"idc": 60 + i % 10, "cloud": 40}}, svc.access, svc.ttl)
        snap2, _ = snap.apply([Change.put(new)], snap.revision + 1)
        t0 = time.perf_counter()
        table.update(snap2, frozenset({name}))
        times.append(time.perf_counter() - t0)
        snap = snap2
    recompile = statistics.median(times)

    clients = [Client((10 << 24) | (i << 8) | 7, 4) for i in range(4096)]
    n_names = len(names)

    def cached(n: int) -> None:
        resolve = table.resolve
        for i in range(n):
            resolve(names[i % 64], A, clients[i % 64])

    for i in range(64):  # warm
        table.resolve(names[i], A, clients[i])

    fresh = iter(range(1, 1 << 40))
    plain = RoutingTable(snap, hot_misses=None)  # every miss by steering.decide

    def uncached(n: int) -> None:
        resolve = plain.resolve
        for i in range(n):
            k = next(fresh)
            resolve(
                names[(i * 7919) % n_names],
                A,
                Client(((k % 200 + 11) << 24) | (k << 8 & 0xFFFF00), 4),
            )

    mapped = RoutingTable(snap, hot_misses=1)
    t0 = time.perf_counter()
    for name in names[:64]:  # hot: each gets its bucket map at its first miss
        mapped.resolve(name, A, clients[0])
    map_build_s = (time.perf_counter() - t0) / 64

    def map_miss(n: int) -> None:
        resolve = mapped.resolve
        for i in range(n):
            k = next(fresh)
            resolve(names[i % 64], A, Client(((k % 200 + 11) << 24) | (k << 8 & 0xFFFF00), 4))

    d = {f"k{i}": i for i in range(64)}
    keys = list(d)

    def ref(n: int) -> None:
        get = d.get
        for i in range(n):
            get(keys[i % 64])

    cached_s = per_call(cached, 200_000)
    uncached_s = per_call(uncached, 20_000)
    map_miss_s = per_call(map_miss, 100_000)
    ref_s = per_call(ref, 200_000)

    rows = [
        ("start: table build (lazy)", f"{build_s:.3f} s", "<= 3 s", build_s <= 3),
        ("first query (compiles one)", f"{first_s * 1e3:.2f} ms", "", True),
        ("compile every service", f"{compile_s:.2f} s", "", True),
        (
            "one-service recompile (median)",
            f"{recompile * 1e3:.3f} ms",
            "<= 1 ms",
            recompile <= 1e-3,
        ),
        ("cached lookup", f"{cached_s * 1e6:.2f} us", "<= 2 us", cached_s <= 2e-6),
        ("miss, steering.decide", f"{uncached_s * 1e6:.2f} us", "<= 20 us", uncached_s <= 20e-6),
        ("miss, bucket map", f"{map_miss_s * 1e6:.2f} us", "", True),
        ("bucket map build (mean of 64)", f"{map_build_s * 1e3:.2f} ms", "", True),
        ("resident memory (snapshot)", f"{snap_mem:.0f} MB", "", True),
        ("resident memory (all compiled)", f"{mem:.0f} MB", "<= 300 MB", mem <= 300),
        ("reference: dict.get loop", f"{ref_s * 1e6:.3f} us", "", True),
    ]
    print(f"bench_steering: {args.services} services x {args.endpoints} endpoints, 2 datacenters")
    print(f"{'measure':34} {'figure':>12}  {'target':10} met")
    for what, fig, target, ok in rows:
        print(f"{what:34} {fig:>12}  {target:10} {'yes' if ok else 'NO'}")
    print(f"cached lookup / dict.get = {cached_s / ref_s:.1f}x")


if __name__ == "__main__":
    main()
