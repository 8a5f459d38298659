"""DoH over HTTP/2 benchmark: our ``--https`` DoH GET against nginx ``return 200`` over
TLS + h2, same run.

One ``httpdns serve --https`` process (pinned to CPU 1) on a SQLite registry of
1,000 services x 4 endpoints and, as the reference, nginx with one worker (also on
CPU 1) serving TLS with ALPN h2 and returning a fixed body of the size of our DoH
answer, with the same certificate. h2load (nghttp2-client) runs on CPU 0 with the
same clients, streams per client, duration and request targets (DoH GETs of an A
query for each of the 1,000 names, ID 0, no EDNS) against both. Each case gets a
warm-up run; with ``--rounds N`` the cases are measured N times, interleaved, and the
ratio is the median of the per-round ratios (target >= 0.5).

    .venv/bin/python benchmarks/bench_h2.py [--seconds 10] [--rounds 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchlib as bl
import trustme
from bench_http import doh_path

BENCH = "h2"
TARGET_RATIO = 0.5


@dataclass
class H2loadResult:
    rps: float
    requests: int
    succeeded: int
    failed: int
    seconds: float
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0


def parse_h2load(out: str) -> H2loadResult:
    """The figures of one h2load report."""
    done = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    reqs = re.search(
        r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", out
    )
    if not done or not reqs:
        raise RuntimeError(f"cannot read h2load's report:\n{out[-2000:]}")
    seconds = float(done.group(1)) / (1000 if done.group(2) == "ms" else 1)
    return H2loadResult(float(done.group(3)), int(reqs.group(2)), int(reqs.group(3)),
                        int(reqs.group(4)), seconds)  # fmt: skip


def h2load(
    urls: Path, args: argparse.Namespace, seconds: float, server: int | None
) -> H2loadResult:
    """h2load over ``urls`` (one absolute URL a line) for ``seconds``, pinned to the load CPU."""
    argv = [bl.need("h2load"), "-c", str(args.clients), "-m", str(args.streams), "-t", "1",
            "-D", f"{seconds:g}", "-i", str(urls)]  # fmt: skip
    return bl._load(argv, "h2load", parse_h2load, server, seconds, bl.LOAD_CPU)  # type: ignore[no-any-return]


def nginx_h2_conf(port: int, body: bytes, cert: Path, key: Path) -> str:
    """nginx with TLS and HTTP/2 returning ``body`` for every request, one worker, no logs."""
    text = body.decode("latin-1").replace("\\", "\\\\").replace('"', '\\"')
    return f"""daemon off;
worker_processes 1;
pid nginx.pid;
error_log stderr;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    default_type application/dns-message;
    keepalive_requests 10000000;  # h2load keeps its connections, as it does with ours
    client_body_temp_path tmp;
    proxy_temp_path tmp;
    fastcgi_temp_path tmp;
    uwsgi_temp_path tmp;
    scgi_temp_path tmp;
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{ return 200 "{text}"; }}
    }}
}}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--clients", type=int, default=16, help="h2load -c: TLS connections")
    ap.add_argument("--streams", type=int, default=10, help="h2load -m: streams per connection")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", help="append the result rows to this JSON-lines file")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    bl.run_main(BENCH, args, run)


def _wait_https(url: str, proc: bl.Proc) -> bytes:
    """Wait until ``url`` answers 200 over HTTP/2 (curl); the body."""
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited: {proc.tail()}")
        out = subprocess.run([bl.need("curl"), "-sk", "--http2", "-o", "-", "-w", "%{http_code} %{http_version}",
                              url], capture_output=True, timeout=10)  # fmt: skip
        if out.stdout.endswith(b"200 2"):
            return out.stdout[: -len(b"200 2")]
        time.sleep(0.1)
    raise RuntimeError(f"{url} does not answer 200 over HTTP/2: {proc.tail()}")


def run(
    args: argparse.Namespace, work: Path, procs: list[bl.Proc]
) -> tuple[list[dict[str, Any]], str]:
    store = bl.seed(work / "registry.db", args.services, args.endpoints)
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = work / "cert.pem", work / "key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(key))

    http_port, https_port = bl.free_port(), bl.free_port()
    argv = [*bl.httpdns_cmd(), "serve", "--http", f"127.0.0.1:{http_port}", "--https",
            f"127.0.0.1:{https_port}", "--tls-cert", str(cert), "--tls-key", str(key),
            "--store", store, "--zone", bl.DOMAIN, "--log-level", "warning"]  # fmt: skip
    ours = bl.start("httpdns-h2", bl.pinned(bl.SERVER_CPU, argv), work, http_port)
    procs.append(ours)
    bl.wait_http(ours, "/healthz", 120)

    paths = [doh_path(bl.service_name(i)) for i in range(args.services)]
    body = _wait_https(f"https://127.0.0.1:{https_port}{paths[0]}", ours)
    size = len(body)
    if size < 40:
        raise RuntimeError(f"our DoH answer is {size} bytes: {body!r}")

    ngx_port = bl.free_port()
    prefix = work / f"nginx-{ngx_port}"
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    (prefix / "nginx.conf").write_text(nginx_h2_conf(ngx_port, b"x" * size, cert, key))
    ngx_argv = [bl.need("nginx"), "-p", str(prefix), "-c", "nginx.conf", "-e", "stderr"]
    ref = bl.start(f"nginx-{ngx_port}", bl.pinned(bl.SERVER_CPU, ngx_argv), work, ngx_port)
    procs.append(ref)
    ref_body = _wait_https(f"https://127.0.0.1:{ngx_port}/x", ref)
    if len(ref_body) != size:
        raise RuntimeError(f"nginx answers {len(ref_body)} bytes, not {size}")

    files = {}
    for name, port in (("ours", https_port), ("ref", ngx_port)):
        files[name] = work / f"{name}.txt"
        files[name].write_text("".join(f"https://127.0.0.1:{port}{p}\n" for p in paths))
    servers = {"ref": ref, "ours": ours}
    runs: dict[str, list[H2loadResult]] = {"ref": [], "ours": []}
    for _ in range(args.rounds):
        for name in ("ref", "ours"):
            if args.warmup > 0:
                h2load(files[name], args, args.warmup, None)
            runs[name].append(h2load(files[name], args, args.seconds, servers[name].pid))

    rows: list[dict[str, Any]] = []

    def add(
        measure: str, fig: str, target: str = "", met: bool | None = None, note: str = ""
    ) -> None:
        rows.append(bl.row(BENCH, measure, fig, target, met, note))

    for name, label in (("ref", f"nginx TLS+h2 return 200, {size} B body (reference)"),
                        ("ours", f"DoH GET over h2, A query for {args.services:,} names")):  # fmt: skip
        rs = runs[name]
        rps = statistics.median(r.rps for r in rs)
        per_cpu = statistics.median(r.succeeded / r.server_cpu_s for r in rs if r.server_cpu_s)
        failed = sum(r.failed for r in rs)
        add(label, f"{rps:,.0f}/s", note=f"rounds {' '.join(f'{r.rps / 1000:.1f}k' for r in rs)}; "
            f"{per_cpu:,.0f}/server CPU-s; {failed} failed")  # fmt: skip
    ratios = [a.rps / b.rps for a, b in zip(runs["ours"], runs["ref"], strict=True)]
    ratio = statistics.median(ratios)
    add("  ratio to nginx", f"{ratio:.2f}", f">= {TARGET_RATIO}", ratio >= TARGET_RATIO,
        "per round " + " ".join(f"{x:.2f}" for x in ratios))  # fmt: skip
    clean = ours.alive() and not any(r.failed for r in runs["ours"])
    add("our server: no crash, no failed requests", "clean" if clean else "PROBLEM", "clean", clean)
    header = (
        f"bench_h2: h2load -c{args.clients} -m{args.streams} -t1 -D{args.seconds:g}s "
        f"(+{args.warmup:g}s warm-up), {args.rounds} interleaved rounds, medians; server on CPU "
        f"{bl.SERVER_CPU}, h2load on CPU {bl.LOAD_CPU}; httpdns: one process; nginx: 1 worker"
    )
    return rows, header


if __name__ == "__main__":
    main()
