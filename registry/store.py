"""The storage protocol every backend implements, and the URL factory.

A store holds one snapshot of the registry, one store-wide revision, a change
feed and an audit log. Backends: ``sqlite:///path`` / ``sqlite://:memory:``
(embedded, single node) and, later, Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from .changes import Change, ChangeSet
from .errors import ValidationError
from .snapshot import Snapshot

# The part of a heartbeat kept apart from the rest (a node's published answer counts: up
# to megabytes on a node that answers tens of thousands of services). A heartbeat without
# it leaves the last one sent in place until that one's own ``ttl`` runs out, so a node
# sends it only when it changed (every few seconds) while its small heartbeat follows
# every revision: a write that waits on the store never queues behind megabytes.
APART = "answers"


def split_apart(info: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """``info`` less its ``APART`` part, and that part (None when absent)."""
    if APART not in info:
        return info, None
    rest = dict(info)
    return rest, rest.pop(APART)


class Store(Protocol):
    """The registry's storage: a handful of async methods."""

    async def snapshot(self) -> Snapshot:
        """The whole registry at the latest revision."""
        ...

    async def apply(
        self,
        changes: Sequence[Change],
        *,
        expected_revision: int | None = None,
        actor: str = "unknown",
    ) -> ChangeSet:
        """Apply a batch atomically; all or nothing.

        Raises ConflictError when ``expected_revision`` is given and the store
        moved past it, ValidationError/NotFoundError/InUseError when the batch
        is invalid against the current state.
        """
        ...

    def watch(self, from_revision: int) -> AsyncIterator[ChangeSet]:
        """Committed batches with revision > ``from_revision``, in order, forever."""
        ...

    async def audit(self, since: int = 0, limit: int = 1000) -> list[ChangeSet]:
        """Committed batches with revision > ``since``, oldest first, at most ``limit``."""
        ...

    async def close(self) -> None:
        """Release connections and stop background tasks."""
        ...

    # -- integrity and the fleet (registry/digest.py; httpdns/fleet.py) ---------

    async def check(self) -> None:
        """A cheap integrity check of the stored registry (a full one happens on each load).

        Raises StoreDamagedError when the records cannot be the registry that was written
        (their count does not match the digest, a key has the wrong type),
        StoreUnavailableError when the store cannot be reached.
        """
        ...

    async def heartbeat(self, node_id: str, info: dict[str, Any], ttl: float) -> None:
        """Record that node ``node_id`` is alive with ``info``; it expires after ``ttl`` s.
        ``info[APART]``, when present, is kept apart and replaces the last one sent;
        absent, the last one stays (until its own ``ttl`` ends)."""
        ...

    async def forget(self, node_id: str) -> None:
        """Remove a node's heartbeat (it stopped cleanly)."""
        ...

    async def nodes(self, apart: bool = True) -> list[dict[str, Any]]:
        """The ``info`` of every node whose heartbeat has not expired, with the last
        ``APART`` part it sent that has not expired either (``apart``: without it, for
        readers that look at liveness alone and poll)."""
        ...


async def open_store(url: str) -> Store:
    """Open the backend named by ``url``."""
    if url.startswith("sqlite://"):
        from .sqlite import SQLiteStore

        return await SQLiteStore.open(url)
    if url.startswith(("redis://", "redis+sentinel://")):
        from .redis import RedisStore

        return await RedisStore.open(url)
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise ValidationError(
        "store",
        f"unsupported store URL scheme {scheme!r} (use sqlite:///path, redis://HOST:PORT/DB or redis+sentinel://...)",
    )
