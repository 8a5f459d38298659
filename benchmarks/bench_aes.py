"""DNSPod-encrypted ``/d`` against the plain warm ``/d``, in process.

Feeds whole request bytes, as ``bench_http.py``'s wrk script sends them
(``wrk.format("GET", target)``: request line and ``Host``), to the fast path's
protocol (``FastHTTP.data_received``: the object the event loop drives) over a
fake transport, round-robin over 64 connections, and reports microseconds per
request (of the fastest batch of ``--batch`` requests: the least disturbed by other
work on a shared machine):

* ``plain``: ``/d?dn=NAME&ip=IP`` for 10,000 (name, ip=) pairs over 1,000
  services, after a warm-up pass, so every request is a front-cache repeat (the
  ``bench_http.py`` case "front cache warm");
* ``des``: the same pairs, DNSPod DES-encrypted (deterministic: front-cached too);
* ``aes``: the same pairs AES-encrypted, ``--aes-variants`` fresh-IV encryptions
  of each (as clients send them): every request framed, decrypted, answered
  from the lane's plaintext cache and encrypted under a fresh IV.

Sockets, the event loop and wrk are left out: on a real node each request also
costs a read and a write system call (a few microseconds), the same for every
case, so the ratio of requests/s in ``bench_http.py`` is nearer 1 than the ratio
of these figures.

    .venv/bin/python benchmarks/bench_aes.py [--rounds 3] [--profile aes]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import gc
import pstats
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import benchlib as bl
from bench_http import AES_KEY, DES_KEY, DNSPOD_ID, client_ip, encrypted_paths
from bench_miss import load

from httpdns.config import Config, DnspodAccount
from httpdns.dialects import Context
from httpdns.fasthttp import FastHTTP, FastServer
from httpdns.routes import QUERY_ROUTES
from httpdns.table import RoutingTable

CONNECTIONS = 64


class Sink:
    """The least an asyncio transport does for ``FastHTTP``: counts the bytes written."""

    def __init__(self) -> None:
        self.written = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass


def requests(targets: list[str]) -> list[bytes]:
    """The bytes wrk sends for each target."""
    return [f"GET {t} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n".encode() for t in targets]


def measure(fast: list[FastHTTP], reqs: list[bytes], batch: int, profile: bool) -> float:
    """Microseconds per request of the fastest batch of ``batch`` requests over one pass
    of ``reqs`` (the least disturbed by other work on a shared machine)."""
    conns = len(fast)
    prof = cProfile.Profile() if profile else None
    if prof is not None:
        prof.enable()
    clock = time.perf_counter
    best = float("inf")
    for at in range(0, len(reqs) - batch + 1, batch):
        t = clock()
        for i in range(at, at + batch):
            fast[i % conns].data_received(reqs[i])
        best = min(best, clock() - t)
    if prof is not None:
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    return best / batch * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--ips", type=int, default=10_000, help="distinct (name, ip=) pairs")
    ap.add_argument("--aes-variants", type=int, default=8)
    ap.add_argument("--batch", type=int, default=200, help="requests timed together")
    ap.add_argument("--rounds", type=int, default=3, help="passes over each list")
    ap.add_argument("--profile", default="", help="cProfile these cases (comma-separated)")
    args = ap.parse_args()
    with TemporaryDirectory() as tmp:
        snap = load(args.services, Path(tmp))
    accounts = {DNSPOD_ID: DnspodAccount(DNSPOD_ID, des_key=DES_KEY, aes_key=AES_KEY)}
    context = Context(RoutingTable(snap), dataclasses.replace(Config(), dnspod=accounts))
    server = FastServer(context, QUERY_ROUTES, asyncio.Protocol)
    fast = []
    for _ in range(CONNECTIONS):
        conn = FastHTTP(server)
        conn.connection_made(Sink())  # type: ignore[arg-type]
        fast.append(conn)
    names = [bl.service_name(i) for i in range(args.services)]
    pairs = [(names[i % len(names)], client_ip(i)) for i in range(args.ips)]
    cases = {
        "plain": requests([f"/d?dn={n}&ip={ip}" for n, ip in pairs]),
        "des": requests(encrypted_paths(pairs, "des")),
        "aes": requests(encrypted_paths(pairs, "aes", args.aes_variants)),
    }
    for reqs in cases.values():  # warm: front cache, repeats, the lane's plaintext answers
        for _ in range(2):
            measure(fast, reqs[: 2 * args.ips], len(reqs[: 2 * args.ips]), False)
    gc.freeze()
    sizes = {}
    for case, reqs in cases.items():
        sink = fast[0].transport
        before = sink.written  # type: ignore[union-attr]
        fast[0].data_received(reqs[0])
        sizes[case] = sink.written - before  # type: ignore[union-attr]
    best: dict[str, float] = {}
    for r in range(args.rounds):
        for case, reqs in cases.items():
            us = measure(fast, reqs, args.batch, case in args.profile.split(",") and r == 0)
            best[case] = min(us, best.get(case, us))
    print(
        f"bench_aes: FastHTTP.data_received, {CONNECTIONS} connections, "
        f"{args.services:,} services, {args.ips:,} pairs (AES: x{args.aes_variants} fresh IVs); "
        f"fastest batch of {args.batch:,} over {args.rounds} passes; {bl.loadavg()}"
    )
    plain = best["plain"]
    for case, us in best.items():
        print(
            f"{case:6} {us:7.2f} us/request  {sizes[case]:4d} B response  {us / plain:5.2f}x plain"
        )


if __name__ == "__main__":
    main()
