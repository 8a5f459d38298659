"""The content digest a store keeps with each revision: ``(revision, count, sum)``.

``sum`` is the sum, modulo 2**48, of one 48-bit hash per record (the first six
bytes of SHA-1 over ``"<kind>\\x1f<key>\\n<record JSON>"``). A sum of per-record
hashes can be updated per change (subtract the old record's hash, add the new
one's), so a write costs O(changes) — the Redis Lua script does the same
arithmetic with ``redis.sha1hex`` (48 bits fit a Lua double exactly). A record
lost, added or altered outside the store's own write path changes the count or
the sum, so a node that loads the records can tell them from the registry that
was written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

MODULUS = 1 << 48
SEP = "\x1f"  # between kind and key in a record's field name (the Redis hash field)


def field_name(kind: str, key: str) -> bytes:
    """The name a record is hashed under: ``kind\\x1fkey``."""
    return f"{kind}{SEP}{key}".encode()


def split_field(field: bytes) -> tuple[str, str]:
    """``(kind, key)`` of a field name as stored; bytes that are not UTF-8 are replaced, so
    such a record no longer matches its hash (the digest then reports it)."""
    kind, _, key = field.decode(errors="replace").partition(SEP)
    return kind, key


def record_hash(field: bytes, value: bytes) -> int:
    """The 48-bit hash of one record (``field`` as ``field_name`` gives it)."""
    return int.from_bytes(hashlib.sha1(field + b"\n" + value).digest()[:6], "big")


@dataclass(frozen=True, slots=True)
class Digest:
    """How many records a revision holds and the sum of their hashes."""

    revision: int
    count: int
    sum: int

    def encode(self) -> str:
        """``"REVISION COUNT SUM"``, the form both backends store."""
        return f"{self.revision} {self.count} {self.sum}"

    @classmethod
    def decode(cls, raw: str | bytes) -> Digest:
        """Parse ``encode`` output; ValueError when it is not three integers."""
        text = raw.decode() if isinstance(raw, bytes) else raw
        parts = text.split(" ")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise ValueError(f"not a digest: {text[:60]!r}")
        return cls(int(parts[0]), int(parts[1]), int(parts[2]))


class RunningDigest:
    """A digest computed record by record, while the records stream past (a load reads
    each row once: hashed, then decoded, never all held at once)."""

    __slots__ = ("count", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    def add(self, field: bytes, value: bytes) -> None:
        """Count one record."""
        self.count += 1
        self.total = (self.total + record_hash(field, value)) % MODULUS

    def merge(self, count: int, total: int) -> None:
        """Count ``count`` records whose hashes sum to ``total`` (a caller's own loop)."""
        self.count += count
        self.total = (self.total + total) % MODULUS

    def at(self, revision: int) -> Digest:
        """The digest of the records added so far, at ``revision``."""
        return Digest(revision, self.count, self.total)


def digest_of(revision: int, records: Iterable[tuple[bytes, bytes]]) -> Digest:
    """The digest of ``(field, value)`` pairs at ``revision``."""
    running = RunningDigest()
    for field, value in records:
        running.add(field, value)
    return running.at(revision)


def mismatch(expected: Digest, found: Digest) -> str | None:
    """Why ``found`` (computed from the records) is not ``expected`` (stored), or None."""
    if expected.revision != found.revision:
        return (
            f"the digest was written at revision {expected.revision}, "
            f"the revision is {found.revision}"
        )
    if expected.count != found.count:
        return f"{found.count} records where revision {expected.revision} has {expected.count}"
    if expected.sum != found.sum:
        return f"the records' digest differs from revision {expected.revision}'s (altered records)"
    return None
