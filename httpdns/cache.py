"""A map bounded by entries and by bytes, evicting a little at a time.

Every cache on the query path is one of these: the table's decisions, the
client-bucket memo, the HTTP and DNS front caches. Eviction is first-in,
first-out, one entry per insertion over the bound — never "drop everything
when full", which stalls the loop and then lets the garbage collector free a
whole cache at once. FIFO (not LRU) keeps a hit to one dict lookup: nothing is
reordered on the hot path.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """At most ``max_entries`` entries and ``max_bytes`` bytes (as the caller counts them)."""

    __slots__ = ("_data", "_sizes", "bytes", "evictions", "get", "max_bytes", "max_entries")

    def __init__(self, max_entries: int, max_bytes: int | None = None) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._data: OrderedDict[K, V] = OrderedDict()
        self._sizes: dict[K, int] = {}
        self.bytes = 0
        self.evictions = 0
        # The hit path is the dict's own lookup, bound once.
        self.get: Callable[[K], V | None] = self._data.get

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def items(self) -> list[tuple[K, V]]:
        """A copy of the entries, oldest first (not for the hot path)."""
        return list(self._data.items())

    def put(self, key: K, value: V, size: int = 0) -> None:
        """Insert or replace ``key``; evict the oldest entries while over a bound.

        An entry larger than ``max_bytes`` on its own is not kept.
        """
        data = self._data
        if key in data:
            self._forget(key)
        if self.max_bytes is not None:
            if size > self.max_bytes:
                return
            self._sizes[key] = size
            self.bytes += size
        data[key] = value
        while len(data) > self.max_entries or (
            self.max_bytes is not None and self.bytes > self.max_bytes
        ):
            oldest, _ = data.popitem(last=False)
            self.bytes -= self._sizes.pop(oldest, 0)
            self.evictions += 1

    def pop(self, key: K) -> None:
        """Drop ``key`` if present."""
        if key in self._data:
            self._forget(key)

    def _forget(self, key: K) -> None:
        del self._data[key]
        self.bytes -= self._sizes.pop(key, 0)

    def clear(self) -> None:
        """Drop everything (tests and reloads only)."""
        self._data.clear()
        self._sizes.clear()
        self.bytes = 0
