"""``httpdns serve``: run one node (HTTP, optional HTTPS, admin API) until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import sys
from dataclasses import replace
from typing import Any

import click
from aiohttp import web

from registry.errors import RegistryError
from registry.store import open_store

from . import config as config_mod
from .config import Account, Config, ConfigError
from .demo import DEMO_ACCOUNT, DEMO_SECRET, DEMO_ZONE, load_demo
from .node import Node
from .snapshotfile import SnapshotFile
from .web import make_app

log = logging.getLogger("httpdns")

MAX_REQUEST_LINE = 96 * 1024


class ServeError(Exception):
    """A start-up failure reported as one line."""


async def run(cfg: Config, stop: asyncio.Event | None = None) -> None:
    """Run a node until ``stop`` is set (or SIGTERM/SIGINT when not given)."""
    try:
        store = await open_store(cfg.store)
    except RegistryError as exc:
        raise ServeError(f"store {cfg.store}: {exc.detail}") from None
    runner: web.AppRunner | None = None
    node: Node | None = None
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
        # A DoH GET carries up to 64 KiB of base64 in its request line.
        runner = web.AppRunner(
            make_app(node, cfg),
            access_log=None,
            handle_signals=False,
            max_line_size=MAX_REQUEST_LINE,
            max_field_size=16384,
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
            listeners.append(("https", cfg.https, context))
        for scheme, (host, port), tls in listeners:
            site = web.TCPSite(runner, host, port, ssl_context=tls, reuse_address=True)
            try:
                await site.start()
            except OSError as exc:
                raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
            log.info("serving %s://%s:%d", scheme, f"[{host}]" if ":" in host else host, port)
        log.info(
            "registry %s at revision %d (from the %s), %d services; admin writes %s",
            cfg.store, node.revision, node.started_from, len(node.table.services),
            "need the admin token" if cfg.admin_token else "DISABLED (no admin token configured)",
        )  # fmt: skip
        if stop is None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down")
    finally:
        if runner is not None:
            await runner.cleanup()
        if node is not None:
            await node.stop()
        await store.close()


@click.command()
@click.option("--http", metavar="HOST:PORT", help="HTTP listener [default: 127.0.0.1:8053]")
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
@click.option(
    "--snapshot", metavar="FILE", help="local registry copy for starting while the store is down"
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
    snapshot: str | None,
    demo: bool | None,
    log_level: str,
) -> None:
    """Run an HTTP DNS node."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    flags: dict[str, Any] = {
        "http": http, "https": https, "tls_cert": tls_cert, "tls_key": tls_key, "store": store,
        "admin_token": admin_token, "trusted_proxies": list(trusted_proxy) or None,
        "zones": list(zone) or None, "demo": demo, "snapshot": snapshot,
    }  # fmt: skip
    try:
        cfg = config_mod.load(config_file, **flags)
    except ConfigError as exc:
        raise click.ClickException(exc.detail) from None
    if cfg.demo:
        if not cfg.zones:
            cfg = replace(cfg, zones=(DEMO_ZONE,))
        if not cfg.accounts:
            cfg = replace(cfg, accounts={DEMO_ACCOUNT: Account(DEMO_ACCOUNT, DEMO_SECRET)})
    try:
        import uvloop

        uvloop.run(run(cfg))
    except ServeError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass
