"""A node's live view of the registry: the routing table kept current from the store.

The node loads one snapshot at start, then follows the store's change feed and
applies each batch to its table (recompiling only the services it touches).
Writes go through ``write``, which returns once this node's table shows the
change, so an admin response is never ahead of the node's own answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from registry.changes import Change, ChangeSet
from registry.errors import RegistryError, StoreUnavailableError
from registry.store import Store

from .table import RoutingTable

log = logging.getLogger("httpdns.node")


class Node:
    """The routing table plus the task that keeps it in step with the store."""

    def __init__(
        self, store: Store, table: RoutingTable, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.table = table
        self._clock = clock
        self._synced_at = clock()
        self._store_ok = True
        self._advanced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, store: Store, *, max_cached: int = 500_000) -> Node:
        """Load the current snapshot and start following the change feed."""
        snap = await store.snapshot()
        node = cls(store, RoutingTable(snap, max_cached=max_cached))
        node._task = asyncio.create_task(node._follow(), name="httpdns-follow")
        return node

    async def stop(self) -> None:
        """Stop following the feed (the store is closed by its owner)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def revision(self) -> int:
        """The revision the node's answers reflect."""
        return self.table.revision

    def apply(self, cs: ChangeSet) -> None:
        """Apply one committed batch to the table (ignored if already applied)."""
        if cs.revision <= self.table.revision:
            return
        snap, _ = self.table.snapshot.apply(cs.changes, cs.revision)
        self.table.update(snap, cs.services)
        self._synced_at = self._clock()
        event, self._advanced = self._advanced, asyncio.Event()
        event.set()

    async def _follow(self) -> None:
        delay = 0.05
        while True:
            try:
                async for cs in self.store.watch(self.table.revision):
                    if cs.revision <= self.table.revision:
                        continue  # already applied by ``write`` on this node
                    if cs.revision != self.table.revision + 1:
                        log.warning(
                            "revision gap %s -> %s; reloading", self.table.revision, cs.revision
                        )
                        await self._reload()
                        break
                    self.apply(cs)
                    self._store_ok = True
                    delay = 0.05
            except asyncio.CancelledError:
                raise
            except RegistryError as exc:
                self._store_ok = False
                log.warning("change feed failed (%s); retrying in %.2fs", exc.detail, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _reload(self) -> None:
        snap = await self.store.snapshot()
        if snap.revision > self.table.revision:
            self.table.update(snap, None)
            self._synced_at = self._clock()
            event, self._advanced = self._advanced, asyncio.Event()
            event.set()

    async def wait_for(self, revision: int, timeout: float = 5.0) -> None:
        """Return once the table reflects ``revision`` (or raise TimeoutError)."""
        async with asyncio.timeout(timeout):
            while self.table.revision < revision:
                await self._advanced.wait()

    async def write(
        self,
        changes: Sequence[Change],
        *,
        expected_revision: int | None = None,
        actor: str = "unknown",
    ) -> ChangeSet:
        """Apply a batch through the store and wait until this node answers with it."""
        try:
            cs = await self.store.apply(changes, expected_revision=expected_revision, actor=actor)
        except StoreUnavailableError:
            self._store_ok = False
            raise
        self.apply(cs) if cs.revision == self.table.revision + 1 else await self.wait_for(
            cs.revision
        )
        return cs

    def health(self) -> dict[str, Any]:
        """The ``/healthz`` body."""
        stale = 0.0 if self._store_ok else round(self._clock() - self._synced_at, 3)
        return {
            "status": "ok" if self._store_ok else "degraded",
            "revision": self.table.revision,
            "store": "ok" if self._store_ok else "unavailable",
            "stale_seconds": stale,
            "services": len(self.table.services),
        }
