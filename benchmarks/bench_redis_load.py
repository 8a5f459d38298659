"""The Redis snapshot load alone: its time and peak memory at 100,000 services.

A redis-server is started here and seeded (``benchlib``'s registry: ``--services`` x
``--endpoints``); then, ``--rounds`` times, a fresh interpreter of this environment
opens the store and loads the whole registry (``snapshot()``, the load a node does at
start), and reports the seconds the load took and its peak RSS (``ru_maxrss``) beside
the RSS before it (imports done). Run it with another checkout's interpreter to compare
versions (the registry code is that interpreter's).

    .venv/bin/python benchmarks/bench_redis_load.py [--services 100000] [--endpoints 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import benchlib as bl

BENCH = "redis_load"
RSS_TARGET_MB = 600.0

CHILD = """
import asyncio, json, sys, time
import registry
from registry import open_store
from registry.snapshot import Snapshot

def kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0

async def main():
    store = await open_store(sys.argv[1])
    before = kb("VmRSS")
    t0 = time.perf_counter()
    snap = await store.snapshot()
    took = time.perf_counter() - t0
    await store.close()
    print(json.dumps({"seconds": took, "before_mb": before / 1024, "after_mb": kb("VmRSS") / 1024,
                      "peak_mb": kb("VmHWM") / 1024, "services": len(snap.services),
                      "code": registry.__file__}))

asyncio.run(main())
"""


def run(args: Any, work: Path, procs: list[bl.Proc]) -> tuple[list[dict[str, Any]], str]:
    exe = bl.need("redis-server")
    port = bl.free_port()
    argv = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(work)]  # fmt: skip
    procs.append(bl.start(f"redis-{port}", argv, work, port))
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            break
        except OSError:
            time.sleep(0.02)
    url = f"redis://127.0.0.1:{port}/1"
    asyncio.run(bl._seed(url, args.services, args.endpoints, 2))
    got = []
    for _ in range(args.rounds):
        out = subprocess.run(
            bl.pinned(bl.SERVER_CPU, [sys.executable, "-c", CHILD, url]),
            capture_output=True, text=True, timeout=300, check=True,
        )  # fmt: skip
        got.append(json.loads(out.stdout))
    assert all(g["services"] == args.services for g in got), got
    best = min(got, key=lambda g: g["seconds"])
    peak = statistics.median(g["peak_mb"] for g in got)
    rows = [
        bl.row(BENCH, "load (snapshot) seconds, best", f"{best['seconds']:.2f} s",
               note="all: " + ", ".join(f"{g['seconds']:.2f}" for g in got)),
        bl.row(BENCH, "peak RSS of the loading process (VmHWM)", f"{peak:.0f} MB",
               f"<= {RSS_TARGET_MB:g} MB", peak <= RSS_TARGET_MB,
               f"before the load {best['before_mb']:.0f} MB, after it {best['after_mb']:.0f} MB"),
    ]  # fmt: skip
    header = (
        f"bench_redis_load: {args.services} services x {args.endpoints} endpoints, "
        f"{args.rounds} loads, registry code {got[0]['code']}"
    )
    return rows, header


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, default=100_000)
    ap.add_argument("--endpoints", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", help="append the result rows to this JSON-lines file")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    bl.run_main(BENCH, ap.parse_args(), run)


if __name__ == "__main__":
    main()
