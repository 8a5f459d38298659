"""``httpdns serve``: run one node (HTTP, optional HTTPS, admin API) until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import resource
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import click
from aiohttp import web

from deployer.plugin import plugin  # the wiring plugs the deployer in; nothing else imports it
from registry.errors import RegistryError
from registry.store import open_store

from . import config as config_mod
from . import tenure
from .admin import ADMIN_ROUTES
from .config import DEFAULT_HOST, DEFAULT_PORT, Account, Config, ConfigError
from .demo import DEMO_ACCOUNT, DEMO_SECRET, DEMO_ZONE, load_demo
from .dialects import Context
from .dnsserver import DnsEngine, start_dns
from .events import ROUTES as EVENT_ROUTES
from .fasthttp import MAX_HEAD, FastHTTP, FastServer, Limits
from .http2 import ALPN, AlpnSwitch, select_engine
from .jsonlog import ChangeLog, JsonFormatter, QueryLog, watch_health
from .logs import ClientErrorsOnly
from .metrics import AnswerHistory, NodeMetrics, WorkerFiles, keep_history, publish
from .node import Node
from .plugins import Plugin
from .routes import QUERY_ROUTES
from .snapshotfile import SnapshotFile
from .ui import UI_ROUTES
from .web import make_app

log = logging.getLogger("httpdns")

FD_RESERVE = 64  # descriptors kept for the store, the DNS sockets, logs and files


class ServeError(Exception):
    """A start-up failure reported as one line."""


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; the resulting soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def limits(cfg: Config, fd_limit: int) -> Limits:
    """The HTTP limits: ``max_connections`` 0 means what the descriptor limit allows."""
    cap = cfg.max_connections or max(16, fd_limit - FD_RESERVE)
    return Limits(cfg.header_timeout, cfg.keepalive_timeout, cap, cfg.http_rate)


async def run(
    cfg: Config,
    stop: asyncio.Event | None = None,
    reuse_port: bool = False,
    plugins: tuple[Plugin, ...] = (),
    query_log_sample: float = 0.0,
    log_events: bool = True,
) -> None:
    """Run a node until ``stop`` is set (or SIGTERM/SIGINT when not given), with the
    routes and background tasks of ``plugins``; ``query_log_sample`` is the share of
    queries logged, ``log_events`` logs registry changes and health flips (one worker)."""
    # Loading allocates a million long-lived objects: collecting during it only costs time
    # (a third of start-up with 10,000 services). Re-enabled, frozen, once the table is built.
    gc.disable()
    try:
        store = await open_store(cfg.store)
    except RegistryError as exc:
        gc.enable()
        raise ServeError(f"store {cfg.store}: {exc.detail}") from None
    runner: web.AppRunner | None = None
    node: Node | None = None
    servers: list[asyncio.Server] = []
    transports: list[asyncio.BaseTransport] = []
    tasks: list[asyncio.Task[None]] = []
    fast: FastServer | None = None
    try:
        if cfg.demo and await load_demo(store):
            log.info("loaded the demo data set (zone %s)", DEMO_ZONE)
        snapshot_file = SnapshotFile(cfg.snapshot) if cfg.snapshot else None
        try:
            node = await Node.start(
                store, max_cached=cfg.max_cached_answers, snapshot_file=snapshot_file
            )
        except RegistryError as exc:
            hint = "" if snapshot_file else " (a node with --snapshot FILE can start from its copy)"
            raise ServeError(f"store {cfg.store}: {exc.detail}{hint}") from None
        # The table is long-lived: keep the collector from rescanning it (full collections
        # over a 10,000-service table pause the loop for 100+ ms).
        gc.freeze()
        gc.enable()
        routes = [*QUERY_ROUTES, *ADMIN_ROUTES, *EVENT_ROUTES, *UI_ROUTES,
                  *(r for p in plugins for r in p.routes)]  # fmt: skip
        schemas = {k: v for p in plugins for k, v in p.schemas.items()}
        fd_limit = raise_fd_limit()
        limit = limits(cfg, fd_limit)
        logging.getLogger("aiohttp.server").addFilter(ClientErrorsOnly())
        # A DoH GET carries up to 64 KiB of base64 in its request line.
        metrics = NodeMetrics()
        metrics.health, metrics.node = node.health, node
        metrics_dir = os.environ.get("HTTPDNS_METRICS_DIR")
        worker = os.environ.get("HTTPDNS_WORKER_ID")
        if metrics_dir and worker is not None:  # --workers: /metrics sums every worker's
            metrics.workers = WorkerFiles(metrics_dir, int(worker))
            metrics.base = metrics.workers.previous()
            # answers carried over are not new ones: the shares windows start from them
            metrics.history = AnswerHistory(metrics.answers())
        runner = web.AppRunner(
            make_app(node, cfg, routes, schemas, metrics),
            access_log=None,
            handle_signals=False,
            max_line_size=MAX_HEAD,
            max_field_size=16384,
            keepalive_timeout=cfg.keepalive_timeout,
        )
        await runner.setup()
        listeners: list[tuple[str, tuple[str, int], ssl.SSLContext | None]] = [
            ("http", cfg.http, None)
        ]
        if cfg.https is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                context.load_cert_chain(cfg.tls_cert or "", cfg.tls_key or "")
            except (OSError, ssl.SSLError) as exc:
                raise ServeError(f"cannot load the TLS certificate/key: {exc}") from None
            context.set_alpn_protocols(ALPN)  # HTTP/2 for DoH (RFC 8484 §5.2), or 1.1
            listeners.append(("https", cfg.https, context))
        try:
            h2_engine, h2_protocol = select_engine()
        except RuntimeError as exc:
            raise ServeError(str(exc)) from None
        loop = asyncio.get_running_loop()
        slow = runner.server
        assert slow is not None
        fast = FastServer(
            Context(node.table, cfg, health=node.health), routes, slow, limit, metrics.stats
        )
        metrics.fast = fast
        query_log = QueryLog(query_log_sample) if query_log_sample > 0 else None
        fast.query_log = query_log
        fast.start()
        for scheme, (host, port), tls in listeners:
            try:
                servers.append(
                    await loop.create_server(
                        (lambda: AlpnSwitch(fast, h2_protocol))
                        if tls is not None
                        else (lambda: FastHTTP(fast)),
                        host,
                        port,
                        ssl=tls,
                        reuse_address=True,
                        reuse_port=reuse_port or None,
                        backlog=1024,
                    )
                )
            except OSError as exc:
                raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
            log.info("serving %s://%s:%d", scheme, f"[{host}]" if ":" in host else host, port)
            if tls is not None:
                log.info("HTTP/2 on %s", h2_engine)
        if cfg.dns is not None:
            host, port = cfg.dns
            try:
                engine = DnsEngine(node.table, cfg, metrics.stats)
                metrics.dns = engine
                engine.query_log = query_log
                udp, tcp = await start_dns(engine, host, port, reuse_port)
            except OSError as exc:
                raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
            servers.append(tcp)
            transports.append(udp)
            log.info("serving DNS on udp+tcp %s:%d", host, port)
        node.announce([(s, h, p) for s, (h, p), _tls in listeners])  # the fleet view
        if node.fleet is not None:  # what this process answered, for the fleet's shares
            node.fleet.extras["answers"] = metrics.published_answers
        log.info(
            "descriptor limit %d; at most %d HTTP connections, head timeout %gs, keep-alive %gs",
            fd_limit,
            limit.max_connections,
            limit.header_timeout,
            limit.keepalive_timeout,
        )
        log.info(
            "registry %s at revision %d (from the %s), %d services; admin writes %s",
            cfg.store,
            node.revision,
            node.started_from,
            len(node.table.services),
            "need the admin token" if cfg.admin_token else "DISABLED (no admin token configured)",
        )
        # Out of the collector's reach too: what the listeners were set up with, the front
        # caches' dicts and rings above all. A full collection visits every entry of a
        # container it tracks (50,000-entry caches: 25-45 ms pauses under a miss load);
        # frozen, they are never visited, and their entries hold no tracked object.
        gc.freeze()
        tenure.install()  # and what survives each full collection from now on
        if stop is None:
            stop = asyncio.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
        tasks.append(asyncio.create_task(keep_history(metrics, stop), name="httpdns-history"))
        if metrics.workers is not None:
            tasks.append(asyncio.create_task(publish(metrics, stop), name="httpdns-metrics"))
        if log_events:
            node.listeners.append(ChangeLog())
            tasks.append(
                asyncio.create_task(watch_health(node.health, stop), name="httpdns-health")
            )
        for p in plugins:
            if p.task is not None:
                tasks.append(asyncio.create_task(p.task(store, stop), name=p.name))
                log.info("running the %s plugin's task", p.name)
        await stop.wait()
        for task in tasks:
            await task
        log.info("shutting down")
    finally:
        gc.enable()
        tenure.uninstall()
        if fast is not None:
            fast.close()
        for server in servers:
            server.close()
        for transport in transports:
            transport.close()
        if runner is not None:
            await runner.cleanup()
        if node is not None:
            await node.stop()
        await store.close()


@click.command()
@click.option(
    "--http", metavar="HOST:PORT", help=f"HTTP listener [default: {DEFAULT_HOST}:{DEFAULT_PORT}]"
)
@click.option("--https", metavar="HOST:PORT", help="HTTPS listener (needs --tls-cert, --tls-key)")
@click.option("--tls-cert", metavar="FILE", help="PEM certificate chain for --https")
@click.option("--tls-key", metavar="FILE", help="PEM private key for --https")
@click.option(
    "--store", metavar="URL", help="registry store [default: sqlite:///./httpdns-data/registry.db]"
)
@click.option(
    "--admin-token", metavar="TOKEN", help="admin API bearer token (or HTTPDNS_ADMIN_TOKEN)"
)
@click.option(
    "--config", "config_file", metavar="FILE", help="TOML config (see httpdns.sample.toml)"
)
@click.option(
    "--trusted-proxy", multiple=True, metavar="CIDR", help="trust X-Forwarded-For from here"
)
@click.option(
    "--zone", multiple=True, metavar="NAME", help="zone served authoritatively (NXDOMAIN inside)"
)
@click.option("--dns", metavar="HOST:PORT", help="plain DNS listener, UDP and TCP")
@click.option(
    "--workers", type=int, metavar="N", help="worker processes sharing the ports [default: 1]"
)
@click.option("--worker-id", type=int, hidden=True)
@click.option(
    "--controller", is_flag=True, help="also run the rollout controller (`rolling controller`)"
)
@click.option(
    "--snapshot", metavar="FILE", help="local registry copy for starting while the store is down"
)
@click.option(
    "--header-timeout", type=float, metavar="S", help="seconds for a request head [default: 10]"
)
@click.option(
    "--keepalive-timeout", type=float, metavar="S", help="idle connection lifetime [default: 30]"
)
@click.option(
    "--max-connections",
    type=int,
    metavar="N",
    help="open HTTP connections per process [default: descriptor limit - 64]",
)
@click.option(
    "--http-rate",
    type=float,
    metavar="N",
    help="HTTP requests per second per client address, 429 above [default: 0 = off]",
)
@click.option(
    "--rrl-rate",
    type=float,
    metavar="N",
    help="DNS identical responses per second per client /24 (/56) [default: 0 = off]",
)
@click.option(
    "--rrl-slip",
    type=int,
    metavar="K",
    help="every K-th rate-limited DNS response is sent truncated [default: 2]",
)
@click.option(
    "--log-format",
    default="text",
    type=click.Choice(["text", "json"]),
    help="json: one JSON object per line, registry changes, rollout events and health flips "
    "as fields [default: text]",
)
@click.option(
    "--query-log-sample",
    type=click.FloatRange(0, 1),
    default=0.0,
    metavar="P",
    help="log this share of queries (at most 1/64) [default: 0 = off]",
)
@click.option("--demo", is_flag=True, default=None, help="load demo data into an empty store")
@click.option(
    "--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"])
)
def serve(
    http: str | None,
    https: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    store: str | None,
    admin_token: str | None,
    config_file: str | None,
    trusted_proxy: tuple[str, ...],
    zone: tuple[str, ...],
    dns: str | None,
    workers: int | None,
    worker_id: int | None,
    controller: bool,
    snapshot: str | None,
    header_timeout: float | None,
    keepalive_timeout: float | None,
    max_connections: int | None,
    http_rate: float | None,
    rrl_rate: float | None,
    rrl_slip: int | None,
    log_format: str,
    query_log_sample: float,
    demo: bool | None,
    log_level: str,
) -> None:
    """Run an HTTP DNS node."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if log_format == "json":
        logging.getLogger().handlers[0].setFormatter(JsonFormatter(worker=worker_id))
    flags: dict[str, Any] = {
        "http": http,
        "https": https,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "store": store,
        "admin_token": admin_token,
        "trusted_proxies": list(trusted_proxy) or None,
        "zones": list(zone) or None,
        "demo": demo,
        "snapshot": snapshot,
        "dns": dns,
        "workers": workers,
        "header_timeout": header_timeout,
        "keepalive_timeout": keepalive_timeout,
        "max_connections": max_connections,
        "http_rate": http_rate,
        "rrl_rate": rrl_rate,
        "rrl_slip": rrl_slip,
    }
    try:
        cfg = config_mod.load(config_file, **flags)
    except ConfigError as exc:
        raise click.ClickException(exc.detail) from None
    if cfg.demo:
        if not cfg.zones:
            cfg = replace(cfg, zones=(DEMO_ZONE,))
        if not cfg.accounts:
            cfg = replace(cfg, accounts={DEMO_ACCOUNT: Account(DEMO_ACCOUNT, DEMO_SECRET)})
    import uvloop

    try:
        if cfg.workers > 1 and worker_id is None:
            if cfg.demo:
                uvloop.run(_load_demo_once(cfg))
            sys.exit(supervise(cfg.workers))
        if worker_id is not None:
            cfg = replace(cfg, demo=False)
            if log_format != "json":
                logging.getLogger().handlers[0].setFormatter(
                    logging.Formatter(
                        f"%(asctime)s w{worker_id} %(name)s %(levelname)s %(message)s"
                    )
                )
        # With workers, only worker 0 runs the controller: one reconcile loop per node.
        run_controller = controller and (worker_id is None or worker_id == 0)
        plugins = (plugin(controller=run_controller),)
        uvloop.run(
            run(
                cfg,
                reuse_port=worker_id is not None,
                plugins=plugins,
                query_log_sample=query_log_sample,
                # one line per registry change per node, not per worker
                log_events=worker_id is None or worker_id == 0,
            )
        )
    except ServeError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass


async def _load_demo_once(cfg: Config) -> None:
    try:
        store = await open_store(cfg.store)
    except RegistryError as exc:
        raise ServeError(f"store {cfg.store}: {exc.detail}") from None
    try:
        await load_demo(store)
    finally:
        await store.close()


def _worker_argv(worker: int) -> list[str]:
    """This command line with ``--workers`` replaced by a worker id."""
    args = sys.argv[sys.argv.index("serve") + 1 :] if "serve" in sys.argv else []
    out: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "--workers":
            skip = True
            continue
        if a.startswith("--workers=") or a == "--demo":
            continue
        out.append(a)
    return [sys.executable, "-m", "httpdns.cli", "serve", *out, "--worker-id", str(worker)]


def supervise(count: int) -> int:
    """Run ``count`` workers sharing the listeners (SO_REUSEPORT); restart one that dies.

    SIGTERM/SIGINT stop them all. Returns the exit status.
    """
    # Each worker writes its metrics here; the one that is scraped sums them all.
    metrics_dir = tempfile.mkdtemp(prefix="httpdns-metrics-")
    env = {**os.environ, "HTTPDNS_WORKERS": "1", "HTTPDNS_METRICS_DIR": metrics_dir}

    def spawn(i: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(_worker_argv(i), env={**env, "HTTPDNS_WORKER_ID": str(i)})

    try:
        return _supervise(count, spawn)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _supervise(count: int, spawn: Callable[[int], subprocess.Popen[bytes]]) -> int:
    procs = {i: spawn(i) for i in range(count)}
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    started = time.monotonic()
    while procs:
        for i, p in list(procs.items()):
            code = p.poll()
            if code is None:
                continue
            del procs[i]
            if stopping:
                continue
            if code == 1 and time.monotonic() - started < STARTUP_GRACE:
                # Exit status 1 early on is a start-up failure (port taken, bad store) that
                # every worker would repeat; a worker killed by a signal is restarted instead.
                stop(signal.SIGTERM, None)
                for q in procs.values():
                    q.wait()
                return 1
            log.warning("worker %d exited with %s; restarting it", i, code)
            procs[i] = spawn(i)
            if stopping:  # SIGTERM arrived while we were restarting it
                procs[i].send_signal(signal.SIGTERM)
        time.sleep(0.1)
    return 0


STARTUP_GRACE = 10.0  # seconds: a worker dying this early means the configuration is wrong
