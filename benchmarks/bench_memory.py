"""Resident memory of ``httpdns serve`` with 10,000 services x 20 endpoints.

A SQLite registry of 10,000 services x 20 endpoints (2 datacenters, 70/30,
``answers=2``) is seeded first. Then ``httpdns serve --http --dns`` runs as one
process, and again with ``--workers 2``; each time, once every worker listens:
- warm: wrk (``wrk/paths.lua``) over ``/d`` for every name with 10,000 distinct
  client addresses plus a DoH GET for every name, and dnsperf over every name;
  VmRSS of each serving process is read from ``/proc/PID/status``;
- fill: ``/d`` with a new client /24 on every request (``wrk/unique_ip.lua``) until
  each worker has seen ``--fill-requests`` of them (default 1.1 million, at most
  ``--fill-cap`` seconds), then ``--fill-dns`` DNS queries each with a new ECS
  subnet (dnsperf ``-B``), which takes the server's bounded caches to their
  bounds: the per-URL HTTP front cache, the DNS front cache, the per-service
  steering answers and the client-bucket memo (a million /24s; the header
  prints the other bounds as the code under test sets them); VmRSS again, and
  VmHWM (the peak). That is the steady state of a node that serves a large
  client population for long enough.
Target: <= 400 MB per process, for each reading. A bare interpreter with the
same imports is measured as the reference floor.

    .venv/bin/python benchmarks/bench_memory.py [--services 10000] [--endpoints 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import benchlib as bl
from bench_http import client_ip, doh_path

BENCH = "memory"
TARGET_MB = 400.0


def listening_ports(pid: int) -> set[int]:
    """TCP ports process ``pid`` listens on (its socket inodes matched in /proc/net/tcp)."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                link = fd.readlink().as_posix()
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return set()
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # LISTEN
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def serving(proc: bl.Proc, workers: int, timeout: float = 180) -> list[int]:
    """The pids of the processes serving ``proc.port`` once all ``workers`` of them listen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        pids = [proc.pid] if workers == 1 else bl.children(proc.pid)
        ready = [p for p in pids if proc.port in listening_ports(p)]
        if len(ready) == workers:
            return ready
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name}: {workers} workers not listening after {timeout:.0f} s")


def ecs_queries(names: list[str], count: int) -> bytes:
    """``count`` A queries over ``names``, each with an EDNS Client Subnet (RFC 7871) /24
    never used before, in dnsperf's binary format (2-byte length, then the message)."""
    out = []
    for i in range(count):
        name = names[i % len(names)]
        qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
        subnet = bytes([30 + (i >> 16) % 200, (i >> 8) & 255, i & 255])
        option = struct.pack("!HHHBB", 8, 4 + 3, 1, 24, 0) + subnet  # ECS, IPv4, /24
        opt = b"\0" + struct.pack("!HHIH", 41, 1232, 0, len(option)) + option  # OPT RR
        msg = (struct.pack("!HHHHHH", i & 0xFFFF, 0x0100, 1, 0, 0, 1) + qname
               + struct.pack("!HH", 1, 1) + opt)  # fmt: skip
        out.append(struct.pack("!H", len(msg)) + msg)
    return b"".join(out)


def bounds() -> str:
    """The cache bounds of the code under test, as it says them."""
    try:
        from httpdns import dnsserver, fasthttp
        from httpdns.config import Config

        answers = Config.__dataclass_fields__["max_cached_answers"].default
        return (f"bounds: {fasthttp.MAX_CACHED:,} HTTP responses, {dnsserver.MAX_CACHED:,} DNS "
                f"replies, {answers:,} steering answers")  # fmt: skip
    except (ImportError, AttributeError, KeyError) as exc:
        return f"bounds: unknown ({exc})"


def mb(kb: int) -> float:
    return kb / 1024


def hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def baseline_kb() -> int:
    """VmRSS of an interpreter that imported the server and nothing else."""
    code = (
        "import httpdns.serve, uvloop, aiohttp.web\n"
        "for l in open('/proc/self/status'):\n"
        "    if l.startswith('VmRSS:'): print(l.split()[1])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def measure(
    args: argparse.Namespace,
    work: Path,
    store: str,
    files: dict[str, Path],
    workers: int,
    procs: list[bl.Proc],
) -> dict[str, Any]:
    t0 = time.monotonic()
    proc = bl.start_httpdns(work, store, dns=True, workers=workers, cpu=None)
    procs.append(proc)
    try:
        pids = serving(proc, workers)
        ready_s = time.monotonic() - t0
        url = f"http://127.0.0.1:{proc.port}"
        lua = bl.HERE / "wrk" / "paths.lua"
        kw: dict[str, Any] = {"connections": 16, "cpu": None}
        warm = [
            bl.wrk(url, seconds=args.warm, script=lua, script_args=[str(files["d"])], **kw),
            bl.wrk(url, seconds=args.warm, script=lua, script_args=[str(files["doh"])], **kw),
        ]
        dns = bl.dnsperf(proc.dns_port, files["names"], seconds=args.warm, cpu=None)
        time.sleep(0.5)
        after_warm = {p: bl.rss_kb(p) for p in pids}
        fills: list[bl.WrkResult] = []
        want = args.fill_requests * workers
        started = time.monotonic()
        unique = bl.HERE / "wrk" / "unique_ip.lua"
        done = 0
        while done < want and time.monotonic() - started < args.fill_cap:
            first = str(done + 64 * len(fills))  # clients never seen before
            sargs = [str(args.services), bl.DOMAIN, first]
            fills.append(
                bl.wrk(url, seconds=args.fill_chunk, script=unique, script_args=sargs, **kw)
            )
            done += fills[-1].requests
        fill_s = time.monotonic() - started
        dns_fill = bl.dnsperf(proc.dns_port, files["ecs"], seconds=300, cpu=None,
                              binary=True, once=True)  # fmt: skip
        time.sleep(0.5)
        after_fill = {p: bl.rss_kb(p) for p in pids}
        peak = {p: hwm_kb(p) for p in pids}
        supervisor = bl.rss_kb(proc.pid) if workers > 1 else 0
        loads = [*warm, *fills]
        problems = [f"{w.non_2xx} non-2xx" for w in loads if w.non_2xx] + [
            f"socket errors {w.socket_errors}" for w in loads if w.socket_errors
        ]
        for d in (dns, dns_fill):
            if d.lost:
                problems.append(f"{d.lost} DNS queries lost")
        alive = proc.alive() and all(bl.rss_kb(p) for p in pids)
        if not alive:
            problems.append("a process died")
        return {
            "pids": pids,
            "ready_s": ready_s,
            "warm": after_warm,
            "fill": after_fill,
            "peak": peak,
            "supervisor": supervisor,
            "warm_requests": sum(w.requests for w in warm) + dns.completed,
            "fill_requests": sum(f.requests for f in fills),
            "fill_dns": dns_fill.completed,
            "fill_s": fill_s,
            "problems": problems,
        }
    finally:
        proc.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=10_000)
    ap.add_argument("--endpoints", type=int, default=20)
    ap.add_argument("--warm", type=float, default=3, help="seconds of each warm-up load")
    ap.add_argument(
        "--fill-requests",
        type=int,
        default=1_100_000,
        help="new-client requests per worker (fills the 1M bucket memo)",
    )
    ap.add_argument(
        "--fill-dns",
        type=int,
        default=150_000,
        help="DNS queries with distinct ECS subnets (fills the DNS front cache)",
    )
    ap.add_argument("--fill-chunk", type=float, default=15, help="seconds of one wrk run")
    ap.add_argument("--fill-cap", type=float, default=150, help="at most this many seconds")
    ap.add_argument("--json", help="append the result rows to this JSON-lines file")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    bl.run_main(BENCH, args, run)


def run(
    args: argparse.Namespace, work: Path, procs: list[bl.Proc]
) -> tuple[list[dict[str, Any]], str]:
    t0 = time.monotonic()
    store = bl.seed(work / "registry.db", args.services, args.endpoints)
    seed_s = time.monotonic() - t0
    names = [bl.service_name(i) for i in range(args.services)]
    files = {"d": work / "d.txt", "doh": work / "doh.txt", "names": work / "names.txt",
             "ecs": work / "ecs.bin"}  # fmt: skip
    files["d"].write_text(
        "".join(f"/d?dn={names[i % len(names)]}&ip={client_ip(i)}\n" for i in range(10_000))
    )
    files["doh"].write_text("".join(doh_path(n) + "\n" for n in names))
    files["names"].write_text("".join(f"{n} A\n" for n in names))
    files["ecs"].write_bytes(ecs_queries(names, args.fill_dns))
    base = baseline_kb()
    one = measure(args, work, store, files, 1, procs)
    two = measure(args, work, store, files, 2, procs)

    rows: list[dict[str, Any]] = []

    def add(measure: str, fig: str, target: str = "", met: bool | None = None,
            note: str = "") -> None:  # fmt: skip
        rows.append(bl.row(BENCH, measure, fig, target, met, note))

    tgt = f"<= {TARGET_MB:g} MB"
    add("reference: interpreter with the server's imports", f"{mb(base):.0f} MB")
    for label, res in (("one process", one), ("--workers 2", two)):
        for i, pid in enumerate(res["pids"]):
            who = "" if len(res["pids"]) == 1 else f" worker {i + 1}"
            warm, fill, peak = mb(res["warm"][pid]), mb(res["fill"][pid]), mb(res["peak"][pid])
            add(f"{label}{who}: RSS after warm-up", f"{warm:.0f} MB", tgt, warm <= TARGET_MB)
            add(f"{label}{who}: RSS, caches full / peak (VmHWM)",
                f"{fill:.0f} / {peak:.0f} MB", tgt, max(fill, peak) <= TARGET_MB)  # fmt: skip
        if res["supervisor"]:
            add(f"{label}: supervisor process RSS", f"{mb(res['supervisor']):.0f} MB")
        add(f"  {label}: start to all listening", f"{res['ready_s']:.1f} s",
            note=f"warm-up {res['warm_requests']:,} queries; fill {res['fill_requests']:,} "
                 f"new-client /d requests in {res['fill_s']:.0f} s and {res['fill_dns']:,} "
                 "DNS queries with new ECS subnets")  # fmt: skip
        if res["problems"]:
            add(f"  {label}: problems under load", "PROBLEM", "none", False,
                "; ".join(res["problems"]))  # fmt: skip
    header = (
        f"bench_memory: {args.services:,} services x {args.endpoints} endpoints "
        f"(seeded in {seed_s:.0f} s); warm {args.warm:g}s x3 (/d, DoH, dnsperf), fill "
        f"{args.fill_requests:,} new clients per worker + {args.fill_dns:,} ECS queries; "
        f"{bounds()}"
    )
    return rows, header


if __name__ == "__main__":
    main()
