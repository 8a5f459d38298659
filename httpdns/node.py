"""A node's live view of the registry: the routing table kept current from the store.

The node loads one snapshot at start, then follows the store's change feed and
applies each batch to its table (recompiling only the services it touches).
Writes go through ``write``, which returns once this node's table shows the
change, so an admin response is never ahead of the node's own answers.

Fail static: when the store is unreachable the node keeps answering from its
last table, reports ``store: unavailable`` and its staleness, and reconnects
with backoff. A store found *behind* the node (it lost data) never replaces
the table: the node reports ``store: regressed`` and refuses writes until the
store is re-seeded (``restore``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from registry.changes import Change, ChangeSet
from registry.errors import (
    RegistryError,
    StoreRegressedError,
    StoreResyncError,
    StoreUnavailableError,
    ValidationError,
)
from registry.store import Store

from .snapshotfile import SnapshotFile
from .table import RoutingTable

log = logging.getLogger("httpdns.node")

MAX_BACKOFF = 2.0


class Node:
    """The routing table plus the task that keeps it in step with the store."""

    def __init__(
        self,
        store: Store,
        table: RoutingTable,
        snapshot_file: SnapshotFile | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.table = table
        self.snapshot_file = snapshot_file
        self._clock = clock
        self._lost_at: float | None = None  # when the store stopped answering
        self._regressed: str | None = None  # why the store is behind us, if it is
        self.started_from = "store"
        self._advanced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.store_errors = 0  # failed reads of the feed or snapshot (httpdns_store_errors_total)
        self.resyncs = 0  # snapshots reloaded after a feed gap (httpdns_follow_resyncs_total)
        # Called with (snapshot before, batch) after each batch is applied (structured logs).
        self.listeners: list[Callable[[Any, ChangeSet], None]] = []

    @classmethod
    async def start(
        cls, store: Store, *, max_cached: int = 200_000, snapshot_file: SnapshotFile | None = None
    ) -> Node:
        """Load the current snapshot (or the local copy) and start following the feed."""
        local = snapshot_file.load() if snapshot_file else None
        try:
            snap = await store.snapshot()
            error = None
        except StoreUnavailableError as exc:
            if local is None:
                raise
            snap, error = local, exc
        node = cls(store, RoutingTable(snap, max_cached=max_cached), snapshot_file)
        if error is not None:
            node.started_from = "local snapshot"
            node._lost_at = node._clock()
            log.warning(
                "store unreachable (%s); serving the local snapshot %s at revision %d",
                error.detail, snapshot_file.path if snapshot_file else "", snap.revision,
            )  # fmt: skip
        elif local is not None and local.revision > snap.revision:
            node.table.update(local, None)
            node.started_from = "local snapshot"
            node._regressed = (
                f"the store is at revision {snap.revision}, behind the local snapshot's "
                f"{local.revision}; serving the local snapshot"
            )
            log.warning("%s", node._regressed)
        node._task = asyncio.create_task(node._follow(), name="httpdns-follow")
        return node

    async def stop(self) -> None:
        """Stop following the feed and save the snapshot (the store is closed by its owner)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.snapshot_file is not None:
            await self.snapshot_file.close()

    @property
    def revision(self) -> int:
        """The revision the node's answers reflect."""
        return self.table.revision

    # -- following the store --------------------------------------------------

    def apply(self, cs: ChangeSet) -> None:
        """Apply one committed batch to the table (ignored if already applied)."""
        if cs.revision <= self.table.revision:
            return
        old = self.table.snapshot
        snap, _ = self.table.snapshot.apply(cs.changes, cs.revision)
        self.table.update(snap, cs.services)
        self._advance()
        for listener in self.listeners:
            listener(old, cs)

    def _advance(self) -> None:
        if self.snapshot_file is not None:
            self.snapshot_file.schedule(self.table.snapshot)
        event, self._advanced = self._advanced, asyncio.Event()
        event.set()

    def _mark_ok(self) -> None:
        if self._lost_at is not None:
            log.info("store reachable again at revision %d", self.table.revision)
        self._lost_at = None
        self._regressed = None

    async def _follow(self) -> None:
        delay = 0.05
        while True:
            try:
                await self._sync()
                self._mark_ok()
                delay = 0.05
                async for cs in self.store.watch(self.table.revision):
                    if cs.revision <= self.table.revision:
                        continue  # already applied by ``write`` on this node
                    if cs.revision != self.table.revision + 1:
                        raise StoreResyncError(
                            f"revision gap {self.table.revision} -> {cs.revision}"
                        )
                    self.apply(cs)
                    self._mark_ok()
            except asyncio.CancelledError:
                raise
            except StoreResyncError as exc:
                self.resyncs += 1
                log.info("%s; reloading a snapshot", exc.detail)
                continue
            except StoreRegressedError as exc:
                if self._regressed is None:
                    log.error("%s", exc.detail)
                self._regressed = exc.detail
                self._lost_at = self._lost_at or self._clock()
            except RegistryError as exc:
                self.store_errors += 1
                if self._lost_at is None:
                    log.warning("store unavailable (%s); answering from revision %d", exc.detail,
                                self.table.revision)  # fmt: skip
                    self._lost_at = self._clock()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)

    async def _sync(self) -> None:
        """Check the store against the table; take a newer snapshot, refuse an older one."""
        snap = await self.store.snapshot()
        if snap.revision < self.table.revision:
            raise StoreRegressedError(
                f"the store is at revision {snap.revision}, behind this node's {self.table.revision} "
                "(data lost?); answers stay at the node's revision. Re-seed the store with "
                "`httpdns registry restore --from-node URL`."
            )
        if snap.revision > self.table.revision and snap is not self.table.snapshot:
            self.table.sync_to(snap)
            self._advance()

    async def wait_for(self, revision: int, timeout: float = 5.0) -> None:
        """Return once the table reflects ``revision`` (or raise TimeoutError)."""
        async with asyncio.timeout(timeout):
            while self.table.revision < revision:
                await self._advanced.wait()

    # -- writing --------------------------------------------------------------

    async def write(
        self,
        changes: Sequence[Change],
        *,
        expected_revision: int | None = None,
        actor: str = "unknown",
    ) -> ChangeSet:
        """Apply a batch through the store and wait until this node answers with it."""
        if self._regressed is not None:
            raise StoreRegressedError(self._regressed)
        cs = await self.store.apply(changes, expected_revision=expected_revision, actor=actor)
        if cs.revision == self.table.revision + 1:
            self.apply(cs)  # no need to wait for the feed to bring our own change back
        else:
            await self.wait_for(cs.revision)
        return cs

    async def restore(self, actor: str = "restore") -> int:
        """Re-seed a store that lost data with this node's snapshot."""
        restore = getattr(self.store, "restore", None)
        if restore is None:
            raise ValidationError(
                "store", "this store keeps its own data; restore applies to Redis"
            )
        revision: int = await restore(self.table.snapshot, actor)
        self._regressed = None
        return revision

    def health(self) -> dict[str, Any]:
        """The ``/healthz`` body."""
        if self._regressed is not None:
            store = "regressed"
        elif self._lost_at is not None:
            store = "unavailable"
        else:
            store = "ok"
        body: dict[str, Any] = {
            "status": "ok" if store == "ok" else "degraded",
            "revision": self.table.revision,
            "store": store,
            "stale_seconds": 0.0
            if self._lost_at is None
            else round(self._clock() - self._lost_at, 3),
            "services": len(self.table.services),
            "started_from": self.started_from,
        }
        if self._regressed is not None:
            body["detail"] = self._regressed
        return body
