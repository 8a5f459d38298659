"""Plain DNS over UDP: dnsperf against ``httpdns serve --dns`` and PowerDNS, same run.

One ``httpdns serve`` process (pinned to CPU 1) on a SQLite registry of 1,000
services x 4 endpoints (2 datacenters, 70/30, ``answers=2``), and, as the
reference, PowerDNS Authoritative (bind backend, one receiver and one
distributor thread, also on CPU 1) serving a zone with the same 1,000 names,
each with the 2 A records our server answers to 127.0.0.1 (read from our
server first, so both answer the same records in the same response size).
PowerDNS keeps its default caches (packet cache ``cache-ttl`` 20 s, query
cache 20 s); our server has its own per-query front cache. dnsperf runs on
CPU 0 over the 1,000 names, UDP, no EDNS, at an unlimited rate with the same
clients and outstanding queries for both; each run has a warm-up first, the
runs are interleaved; figures are medians over ``--rounds`` and the ratio is
the median of the per-round ratios. The servers' CPU time during each run gives
a figure per second of server CPU as well (see bench_http). Targets: ratio >= 0.8
of PowerDNS, no lost queries.

The ECS case (``--ecs``, on by default): our server asked the same names with an
EDNS client-subnet option on every query, each from a /24 never seen before
(dnsperf ``-B`` replays a file of wire queries, a fresh file per run), so every
query is a front-cache miss steered for a new client bucket; the reference is
PowerDNS answering the same names without ECS (it does not steer). The warm-up
uses other subnets, so hot services have their bucket maps, as in a
long-running node.

    .venv/bin/python benchmarks/bench_dns.py [--seconds 10] [--rounds 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import struct
import time
from pathlib import Path
from typing import Any

import benchlib as bl
from dnslib import QTYPE, DNSRecord

BENCH = "dns"
TARGET_RATIO = 0.8
TTL = 30


def ask(port: int, name: str, qid: int, timeout: float = 2.0) -> DNSRecord:
    """One UDP A query (RD, no EDNS, like dnsperf's) to 127.0.0.1:port."""
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    wire = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(wire, ("127.0.0.1", port))
        data, _ = s.recvfrom(65535)
    reply = DNSRecord.parse(data)
    reply.size = len(data)  # type: ignore[attr-defined]
    return reply


def ecs_query(name: str, qid: int, subnet: int) -> bytes:
    """An A query (RD) with EDNS0 (1232 B) and a client-subnet option for the /24
    ``subnet`` (its top 24 bits as an integer), source prefix 24, scope 0."""
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    option = struct.pack("!HHHBB", 8, 7, 1, 24, 0) + subnet.to_bytes(3, "big")
    opt = b"\0" + struct.pack("!HHIH", 41, 1232, 0, len(option)) + option
    return (
        struct.pack("!HHHHHH", qid & 0xFFFF, 0x0100, 1, 0, 0, 1)
        + qname
        + struct.pack("!HH", 1, 1)
        + opt
    )


def ecs_file(path: Path, names: list[str], first: int, count: int) -> Path:
    """``count`` ECS queries for ``names`` in turn, subnets ``first``.. (distinct /24s),
    each after its 2-byte length (``dnsperf -B``)."""
    out = bytearray()
    for i in range(count):
        subnet = ((11 + ((first + i) >> 16) % 200) << 16) | ((first + i) & 0xFFFF)
        wire = ecs_query(names[i % len(names)], i, subnet)
        out += struct.pack("!H", len(wire)) + wire
    path.write_bytes(bytes(out))
    return path


def addresses(reply: DNSRecord) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A)


def zone_text(answers: dict[str, list[str]]) -> str:
    lines = [
        f"$ORIGIN {bl.DOMAIN}.",
        f"$TTL {TTL}",
        f"@ IN SOA ns1.{bl.DOMAIN}. hostmaster.{bl.DOMAIN}. 1 3600 600 86400 {TTL}",
        f"@ IN NS ns1.{bl.DOMAIN}.",
        "ns1 IN A 127.0.0.1",
    ]
    for name, addrs in answers.items():
        label = name.removesuffix("." + bl.DOMAIN)
        lines += [f"{label} IN A {a}" for a in addrs]
    return "\n".join(lines) + "\n"


PDNS_DEFAULTS = "cache-ttl=20, query-cache-ttl=20, negquery-cache-ttl=60 (defaults)"


def start_pdns(work: Path, answers: dict[str, list[str]]) -> bl.Proc:
    exe = bl.need("pdns_server")
    port = bl.free_port()
    d = work / "pdns"
    d.mkdir(exist_ok=True)
    (d / "zone").write_text(zone_text(answers))
    (d / "named.conf").write_text(f'zone "{bl.DOMAIN}" {{ type master; file "{d / "zone"}"; }};\n')
    argv = [exe, "--no-config", "--daemon=no", "--launch=bind",
            f"--bind-config={d / 'named.conf'}", "--local-address=127.0.0.1",
            f"--local-port={port}", "--receiver-threads=1", "--distributor-threads=1",
            f"--socket-dir={d}", "--guardian=no", "--disable-syslog", "--write-pid=no",
            "--security-poll-suffix=", "--loglevel=4"]  # fmt: skip
    proc = bl.start("pdns", bl.pinned(bl.SERVER_CPU, argv), work, port)
    probe = next(iter(answers))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"pdns_server exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            if addresses(ask(port, probe, 1, 0.2)):
                return proc
        except OSError:
            pass
        time.sleep(0.05)
    proc.stop()
    raise RuntimeError(f"pdns_server did not answer within 20 s:\n{proc.tail()}")


def _udp(port: int, wire: bytes, timeout: float = 2.0) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(wire, ("127.0.0.1", port))
        return s.recvfrom(65535)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--clients", type=int, default=1, help="dnsperf -c")
    ap.add_argument("--outstanding", type=int, default=100, help="dnsperf -q")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--no-ecs",
        dest="ecs",
        action="store_false",
        help="skip the case with a new client subnet on every query",
    )
    ap.add_argument(
        "--ecs-warmup",
        type=float,
        default=8,
        help="warm-up of the ECS case in server CPU-seconds (at most 90 s)",
    )
    ap.add_argument("--ecs-queries", type=int, default=400_000,
                    help="queries per ECS file (distinct /24s; more than a run sends)")  # fmt: skip
    ap.add_argument("--json", help="append the result rows to this JSON-lines file")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    bl.run_main(BENCH, args, run)


def run(
    args: argparse.Namespace, work: Path, procs: list[bl.Proc]
) -> tuple[list[dict[str, Any]], str]:
    bl.need("dnsperf")
    store = bl.seed(work / "registry.db", args.services, args.endpoints)
    ours = bl.start_httpdns(work, store, dns=True)
    procs.append(ours)
    names = [bl.service_name(i) for i in range(args.services)]

    answers: dict[str, list[str]] = {}
    our_size = set()
    for i, name in enumerate(names):
        reply = ask(ours.dns_port, name, i + 1)
        got = addresses(reply)
        if reply.header.rcode != 0 or len(got) != 2:
            raise RuntimeError(f"our server answers {name} with rcode {reply.header.rcode}, {got}")
        answers[name] = got
        our_size.add(reply.size)  # type: ignore[attr-defined]
    pdns = start_pdns(work, answers)
    procs.append(pdns)
    pdns_size = set()
    for i, name in enumerate(names):
        reply = ask(pdns.port, name, i + 1)
        if addresses(reply) != answers[name]:
            raise RuntimeError(
                f"PowerDNS answers {name} with {addresses(reply)}, not {answers[name]}"
            )
        pdns_size.add(reply.size)  # type: ignore[attr-defined]

    data = work / "names.txt"
    data.write_text("".join(f"{n} A\n" for n in names))
    servers = {"pdns": pdns.port, "ours": ours.dns_port}
    if args.ecs:
        servers["ecs"] = ours.dns_port
        probe = DNSRecord.parse(_udp(ours.dns_port, ecs_query(names[0], 7, 0x0B0000)))
        if probe.header.rcode != 0 or len(addresses(probe)) != 2:
            raise RuntimeError(f"our server answers an ECS query with {probe}")
    ecs_runs = 0

    def ecs_data() -> Path:
        nonlocal ecs_runs
        ecs_runs += 1
        return ecs_file(work / "ecs.bin", names, ecs_runs * args.ecs_queries, args.ecs_queries)

    runs: dict[str, list[bl.DnsperfResult]] = {k: [] for k in servers}  # every run
    measured: dict[str, list[bl.DnsperfResult]] = {k: [] for k in servers}  # not warm-ups
    crashed = ""
    kw = {"clients": args.clients, "outstanding": args.outstanding}
    for _ in range(args.rounds):
        for key, port in servers.items():
            proc = pdns if key == "pdns" else ours
            if not proc.alive():
                crashed = f"{proc.name} exited with {proc.popen.returncode}: {proc.tail(5)}"
                break
            if key == "ecs":
                # warm until the server has spent ecs_warmup CPU-seconds (hot services get
                # their bucket maps; on a loaded machine wall time would not be enough)
                spent, part = 0.0, 0
                while spent < args.ecs_warmup and part < 30:
                    before = bl.cpu_seconds(proc.pid)
                    runs[key].append(bl.dnsperf(port, ecs_data(), seconds=3, binary=True, **kw))
                    spent += bl.cpu_seconds(proc.pid) - before
                    part += 1
                res = bl.dnsperf(port, ecs_data(), seconds=args.seconds, server=proc.pid,
                                 binary=True, **kw)  # fmt: skip
                runs[key].append(res)
                measured[key].append(res)
                continue
            if args.warmup > 0:
                runs[key].append(bl.dnsperf(port, data, seconds=args.warmup, **kw))
            res = bl.dnsperf(port, data, seconds=args.seconds, server=proc.pid, **kw)
            runs[key].append(res)
            measured[key].append(res)
        if crashed:
            break
    log_errors = [
        line
        for line in ours.log.read_text(errors="replace").splitlines()
        if "Traceback" in line or " ERROR " in line or " CRITICAL " in line
    ]

    rows: list[dict[str, Any]] = []

    def add(measure: str, fig: str, target: str = "", met: bool | None = None,
            note: str = "") -> None:  # fmt: skip
        rows.append(bl.row(BENCH, measure, fig, target, met, note))

    def sizes(s: set[int]) -> str:
        return "/".join(str(x) for x in sorted(s)) + " B"

    def run_row(key: str, measure: str, note: str) -> None:
        rs = measured[key]
        if not rs:
            add(measure, "not measured", note=crashed)
            return
        qps = statistics.median(r.qps for r in rs)
        lat = statistics.median(r.avg_latency_ms for r in rs)
        per_cpu = statistics.median(r.per_cpu_s for r in rs)
        busy = statistics.median(r.server_cpu_s / args.seconds for r in rs)
        client = statistics.median(r.completed / r.client_cpu_s for r in rs if r.client_cpu_s)
        notes = (
            "rounds " + " ".join(f"{r.qps / 1000:.1f}k" for r in rs),
            f"{per_cpu:,.0f}/server CPU-s (busy {busy:.0%}), {client:,.0f}/dnsperf CPU-s",
            note,
        )
        add(measure, f"{qps:,.0f} q/s avg {lat:.2f}ms", note="; ".join(notes))

    run_row("pdns", "PowerDNS 4 bind backend, 1+1 threads (reference)",
            f"replies {sizes(pdns_size)}; lost {sum(r.lost for r in runs['pdns'])}; "
            f"{PDNS_DEFAULTS}")  # fmt: skip
    run_row("ours", f"httpdns --dns, one process, {args.services:,} names",
            f"replies {sizes(our_size)}")  # fmt: skip
    pairs = list(zip(measured["ours"], measured["pdns"], strict=False))
    if pairs:
        ratios = [o.qps / p.qps for o, p in pairs]
        ratio = statistics.median(ratios)
        add("  ratio to PowerDNS", f"{ratio:.2f}", f">= {TARGET_RATIO}", ratio >= TARGET_RATIO,
            "per round " + " ".join(f"{x:.2f}" for x in ratios))  # fmt: skip
        if all(o.projected and p.projected for o, p in pairs):
            eff = statistics.median(o.per_cpu_s / p.per_cpu_s for o, p in pairs)
            idle = statistics.median(o.projected / p.projected for o, p in pairs)
            add("  ratio per server CPU-s / idle-machine estimate", f"{eff:.2f} / {idle:.2f}")
    else:
        add("  ratio to PowerDNS", "not measured", f">= {TARGET_RATIO}", False)
    if args.ecs:
        run_row("ecs", "httpdns --dns, ECS from a new /24 on every query",
                "a fresh subnet file per run; the reference answers without ECS")  # fmt: skip
        pairs = list(zip(measured["ecs"], measured["pdns"], strict=False))
        if pairs:
            ratios = [o.qps / p.qps for o, p in pairs]
            add("  ratio to PowerDNS (no ECS)", f"{statistics.median(ratios):.2f}",
                note="per round " + " ".join(f"{x:.2f}" for x in ratios))  # fmt: skip
            if all(o.projected and p.projected for o, p in pairs):
                eff = statistics.median(o.per_cpu_s / p.per_cpu_s for o, p in pairs)
                idle = statistics.median(o.projected / p.projected for o, p in pairs)
                add("  ratio per server CPU-s / idle-machine estimate", f"{eff:.2f} / {idle:.2f}")
    lost = sum(r.lost for r in runs["ours"])
    sent = sum(r.sent for r in runs["ours"])
    add("  lost queries (all our runs, warm-ups too)", f"{lost} of {sent:,}", "0", lost == 0)
    bad_rcodes = [r.rcodes for r in runs["ours"] if r.rcodes and not r.rcodes.startswith("NOERROR")]
    mixed = [r.rcodes for r in runs["ours"] if "," in r.rcodes]
    sane = ours.alive() and not crashed and not log_errors and not bad_rcodes and not mixed
    detail = crashed or "; ".join(
        x
        for x in (
            f"{len(log_errors)} error lines in its log, first: {log_errors[0][:160]}"
            if log_errors
            else "",
            f"rcodes: {bad_rcodes + mixed}" if bad_rcodes or mixed else "",
            "" if ours.alive() else f"exited with {ours.popen.returncode}",
        )
        if x
    )
    add("our server: no crash, no errors, NOERROR only",
        "clean" if sane else "PROBLEM", "clean", sane, detail)  # fmt: skip
    header = (
        f"bench_dns: dnsperf -c{args.clients} -q{args.outstanding} -l{args.seconds:g} "
        f"(+{args.warmup:g}s warm-up) over {args.services:,} names, UDP, {args.rounds} "
        f"interleaved rounds, medians; servers on CPU {bl.SERVER_CPU}, dnsperf on CPU {bl.LOAD_CPU}"
    )
    return rows, header


if __name__ == "__main__":
    main()
