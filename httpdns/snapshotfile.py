"""The node's local copy of the registry, so it can start and answer while the
shared store is unreachable (fail static across restarts).

Saved after applied revisions, debounced (a burst of changes costs one write),
atomically (temporary file + rename), as ``Snapshot.dump_json`` (serialised in C, a few
hundred records at a time so that a large registry's save never stalls the event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from registry.snapshot import Snapshot

log = logging.getLogger("httpdns.snapshot")


class SnapshotFile:
    """Debounced, atomic saves of the latest snapshot to ``path``."""

    def __init__(self, path: str | Path, quiet: float = 1.0, max_delay: float = 30.0) -> None:
        self.path = Path(path)
        self.quiet = quiet
        self.max_delay = max_delay
        self._latest: Snapshot | None = None
        self._saved_revision = -1
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    def load(self) -> Snapshot | None:
        """The saved snapshot, or None if there is none (or it is unreadable)."""
        try:
            snap = Snapshot.load_json(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable snapshot %s: %s", self.path, exc)
            return None
        self._saved_revision = snap.revision
        return snap

    def schedule(self, snap: Snapshot) -> None:
        """Save ``snap`` soon (after ``quiet`` seconds without changes, at most ``max_delay``)."""
        self._latest = snap
        self._changed.set()
        if self._task is None:
            self._task = asyncio.create_task(self._saver(), name="snapshot-saver")

    async def _saver(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._changed.wait()
            first = loop.time()
            while True:  # wait for a quiet moment, but not forever
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), self.quiet)
                if not self._changed.is_set() or loop.time() - first > self.max_delay:
                    break
            self._changed.clear()
            snap = self._latest
            if snap is not None and snap.revision != self._saved_revision:
                try:
                    await asyncio.to_thread(self.write, snap)
                except OSError as exc:
                    log.warning("cannot save the snapshot to %s: %s", self.path, exc)

    def write(self, snap: Snapshot) -> None:
        """Write ``snap`` now (atomically)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")  # workers share the path
        with open(tmp, "wb") as f:
            # in pieces: between two, the event loop's thread gets the GIL back
            for part in snap.dump_json_parts():
                f.write(part)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._saved_revision = snap.revision

    async def close(self) -> None:
        """Stop the saver, writing the latest snapshot first."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._latest is not None and self._latest.revision != self._saved_revision:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self.write, self._latest)
