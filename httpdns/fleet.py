"""The fleet view: every node heartbeats into the store; any node lists them all.

A heartbeat is the node's id, addresses, version, revision, status and reasons,
when it started and when it was last seen. It is written every ``HEARTBEAT``
seconds and at once when the node's revision or status changes, and expires
by itself ``TTL`` seconds after the last one (a node that dies drops out; a
node that stops cleanly removes its own). The store's liveness entries also hold
the deployer controllers'; every reader here leaves them out (registry/liveness.py). ``GET /api/v1/nodes``, ``httpdns
nodes`` and ``httpdns wait`` read them; a write with ``?wait=1`` answers how
many live nodes have applied its revision (Route 53's PENDING → INSYNC).

The same loop runs the store's cheap integrity check (``Store.check``), so a
running node notices records that vanished (a ``DEL``, an eviction) within a
heartbeat even though its own table stays good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from registry.errors import RegistryError, StoreDamagedError, StoreFullError
from registry.liveness import dns_nodes
from registry.store import APART

from .node import CHECK, FULL

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("httpdns.fleet")

HEARTBEAT = 1.0  # seconds between heartbeats when nothing changes
TTL = 10.0  # a heartbeat expires this long after it was written
MIN_SPACING = 0.05  # at most this often, however fast the revision moves
POLL = 0.05  # seconds between reads of the fleet while waiting for it to apply a revision


def version() -> str:
    """The installed httpdns version ("unknown" when not installed as a package)."""
    try:
        return metadata.version("httpdns")
    except metadata.PackageNotFoundError:
        return "unknown"


def public_addresses(listeners: Sequence[tuple[str, str, int]]) -> list[str]:
    """``scheme://host:port`` of each listener, a wildcard host (0.0.0.0, ::) replaced by
    this host's name, IPv6 literals in brackets."""
    out = []
    for scheme, host, port in listeners:
        if host in ("0.0.0.0", "::", ""):
            host = socket.getfqdn()
        elif ":" in host:
            host = f"[{host}]"
        out.append(f"{scheme}://{host}:{port}")
    return out


def laggards(nodes: Sequence[Mapping[str, Any]], revision: int) -> list[Mapping[str, Any]]:
    """The nodes that have not applied ``revision`` yet."""
    return [n for n in nodes if not isinstance(n.get("revision"), int) or n["revision"] < revision]


def summary(node: Mapping[str, Any]) -> dict[str, Any]:
    """The public form of one heartbeat (``GET /api/v1/nodes``)."""
    keys = ("id", "address", "addresses", "version", "revision", "status", "reasons", "started")
    out = {k: node.get(k) for k in keys}
    out["seen"] = node.get("seen")
    return out


class Fleet:
    """One node's heartbeat loop, and the fleet as the store has it."""

    def __init__(
        self,
        node: Node,
        addresses: Sequence[str],
        node_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node = node
        self.addresses = list(addresses)
        port = urlsplit(self.addresses[0]).port if self.addresses else None
        # Host and port name the node for people; the pid keeps workers sharing a port apart.
        self.id = node_id or f"{socket.gethostname()}:{port or 0}/{os.getpid()}"
        self.version = version()
        self._clock = clock
        self.started = clock()
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        # More fields published with each heartbeat, by name (the metrics' answer counts,
        # which ``GET /api/v1/services/{name}/shares`` sums over the fleet).
        self.extras: dict[str, Callable[[], Any]] = {}
        # the store's part kept apart (``registry.store.APART``) as last written: a beat
        # whose part is this same object leaves it out (the store keeps the last one)
        self._apart_sent: object = None

    def info(self) -> dict[str, Any]:
        """This node's heartbeat."""
        extra = {name: fn() for name, fn in self.extras.items()}
        return {
            **extra,
            "id": self.id,
            "address": self.addresses[0] if self.addresses else None,
            "addresses": self.addresses,
            "version": self.version,
            "revision": self.node.revision,
            "status": self.node.status,
            "reasons": self.node.reasons,
            "started": round(self.started, 3),
            "seen": round(self._clock(), 3),
        }

    def start(self) -> None:
        """Start heartbeating."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="httpdns-heartbeat")

    async def stop(self) -> None:
        """Stop heartbeating and remove this node's heartbeat from the store."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(RegistryError, OSError):
            await asyncio.wait_for(self.node.store.forget(self.id), 2.0)

    async def _run(self) -> None:
        sent: tuple[int, str] | None = None
        next_beat = 0.0
        while True:
            state = (self.node.revision, self.node.status)
            loop_now = asyncio.get_running_loop().time()
            if state != sent or loop_now >= next_beat:
                await self._beat()
                await self._check()
                sent = (self.node.revision, self.node.status)
                next_beat = loop_now + HEARTBEAT
            await asyncio.sleep(MIN_SPACING)

    async def _beat(self) -> None:
        info = self.info()
        part = info.get(APART)
        if part is not None and part is self._apart_sent:
            # Unchanged since the last beat that carried it (published answers move every
            # few seconds, beats follow every revision): the store keeps that one. At
            # 20,000 services answered it is 3 MB, and sent with every beat it queued
            # every write behind it.
            del info[APART]
        try:
            await self.node.store.heartbeat(self.id, info, TTL)
            self._apart_sent = part
        except Exception as exc:  # a heartbeat is best effort; it must never stop the loop
            if not self._failing:
                log.warning("cannot write the heartbeat: %s", getattr(exc, "detail", exc))
            self._failing = True
            if isinstance(exc, StoreFullError):  # writes cannot land: say so in /healthz
                self.node.report(FULL, f"the store refuses writes: {exc.detail}")
        else:
            if self._failing:
                log.info("heartbeats written again")
            self._failing = False
            self.node.report(FULL, None)

    async def _check(self) -> None:
        try:
            await self.node.store.check()
        except StoreDamagedError as exc:
            if not self.node.has_problem(CHECK):
                log.error("%s", exc.detail)
            self.node.report(CHECK, exc.detail)
        except Exception:  # unreachable and the like: the follow loop reports those
            return
        else:
            self.node.report(CHECK, None)


async def members(node: Node) -> list[dict[str, Any]]:
    """Every live node's heartbeat, public form, sorted by id."""
    found = dns_nodes(await node.store.nodes(apart=False))
    return sorted((summary(n) for n in found), key=lambda n: str(n["id"]))


async def wait_applied(node: Node, revision: int, timeout: float) -> dict[str, int]:
    """Wait (at most ``timeout`` s) until every live node has applied ``revision``;
    ``{"nodes": N, "of": M}``: how many had, of how many live ones, when it returned.

    The write it follows is committed already: a store that cannot list the fleet ends the
    wait with what was last seen (``0 of 0`` if nothing), never an error."""
    deadline = time.monotonic() + timeout
    applied = {"nodes": 0, "of": 0}
    while True:
        try:
            nodes = dns_nodes(await node.store.nodes(apart=False))  # polled: liveness only
        except RegistryError:
            return applied
        late = laggards(nodes, revision)
        applied = {"nodes": len(nodes) - len(late), "of": len(nodes)}
        if not late or time.monotonic() >= deadline:
            return applied
        await asyncio.sleep(POLL)
