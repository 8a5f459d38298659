"""Records kept as the store holds them and decoded on first use, in mappings that a
change copies without copying them.

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

Copies share one ``base`` table and each keeps its own small ``overlay`` of the names
changed since (a record, or ``_GONE``): ``copy`` costs the overlay, not the 100,000
names, and a record decoded through any copy is decoded for all of them (the base holds
it). The overlay is folded into a new base once it grows past ``len(base) / 16``, so the
copies stay cheap and lookups stay two dict reads. Only ``Snapshot.apply`` mutates one,
on its own copy, before the new snapshot is published; the base is never changed but
for a raw value replaced by its decoded record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from itertools import chain, filterfalse
from typing import Any, Generic, TypeVar

from .errors import StoreDamagedError

T = TypeVar("T")

_MISSING: Any = object()
_GONE: Any = object()  # in an overlay: deleted from the base
MIN_FOLD = 1024  # overlays up to this size are never folded (a small registry: plain copies)


class LazyRecords(MutableMapping[str, T], Generic[T]):
    """Name -> record, each decoded from its raw form (``raw_type``) on first read."""

    __slots__ = ("_base", "_decode", "_kind", "_len", "_over", "_raw_type")

    def __init__(
        self,
        items: dict[str, Any],
        raw_type: type,
        decode: Callable[[Any], T],
        kind: str,
    ) -> None:
        """``items``: name -> a decoded record or its raw form (an instance of
        ``raw_type``, never a record's own type); taken over, not copied, and never
        changed again but by decoding. ``kind`` names the records in errors."""
        self._base = items
        self._over: dict[str, Any] = {}
        self._len = len(items)
        self._raw_type = raw_type
        self._decode = decode
        self._kind = kind

    def _decoded(self, key: str, value: Any, table: dict[str, Any]) -> T:
        try:
            record = self._decode(value)
        except Exception as exc:  # any failure: the raw record is not a record
            raise StoreDamagedError(
                f"unreadable record {self._kind}/{key} ({exc!r:.80}); restore the registry"
            ) from exc
        # Decoded once, where it was found: in the base, for every copy sharing it.
        table[key] = record
        return record

    def get(self, key: str, default: Any = None) -> Any:
        """The record of ``key`` (decoded now if it has not been), or ``default``."""
        table = self._over
        value = table.get(key, _MISSING) if table else _MISSING
        if value is _MISSING:
            table = self._base
            value = table.get(key, _MISSING)
            if value is _MISSING:
                return default
        elif value is _GONE:
            return default
        if type(value) is self._raw_type:
            return self._decoded(key, value, table)
        return value

    def __getitem__(self, key: str) -> T:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        over = self._over
        if over:
            value = over.get(key, _MISSING)  # type: ignore[call-overload]
            if value is not _MISSING:
                return value is not _GONE
        return key in self._base

    def __iter__(self) -> Iterator[str]:
        over = self._over
        if not over:
            return iter(self._base)
        # The base's names less the deleted ones, then the new ones: iterated in C (a
        # health pass lists 100,000 names), the overlay's small sets made in Python.
        base = self._base
        gone = {key for key, value in over.items() if value is _GONE}
        added = [key for key, value in over.items() if value is not _GONE and key not in base]
        return chain(filterfalse(gone.__contains__, base), added)

    def raw_items(self) -> Iterator[tuple[str, Any]]:
        """``(name, record or its raw form)`` for every name, decoding nothing (a whole
        snapshot written out: the raw forms are written as they are)."""
        return ((key, self._raw(key)) for key in self)

    def __len__(self) -> int:
        return self._len

    def __setitem__(self, key: str, value: T) -> None:
        if key not in self:
            self._len += 1
        self._over[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        if key in self._base:
            self._over[key] = _GONE
        else:
            del self._over[key]
        self._len -= 1

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        """Remove ``key`` and return its record (decoded), or ``default``."""
        value = self.get(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise KeyError(key)
            return default
        del self[key]
        return value

    def copy(self) -> LazyRecords[T]:
        """A copy that decodes nothing and shares the base (see the module's docstring)."""
        new: LazyRecords[T] = LazyRecords.__new__(LazyRecords)
        new._raw_type, new._decode, new._kind = self._raw_type, self._decode, self._kind
        new._len = self._len
        over = self._over
        if len(over) > max(MIN_FOLD, len(self._base) >> 4):
            base = dict(self._base)  # fold the overlay into a base of the copy's own
            for key, value in over.items():
                if value is _GONE:
                    del base[key]
                else:
                    base[key] = value
            new._base, new._over = base, {}
        else:
            new._base, new._over = self._base, dict(over)
        return new

    def undecoded(self) -> int:
        """How many records are still raw (for tests and diagnostics)."""
        raw = self._raw_type
        return sum(1 for key in self if type(self._raw(key)) is raw)

    def _raw(self, key: str) -> Any:
        value = self._over.get(key, _MISSING)
        return self._base[key] if value is _MISSING else value

    def __repr__(self) -> str:
        return f"LazyRecords({self._kind}: {self._len}, {self.undecoded()} raw)"
