"""Python client benchmark (issue: client libraries): time of a cached lookup.

A stand-in HTTP DNS server (``http.server`` in a thread, answering ``/d`` with a long
TTL) fills the cache once; then ``Resolver.resolve`` and ``AsyncResolver.resolve`` are
timed on the cached name, with and without a metrics hook, beside a plain dict lookup
in the same run (the floor of any Python hot path). Best of N runs, per call.

    .venv/bin/python benchmarks/bench_client.py [--calls 200000] [--runs 7]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

try:
    from httpdns_client import AsyncResolver, LookupEvent, Resolver
except ImportError:  # not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients" / "python"))
    from httpdns_client import AsyncResolver, LookupEvent, Resolver

NAME = "api.bench.example"
TARGET_US = 5.0


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"192.0.2.1;192.0.2.2,3600"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def best_per_call(fn: Callable[[int], None], calls: int, runs: int) -> float:
    """Best of ``runs`` runs of ``fn(calls)``, in seconds per call."""
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        fn(calls)
        best = min(best, (time.perf_counter() - started) / calls)
    return best


def main() -> None:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    server = f"http://127.0.0.1:{httpd.server_address[1]}"

    table = {NAME: ("192.0.2.1", "192.0.2.2")}
    key = NAME

    def dict_lookup(n: int) -> None:
        get = table.get
        for _ in range(n):
            get(key)

    rows: list[tuple[str, float]] = [
        ("dict.get (reference)", best_per_call(dict_lookup, args.calls, args.runs))
    ]

    with Resolver([server]) as r:
        assert r.resolve(NAME).source == "server"
        assert r.resolve(NAME).source == "cache"
        resolve = r.resolve

        def sync_cached(n: int) -> None:
            for _ in range(n):
                resolve(NAME)

        rows.append(("Resolver.resolve, cached", best_per_call(sync_cached, args.calls, args.runs)))

    events: list[float] = []

    def on_lookup(event: LookupEvent) -> None:
        if len(events) < 1:
            events.append(event.latency)

    with Resolver([server], on_lookup=on_lookup) as r:
        r.resolve(NAME)
        resolve = r.resolve

        def sync_hooked(n: int) -> None:
            for _ in range(n):
                resolve(NAME)

        rows.append(
            (
                "Resolver.resolve, cached, on_lookup hook",
                best_per_call(sync_hooked, args.calls, args.runs),
            )
        )

    async def async_rows() -> float:
        async with AsyncResolver([server]) as ar:
            assert (await ar.resolve(NAME)).source == "server"
            best = float("inf")
            for _ in range(args.runs):
                started = time.perf_counter()
                for _ in range(args.calls):
                    await ar.resolve(NAME)
                best = min(best, (time.perf_counter() - started) / args.calls)
            return best

    rows.append(("await AsyncResolver.resolve, cached", asyncio.run(async_rows())))
    httpd.shutdown()

    reference = rows[0][1]
    print(f"Python {sys.version.split()[0]}, best of {args.runs} x {args.calls:,} calls")
    print(f"{'operation':44} {'per call':>10} {'vs dict':>8} {'target':>9} {'ok':>4}")
    for label, seconds in rows:
        us = seconds * 1e6
        target = "" if label.startswith("dict") else f"<= {TARGET_US:g} us"
        ok = "" if label.startswith("dict") else ("yes" if us <= TARGET_US else "NO")
        print(f"{label:44} {us:8.3f} us {seconds / reference:7.1f}x {target:>9} {ok:>4}")


if __name__ == "__main__":
    main()
