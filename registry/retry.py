"""The one compare-and-set retry loop.

Every writer that computes its changes from a snapshot (the deployer's intents
and address allocation, the rollouts API, the Redis store itself) writes them
at that snapshot's revision. When another writer got there first the write is
a ``ConflictError``; the right answer is to read again, recompute and retry —
for a bounded time, with jittered backoff so that two busy writers cannot
starve each other.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from .changes import Change, ChangeSet
from .errors import ConflictError
from .snapshot import Snapshot

T = TypeVar("T")

RETRY_FOR = 10.0  # seconds of retries before a writer gives up
MAX_PAUSE = 0.05  # the backoff's cap, seconds


async def retry_conflicts(
    attempt: Callable[[], Awaitable[T]],
    *,
    retry_for: float = RETRY_FOR,
    retryable: Callable[[ConflictError], bool] = lambda exc: True,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``attempt`` until it does not raise a retryable ``ConflictError``.

    Gives up after ``retry_for`` seconds with a ConflictError saying so (the
    last conflict's detail included). ``retryable`` decides per error (a
    conflict with an operator's ``If-Match`` is final, not retried).
    """
    deadline = clock() + retry_for
    tries = 0
    while True:
        try:
            return await attempt()
        except ConflictError as exc:
            if not retryable(exc):
                raise
            tries += 1
            if clock() > deadline:
                raise ConflictError(
                    f"the registry kept changing; gave up after {tries} tries "
                    f"in {retry_for:g} s ({exc.detail})"
                ) from None
            # Jittered exponential backoff: racing writers spread out instead of colliding again.
            await asyncio.sleep(random.uniform(0, min(MAX_PAUSE, 0.001 * 2**tries)))


class Writer(Protocol):
    """What ``record`` writes through: ``Store.apply``, or a node's ``write`` that forwards
    to it."""

    def __call__(
        self, changes: Sequence[Change], *, expected_revision: int | None = ..., actor: str = ...
    ) -> Awaitable[ChangeSet]:
        """Apply a batch at ``expected_revision`` (see ``Store.apply``)."""
        ...


async def record(
    read: Callable[[], Awaitable[Snapshot]],
    write: Writer,
    build: Callable[[Snapshot], list[Change]],
    actor: str,
    *,
    expected_revision: int | None = None,
    retry_for: float = RETRY_FOR,
) -> tuple[Snapshot, ChangeSet]:
    """Compute changes from the latest snapshot and write them at its revision.

    On a conflict, read and recompute (``build`` may raise to refuse). With
    ``expected_revision`` (an operator's ``If-Match``) the snapshot must be at
    exactly that revision and a conflict is final. Returns the snapshot the
    changes were computed from and the committed batch.
    """

    async def attempt() -> tuple[Snapshot, ChangeSet]:
        snap = await read()
        if expected_revision is not None and expected_revision != snap.revision:
            raise ConflictError(
                f"expected revision {expected_revision}, the registry is at {snap.revision}"
            )
        cs = await write(build(snap), expected_revision=snap.revision, actor=actor)
        return snap, cs

    return await retry_conflicts(
        attempt, retry_for=retry_for, retryable=lambda exc: expected_revision is None
    )
