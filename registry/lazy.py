"""Records kept as the store holds them and decoded on first use.

Decoding a 100,000-service registry (JSON, then the records, their interned names and
shared traffic tables) takes seconds, and a node needs only the services it is asked
about to answer its first query. ``LazyRecords`` is a mapping whose values start as the
raw record (the JSON bytes read from the store, or a list of them) and are decoded,
once, when first read: a query's compile, a change, an admin read, a validation, a
health pass. Iterating names, ``len`` and ``in`` decode nothing.

A load that keeps records raw is one whose records matched the digest the write path
keeps (registry/digest.py): every one of them was written by ``orjson.dumps`` of a
validated record, so it decodes. Loads that cannot rely on that (no digest yet, a
mismatch) decode everything at once, as before, and name the unreadable records. A raw
record that fails to decode all the same raises StoreDamagedError naming it.

Only ``Snapshot.apply`` mutates one, on its own copy (``copy``: a copy of the name ->
value table, raw values included, that decodes nothing) before the new snapshot is
published; everyone else reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Generic, TypeVar

from .errors import StoreDamagedError

T = TypeVar("T")

_MISSING: Any = object()


class LazyRecords(MutableMapping[str, T], Generic[T]):
    """Name -> record, each decoded from its raw form (``raw_type``) on first read."""

    __slots__ = ("_decode", "_items", "_kind", "_raw_type")

    def __init__(
        self,
        items: dict[str, Any],
        raw_type: type,
        decode: Callable[[Any], T],
        kind: str,
    ) -> None:
        """``items``: name -> a decoded record or its raw form (an instance of
        ``raw_type``, never a record's own type); taken over, not copied. ``kind`` names
        the records in errors."""
        self._items = items
        self._raw_type = raw_type
        self._decode = decode
        self._kind = kind

    def _decoded(self, key: str, value: Any) -> T:
        try:
            record = self._decode(value)
        except Exception as exc:  # any failure: the raw record is not a record
            raise StoreDamagedError(
                f"unreadable record {self._kind}/{key} ({exc!r:.80}); restore the registry"
            ) from exc
        # Decoded once: later reads (and copies made after now) share the record.
        self._items[key] = record
        return record

    def __getitem__(self, key: str) -> T:
        value = self._items[key]
        if type(value) is self._raw_type:
            return self._decoded(key, value)
        return value  # type: ignore[no-any-return]

    def get(self, key: str, default: Any = None) -> Any:
        """The record of ``key`` (decoded now if it has not been), or ``default``."""
        value = self._items.get(key, _MISSING)
        if value is _MISSING:
            return default
        if type(value) is self._raw_type:
            return self._decoded(key, value)
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __setitem__(self, key: str, value: T) -> None:
        self._items[key] = value

    def __delitem__(self, key: str) -> None:
        del self._items[key]

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        """Remove ``key`` and return its record (decoded), or ``default``."""
        value = self._items.pop(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise KeyError(key)
            return default
        if type(value) is self._raw_type:
            try:
                return self._decode(value)
            except Exception as exc:
                raise StoreDamagedError(
                    f"unreadable record {self._kind}/{key} ({exc!r:.80}); restore the registry"
                ) from exc
        return value

    def copy(self) -> LazyRecords[T]:
        """A copy that decodes nothing (raw values stay raw in both)."""
        return LazyRecords(dict(self._items), self._raw_type, self._decode, self._kind)

    def undecoded(self) -> int:
        """How many records are still raw (for tests and diagnostics)."""
        raw = self._raw_type
        return sum(1 for v in self._items.values() if type(v) is raw)

    def __repr__(self) -> str:
        return f"LazyRecords({self._kind}: {len(self._items)}, {self.undecoded()} raw)"
