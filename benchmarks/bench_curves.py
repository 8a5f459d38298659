"""Cost curves: throughput, p99 and RSS of ``/d`` against the number of distinct
clients and of services, next to nginx measured in the same run.

* clients: a registry of 1,000 services x 4 endpoints; wrk (``wrk/unique_ip.lua``
  with a population size) asks from N distinct /24s in turn (10k, 100k, 1M, 10M:
  from "every client is in the front cache" to "no client ever repeats");
* services: 1k, 10k and 100k services x 4 endpoints, 100,000 distinct clients
  spread over all of them.

Each point is a fresh ``httpdns serve`` (pinned to CPU 1, wrk on CPU 0) with a
warm-up (``--warmup`` server CPU-seconds: hot services get their bucket maps)
and one timed run; RSS is read from /proc after it. The reference is
nginx ``return 200`` with a body of our answer's size, once per curve (it does
not depend on clients or services: a flat line). Figures per server CPU-second
(robust to a shared machine) are kept next to requests/s. Plots (matplotlib):
``curves_clients.png`` and ``curves_services.png`` in ``--out``.

    .venv/bin/python benchmarks/bench_curves.py [--seconds 5] [--out benchmarks/curves]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import benchlib as bl

BENCH = "curves"


def point(work: Path, services: int, clients: int, args: argparse.Namespace) -> dict[str, Any]:
    """One server, one population: warm-up, timed run, RSS."""
    store = bl.seed(work / f"registry-{services}.db", services, 4)
    ours = bl.start_httpdns(work, store)
    try:
        script = bl.HERE / "wrk" / "unique_ip.lua"
        url = f"http://127.0.0.1:{ours.port}"
        common = {"connections": args.connections, "threads": 1, "script": script}
        sargs = [str(services), bl.DOMAIN, "0", str(clients)]
        spent, part = 0.0, 0
        while spent < args.warmup and part < 30:  # server CPU-seconds, as bench_http's miss case
            before = bl.cpu_seconds(ours.pid)
            bl.wrk(url, seconds=3, script_args=sargs, **common)
            spent += bl.cpu_seconds(ours.pid) - before
            part += 1
        res = bl.wrk(url, seconds=args.seconds, script_args=sargs, server=ours.pid, **common)
        rss = bl.rss_kb(ours.pid) / 1024
    finally:
        ours.stop()
    return {
        "services": services,
        "clients": clients,
        "rps": res.rps,
        "per_cpu_s": res.per_cpu_s,
        "p99_ms": res.p99_ms,
        "rss_mb": rss,
        "clean": res.clean,
    }


def reference(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """nginx ``return 200`` with a /d-sized body, the same wrk settings (paths.lua)."""
    ref = bl.start_nginx(work, b"x" * 22)
    try:
        targets = work / "ref.txt"
        targets.write_text("/d?dn=svc1.bench.example&ip=11.0.0.1\n")
        common = {"connections": args.connections, "threads": 1,
                  "script": bl.HERE / "wrk" / "paths.lua"}  # fmt: skip
        url = f"http://127.0.0.1:{ref.port}"
        bl.wrk(url, seconds=3, script_args=[str(targets)], **common)
        res = bl.wrk(url, seconds=args.seconds, script_args=[str(targets)], server=ref.pid,
                     **common)  # fmt: skip
        rss = sum(bl.rss_kb(p) for p in [ref.pid, *bl.children(ref.pid)]) / 1024
    finally:
        ref.stop()
    return {"rps": res.rps, "per_cpu_s": res.per_cpu_s, "p99_ms": res.p99_ms, "rss_mb": rss}


def plot(points: list[dict[str, Any]], ref: dict[str, Any], x: str, title: str, path: Path) -> None:
    """Three panels (req/s and req per server CPU-s, p99, RSS) against ``x`` (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [p[x] for p in points]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = [
        ("requests/s", "rps", "per_cpu_s"),
        ("p99 latency (ms), 64 connections", "p99_ms", None),
        ("RSS (MB)", "rss_mb", None),
    ]
    for ax, (label, key, extra) in zip(axes, panels, strict=True):
        ax.plot(xs, [p[key] for p in points], "o-", label="httpdns")
        ax.axhline(ref[key], color="grey", linestyle="--", label="nginx return 200")
        if extra:
            ax.plot(xs, [p[extra] for p in points], "s:", label="httpdns per server CPU-s")
            ax.axhline(ref[extra], color="grey", linestyle=":", label="nginx per server CPU-s")
        ax.set_xscale("log")
        ax.set_xlabel(x)
        ax.set_title(label)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="10000,100000,1000000,10000000")
    ap.add_argument("--services", default="1000,10000,100000")
    ap.add_argument("--service-clients", type=int, default=100_000,
                    help="distinct clients for the services curve")  # fmt: skip
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=12, help="server CPU-seconds per point")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--out", default=str(bl.HERE / "curves"))
    ap.add_argument("--json", help="append the result rows to this JSON-lines file")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    bl.run_main(BENCH, args, run)


def run(
    args: argparse.Namespace, work: Path, procs: list[bl.Proc]
) -> tuple[list[dict[str, Any]], str]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ref = reference(work, args)
    by_clients = [point(work, 1000, int(n), args) for n in args.clients.split(",") if n]
    by_services = [
        point(work, int(n), args.service_clients, args) for n in args.services.split(",") if n
    ]
    load = bl.loadavg()
    plot(by_clients, ref, "clients", f"/d, 1,000 services, distinct clients; {load}",
         out / "curves_clients.png")  # fmt: skip
    plot(by_services, ref, "services",
         f"/d, {args.service_clients:,} clients, services x 4 endpoints; {load}",
         out / "curves_services.png")  # fmt: skip
    (out / "curves.json").write_text(
        json.dumps({"reference": ref, "clients": by_clients, "services": by_services}, indent=1)
    )
    rows: list[dict[str, Any]] = []
    rows.append(bl.row(BENCH, "nginx return 200 (reference)",
                       f"{ref['rps']:,.0f}/s p99 {ref['p99_ms']:.2f}ms",
                       note=f"{ref['per_cpu_s']:,.0f}/server CPU-s"))  # fmt: skip
    for p in by_clients + by_services:
        rows.append(
            bl.row(
                BENCH,
                f"{p['services']:,} services, {p['clients']:,} clients",
                f"{p['rps']:,.0f}/s p99 {p['p99_ms']:.2f}ms RSS {p['rss_mb']:.0f}MB",
                note=f"{p['per_cpu_s']:,.0f}/server CPU-s; ratio per CPU-s "
                f"{p['per_cpu_s'] / ref['per_cpu_s']:.2f}" + ("" if p["clean"] else "; errors"),
            )
        )
    ratio = statistics.median(p["per_cpu_s"] / ref["per_cpu_s"] for p in by_clients)
    header = (
        f"bench_curves: wrk -t1 -c{args.connections} -d{args.seconds:g}s "
        f"(+{args.warmup:g} server CPU-s warm-up) per point; median ratio per CPU-s over the clients "
        f"curve {ratio:.2f}; plots in {out}"
    )
    return rows, header


if __name__ == "__main__":
    main()
