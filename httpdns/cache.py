"""A map bounded by entries and by bytes, evicting a little at a time.

Every cache on the query path is one of these: the table's decisions, the
client-bucket memo, the HTTP and DNS front caches. Eviction is first-in,
first-out, one entry per insertion over the bound — never "drop everything
when full", which stalls the loop and then lets the garbage collector free a
whole cache at once. FIFO (not LRU) keeps a hit to one dict lookup: nothing is
reordered on the hot path.

The insertion order lives in a ring of keys beside a plain dict (and, for a
byte bound, an array of sizes): about 90 bytes an entry for an int key, where
an ``OrderedDict`` plus a dict of sizes cost 190. Replacing or popping a key
leaves its old slot in the ring; when that slot comes up for eviction it drops
the key if still present (a re-inserted key may so leave a little early: a
cache may forget, never hold more than its bounds).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_GONE = object()


def _tracked_dict() -> dict[Any, Any]:
    """An empty dict the garbage collector tracks already. CPython tracks a dict from its
    first container entry on, so an empty one escapes the ``gc.freeze()`` a node makes
    after start-up, and is then visited whole by every full collection once it fills (a
    50,000-entry front cache: a pause of 10+ ms each time). Tracked from the start, a
    cache made before the freeze is frozen with it, entries and all."""
    d: dict[Any, Any] = {None: []}
    del d[None]
    return d


class BoundedCache(Generic[K, V]):
    """At most ``max_entries`` entries and ``max_bytes`` bytes (as the caller counts them)."""

    __slots__ = (
        "_count",
        "_data",
        "_head",
        "_ring",
        "_sizes",
        "bytes",
        "evictions",
        "get",
        "max_bytes",
        "max_entries",
    )

    def __init__(self, max_entries: int, max_bytes: int | None = None) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._data: dict[K, V] = _tracked_dict()
        # slots in insertion order from ``_head`` (grown to ``max_entries``, then reused)
        self._ring: list[object] = []
        self._sizes: array[int] = array("q")
        self._head = 0
        self._count = 0
        self.bytes = 0
        self.evictions = 0
        # The hit path is the dict's own lookup, bound once.
        self.get: Callable[[K], V | None] = self._data.get

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def items(self) -> list[tuple[K, V]]:
        """A copy of the entries (not for the hot path)."""
        return list(self._data.items())

    def put(self, key: K, value: V, size: int = 0) -> None:
        """Insert or replace ``key``; evict the oldest entries while over a bound.

        An entry larger than ``max_bytes`` on its own is not kept (and replaces nothing).
        """
        limit = self.max_bytes
        if limit is not None:
            if size > limit:
                self._data.pop(key, None)
                return
            self.bytes += size
        if self._count == self.max_entries:
            self._evict()
        self._data[key] = value
        ring = self._ring
        at = self._head + self._count
        if at >= self.max_entries:
            at -= self.max_entries
        if at == len(ring):
            ring.append(key)
            if limit is not None:
                self._sizes.append(size)
        else:
            ring[at] = key
            if limit is not None:
                self._sizes[at] = size
        self._count += 1
        if limit is not None:
            while self.bytes > limit:
                self._evict(key)  # may be an older slot of this same key: keep the new value

    def _evict(self, keep: object = _GONE) -> None:
        """Drop the oldest slot (and its key, when still present and not ``keep``)."""
        head = self._head
        key = self._ring[head]
        self._ring[head] = _GONE
        if self.max_bytes is not None:
            self.bytes -= self._sizes[head]
            self._sizes[head] = 0
        head += 1
        self._head = 0 if head == self.max_entries else head
        self._count -= 1
        if key != keep and key in self._data:
            del self._data[key]
            self.evictions += 1

    def pop(self, key: K) -> None:
        """Drop ``key`` if present (its bytes count until its slot is evicted)."""
        self._data.pop(key, None)

    def clear(self) -> None:
        """Drop everything (tests and reloads only)."""
        self._data.clear()
        self._ring = []
        self._sizes = array("q")
        self._head = self._count = 0
        self.bytes = 0


class Doorkeeper:
    """Whether a key was seen recently: a Bloom filter (two bits a key) cleared after
    ``bits // 8`` new keys. A cache that admits a key on its second sighting keeps out the
    keys asked once (a new client /24, a new ECS subnet), which would only push out the
    ones asked again. A key is never refused for sharing a slot with another (a table of
    one hash a slot starved ~14 % of 10,000 keys that way); a few are admitted early."""

    __slots__ = ("_added", "_bits", "_capacity", "_mask")

    def __init__(self, bits: int = 1 << 20) -> None:
        if bits < 8 or bits & (bits - 1):
            raise ValueError("bits must be a power of two, at least 8")
        self._mask = bits - 1
        self._bits = bytearray(bits >> 3)
        self._capacity = max(1, bits >> 3)  # new keys before a reset: ~5 % false positives
        self._added = 0

    def clear(self) -> None:
        """Forget every key."""
        self._bits = bytearray(len(self._bits))
        self._added = 0

    def seen_before(self, key: Hashable) -> bool:
        """True when ``key`` was seen since the last reset; records it either way."""
        h = hash(key)
        a = h & self._mask
        b = (h >> 32) & self._mask
        bits = self._bits
        if bits[a >> 3] & (1 << (a & 7)) and bits[b >> 3] & (1 << (b & 7)):
            return True
        bits[a >> 3] |= 1 << (a & 7)
        bits[b >> 3] |= 1 << (b & 7)
        self._added += 1
        if self._added >= self._capacity:
            self.clear()
        return False
