"""A node's live view of the registry: the routing table kept current from the store.

The node loads one snapshot at start, then follows the store's change feed and
applies each batch to its table (recompiling only the services it touches).
Writes go through ``write``, which returns once this node's table shows the
change, so an admin response is never ahead of the node's own answers.

Fail static: when the store is unreachable the node keeps answering from its
last table, reports ``store: unavailable`` and its staleness, and reconnects
with backoff. A store found *behind* the node (it lost data) or *damaged* (its
records do not match their digest: lost, corrupt, of the wrong type) never
replaces the table: the node keeps its last good table (or starts from its
local snapshot), reports why, and refuses writes until the store is re-seeded
(``restore``) or repaired.

The follow loop cannot die: any exception, foreseen or not, is logged
(rate-limited), listed in the health ``reasons`` and answered by a resync — a
full reload from the store — after a jittered backoff; the node goes back to
``ok`` by itself once a reload succeeds.

Health states (``health()``, ``/healthz``):

- ``ok``: following the store, nothing to report;
- ``degraded`` (HTTP 200): serving its last good table, ``reasons`` says why
  (store unreachable, behind, damaged; the feed cannot be followed);
- ``unavailable`` (HTTP 503): it has no registry to serve (it started while
  the store was damaged and without a local snapshot).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from registry.changes import Change, ChangeSet
from registry.errors import (
    RegistryError,
    StoreDamagedError,
    StoreFullError,
    StoreRegressedError,
    StoreResyncError,
    StoreUnavailableError,
    ValidationError,
)
from registry.snapshot import Snapshot
from registry.store import Store

from .impact import answering_empty, looked_at_all
from .snapshotfile import SnapshotFile
from .table import RoutingTable

if TYPE_CHECKING:
    from .fleet import Fleet

log = logging.getLogger("httpdns.node")

MIN_BACKOFF = 0.05
MAX_BACKOFF = 2.0  # a repaired store is followed again within about this long
LOG_EVERY = 10.0  # seconds between two log lines about the same kind of trouble
# Health's look at a new registry, a slice at a time: LOOK_SLICE seconds of work, then
# LOOK_PAUSE seconds for everything else (a quarter of a core: a 100,000-service first
# pass takes ≈ 9 s of CPU, and three nodes on two cores at 70 % starved queries, the feed
# and Redis alike: change propagation p99 250 ms instead of 10 ms).
LOOK_SLICE = 0.002
LOOK_PAUSE = 0.006
# A lazily loaded registry is decoded by health's first pass (and by queries): records
# that live as long as the registry. Left to the collector, its full collections go over
# them again and again as they pile up (8 of them, up to 480 ms each, during a
# 100,000-service pass), so a pass over a registry of FREEZE_MIN services or more moves
# what it made out of the collector's reach (``gc.freeze``) at most every FREEZE_EVERY s.
FREEZE_MIN = 10_000
FREEZE_EVERY = 0.5

# The kinds of trouble a node reports (``reasons``), in the order they are listed.
STORE, REGRESSED, DAMAGED, CHECK, FOLLOW = "store", "regressed", "damaged", "check", "follow"
# The store refuses writes for lack of space (disk full, Redis at maxmemory): answers are
# unharmed, but changes cannot land. Set by a refused write or heartbeat, cleared by the
# next one that lands (heartbeats retry every second).
FULL = "full"
_ORDER = (STORE, REGRESSED, DAMAGED, CHECK, FOLLOW, FULL)
# Trouble that makes writes through this node refuse (the store is not the registry).
_REFUSE_WRITES = (REGRESSED, DAMAGED, CHECK)


class RateLimitedLog:
    """Log one kind of message at most once per ``every`` seconds, counting the rest."""

    def __init__(self, every: float = LOG_EVERY, clock: Callable[[], float] = time.monotonic):
        self.every = every
        self._clock = clock
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def __call__(self, key: str, level: int, msg: str, *args: Any, exc_info: bool = False) -> None:
        """Log ``msg`` under ``key`` unless one was logged less than ``every`` s ago."""
        now = self._clock()
        if now - self._last.get(key, -self.every - 1) < self.every:
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return
        skipped = self._skipped.pop(key, 0)
        self._last[key] = now
        if skipped:
            msg += f" ({skipped} more like it since the last report)"
        log.log(level, msg, *args, exc_info=exc_info)


class Node:
    """The routing table plus the task that keeps it in step with the store."""

    def __init__(
        self,
        store: Store,
        table: RoutingTable,
        snapshot_file: SnapshotFile | None = None,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.table = table
        self.snapshot_file = snapshot_file
        self._clock = clock
        self._rand = rand
        self._lost_at: float | None = None  # when the store stopped answering
        self._problems: dict[str, str] = {}  # kind (STORE, ...) -> why, while it lasts
        self.started_from = "store"
        self._advanced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._looking: asyncio.Task[None] | None = None  # health's look (``_look_soon``)
        self.fleet: Fleet | None = None
        self._log = RateLimitedLog(clock=clock)
        self.store_errors = 0  # failed reads of the feed or snapshot (httpdns_store_errors_total)
        self.resyncs = 0  # snapshots reloaded after a feed gap (httpdns_follow_resyncs_total)
        # Called with (snapshot before, batch) after each batch is applied (structured logs).
        self.listeners: list[Callable[[Any, ChangeSet], None]] = []

    @classmethod
    async def start(
        cls, store: Store, *, max_cached: int = 200_000, snapshot_file: SnapshotFile | None = None
    ) -> Node:
        """Load the current snapshot (or the local copy) and start following the feed.

        A store that is damaged is never adopted: the node starts from its local snapshot,
        or with nothing (``unavailable``) and waits for a restore or a repair. A store that
        is unreachable with no local snapshot is an error (nothing to serve, nothing to wait
        for that the operator cannot see at once).
        """
        local = snapshot_file.load() if snapshot_file else None
        snap: Snapshot | None
        try:
            snap = await store.snapshot()
            error: RegistryError | None = None
        except StoreDamagedError as exc:
            snap, error = None, exc
        except StoreUnavailableError as exc:
            if local is None:
                raise
            snap, error = None, exc
        base = snap if snap is not None else local if local is not None else Snapshot()
        node = cls(store, RoutingTable(base, max_cached=max_cached), snapshot_file)
        where = snapshot_file.path if snapshot_file else ""
        if isinstance(error, StoreDamagedError):
            node._problems[DAMAGED] = error.detail
            if local is None:
                node.has_table = False
                node.started_from = "nothing"
                log.error("%s; no local snapshot: serving nothing until the registry is "
                          "restored", error.detail)  # fmt: skip
            else:
                node.started_from = "local snapshot"
                log.error("%s; serving the local snapshot %s at revision %d",
                          error.detail, where, local.revision)  # fmt: skip
        elif error is not None:
            assert local is not None
            node.started_from = "local snapshot"
            node._lost(error.detail)
            log.warning("store unreachable (%s); serving the local snapshot %s at revision %d",
                        error.detail, where, local.revision)  # fmt: skip
        elif local is not None and snap is not None and local.revision > snap.revision:
            node.table.update(local, None)
            node.started_from = "local snapshot"
            node._problems[REGRESSED] = (
                f"the store is at revision {snap.revision}, behind the local snapshot's "
                f"{local.revision}; serving the local snapshot"
            )
            log.warning("%s", node._problems[REGRESSED])
        preflight = getattr(store, "preflight", None)
        if preflight is not None:
            for warning in await preflight():
                log.warning("%s", warning)
        node._task = asyncio.create_task(node._follow(), name="httpdns-follow")
        node._look_soon()
        return node

    def announce(
        self, listeners: Sequence[tuple[str, str, int]], node_id: str | None = None
    ) -> None:
        """Start heartbeating into the store (the fleet view); ``listeners`` are the node's
        ``(scheme, host, port)``."""
        from .fleet import Fleet, public_addresses

        if self.fleet is None:
            self.fleet = Fleet(self, public_addresses(listeners), node_id)
            self.fleet.start()

    async def stop(self) -> None:
        """Stop following the feed and save the snapshot (the store is closed by its owner)."""
        if self.fleet is not None:
            await self.fleet.stop()
            self.fleet = None
        for task in (self._task, self._looking):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._looking = None
        if self.snapshot_file is not None:
            await self.snapshot_file.close()

    @property
    def revision(self) -> int:
        """The revision the node's answers reflect."""
        return self.table.revision

    # -- following the store --------------------------------------------------

    def apply(self, cs: ChangeSet, made: Snapshot | None = None) -> None:
        """Apply one committed batch to the table (ignored if already applied); ``made``
        is the registry the batch makes of the table's, when the caller has it already."""
        if cs.revision <= self.table.revision:
            return
        old = self.table.snapshot
        if made is not None and made.revision == cs.revision:
            snap = made
        else:
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
        self._look_soon()

    def _look_soon(self) -> None:
        """Keep health's look for services answering empty moving through a new registry,
        a few milliseconds at a time (``impact.answering_empty``): a large registry's pass
        takes seconds of CPU and must not wait for health checks to drive it."""
        if self._looking is not None and not self._looking.done():
            return
        with contextlib.suppress(RuntimeError):  # no running loop (a test's plain call)
            self._looking = asyncio.get_running_loop().create_task(self._look(), name="health-look")

    async def _look(self) -> None:
        frozen = time.monotonic()
        while self.has_table and not looked_at_all(self.table):
            answering_empty(self.table, LOOK_SLICE)
            if len(self.table.snapshot.services) >= FREEZE_MIN:
                now = time.monotonic()
                if now - frozen >= FREEZE_EVERY or looked_at_all(self.table):
                    gc.freeze()
                    frozen = now
            await asyncio.sleep(LOOK_PAUSE)

    # -- trouble ----------------------------------------------------------------

    def report(self, kind: str, why: str | None) -> None:
        """Set (``why``) or clear (None) one kind of trouble shown in ``reasons``."""
        if why is None:
            self._problems.pop(kind, None)
        else:
            self._problems[kind] = why

    def has_problem(self, kind: str) -> bool:
        """Whether trouble of ``kind`` is being reported."""
        return kind in self._problems

    def _lost(self, why: str) -> None:
        if self._lost_at is None:
            self._lost_at = self._clock()
        self._problems[STORE] = f"store unavailable: {why}"

    def _mark_ok(self) -> None:
        if self._problems.keys() & {STORE, REGRESSED, DAMAGED, FOLLOW}:
            log.info("following the store again at revision %d", self.table.revision)
        self._lost_at = None
        for kind in (STORE, REGRESSED, DAMAGED, FOLLOW):
            self._problems.pop(kind, None)

    def _backoff(self, attempt: int) -> float:
        # Jittered: nodes that lost the store together do not all come back in step.
        return float(min(MAX_BACKOFF, MIN_BACKOFF * 2.0**attempt)) * (0.5 + self._rand() / 2)

    async def _follow(self) -> None:
        attempt = 0
        last_resync = -1e9
        while True:
            following_since = self._clock()
            try:
                await self._sync()
                self._mark_ok()
                self.has_table = True
                async for cs in self.store.watch(self.table.revision):
                    if cs.revision <= self.table.revision:
                        continue  # already applied by ``write`` on this node
                    if cs.revision != self.table.revision + 1:
                        raise StoreResyncError(
                            f"revision gap {self.table.revision} -> {cs.revision}"
                        )
                    self.apply(cs)
                    self._mark_ok()
                raise StoreResyncError("the change feed ended")
            except asyncio.CancelledError:
                raise
            except StoreResyncError as exc:
                self.resyncs += 1
                log.info("%s; reloading a snapshot", exc.detail)
                if self._clock() - last_resync > 1.0:
                    last_resync = self._clock()
                    continue  # at once, but not twice in a row within a second
            except StoreRegressedError as exc:
                if REGRESSED not in self._problems:
                    log.error("%s", exc.detail)
                self._problems[REGRESSED] = exc.detail
                self._lost_at = self._lost_at or self._clock()
            except StoreDamagedError as exc:
                self._log(DAMAGED, logging.ERROR, "%s; answering from revision %d",
                          exc.detail, self.table.revision)  # fmt: skip
                self._problems[DAMAGED] = exc.detail
            except RegistryError as exc:
                self.store_errors += 1
                if self._lost_at is None:
                    log.warning("store unavailable (%s); answering from revision %d", exc.detail,
                                self.table.revision)  # fmt: skip
                self._lost(exc.detail)
            except Exception as exc:
                # Anything else (garbage from the store, a bug): the loop must not die, or the
                # node silently stops following and drifts from the fleet. Resync instead.
                self._log(FOLLOW, logging.ERROR, "cannot follow the store (%s: %s); resyncing",
                          type(exc).__name__, exc, exc_info=True)  # fmt: skip
                self._problems[FOLLOW] = (
                    f"cannot follow the store ({type(exc).__name__}: {str(exc)[:200]}); "
                    "resyncing with backoff"
                )
            # The backoff grows while failures follow each other closely; a loop that had
            # been following for a while starts again from the shortest pause.
            attempt = 1 if self._clock() - following_since > 2 * LOG_EVERY else attempt + 1
            await asyncio.sleep(self._backoff(attempt))

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
        prepared: tuple[Snapshot, Snapshot] | None = None,
    ) -> ChangeSet:
        """Apply a batch through the store and wait until this node answers with it.

        ``prepared``: the registry the caller validated the batch against and the one the
        batch made of it (``Snapshot.apply``); when the store committed the batch right on
        top of that registry, the node adopts the made one instead of applying the batch
        again (at 100,000 services each apply copies the services' mapping).

        Refused (503) while the store is behind the node or damaged, or while the node has
        no registry at all: a write must never land on top of a registry it cannot see."""
        for kind in _REFUSE_WRITES:
            if kind in self._problems:
                error = StoreRegressedError if kind == REGRESSED else StoreDamagedError
                raise error(self._problems[kind])
        if not self.has_table:
            raise StoreDamagedError("this node has no registry to write against")
        try:
            cs = await self.store.apply(changes, expected_revision=expected_revision, actor=actor)
        except StoreFullError as exc:
            self.report(FULL, f"the store refuses writes: {exc.detail}")
            raise
        self.report(FULL, None)
        if cs.revision == self.table.revision + 1:
            made = None
            if prepared is not None and prepared[0] is self.table.snapshot:
                made = prepared[1]  # committed on top of the very registry it was made from
            self.apply(cs, made)  # no need to wait for the feed to bring our own change back
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
        if not self.has_table:
            raise StoreDamagedError("this node has no registry to restore from; use another")
        revision: int = await restore(self.table.snapshot, actor)
        for kind in (REGRESSED, DAMAGED, CHECK):
            self._problems.pop(kind, None)
        with contextlib.suppress(TimeoutError):
            await self.wait_for(revision, 5.0)  # the resync message brings it back
        log.info("restored the store from this node's table at revision %d", revision)
        return revision

    @property
    def has_table(self) -> bool:
        """False while the node has no good copy of the registry at all (it started from
        nothing): its table then refuses every query (``RoutingTable.unavailable``)."""
        return self.table.unavailable is None

    @has_table.setter
    def has_table(self, value: bool) -> None:
        self.table.unavailable = (
            None
            if value
            else "this node has no registry to answer from (the store is damaged and it has "
            "no local snapshot); ask another node"
        )

    @property
    def status(self) -> str:
        """``ok``, ``degraded`` (serving its last good table) or ``unavailable`` (nothing)."""
        if not self._problems:
            return "ok"
        return "degraded" if self.has_table else "unavailable"

    @property
    def reasons(self) -> list[str]:
        """Why the node is not ``ok``, one line per kind of trouble (the same line once)."""
        return list(dict.fromkeys(self._problems[k] for k in _ORDER if k in self._problems))

    def health(self) -> dict[str, Any]:
        """The ``/healthz`` body (HTTP 503 when ``status`` is ``unavailable``)."""
        if REGRESSED in self._problems:
            store = "regressed"
        elif DAMAGED in self._problems or CHECK in self._problems:
            store = "damaged"
        elif self._lost_at is not None:
            store = "unavailable"
        else:
            store = "ok"
        body: dict[str, Any] = {
            "status": self.status,
            "reasons": self.reasons,
            "revision": self.table.revision,
            "store": store,
            "stale_seconds": 0.0
            if self._lost_at is None
            else round(self._clock() - self._lost_at, 3),
            "services": len(self.table.services),
            "started_from": self.started_from,
            # services that answer nobody in some region (a drain, a flip, a deleted endpoint)
            "empty": answering_empty(self.table),
            # whether that covers every service yet (a first pass over a large registry is
            # spread over many looks: tens of seconds at 100,000 services)
            "empty_complete": looked_at_all(self.table),
        }
        detail = self._problems.get(REGRESSED) or self._problems.get(DAMAGED)
        if detail is not None:
            body["detail"] = detail
        return body
