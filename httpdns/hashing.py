"""The stable hash behind every steering decision.

Every node and every run must agree, so nothing here uses Python's ``hash()``.

* ``h64(*fields)``: the first 8 bytes (big-endian) of BLAKE2b over the UTF-8
  fields joined by U+001F (unit separator).
* ``bucket(key) = h64(key) >> 48``: clients are grouped into 65,536 buckets;
  every decision is a function of the bucket, which lets nodes cache answers
  per bucket (DESIGN §4) while keeping the same key sticky.
* ``draw(bucket, salt)``: a uniform number in (0, 1) for one (client bucket,
  candidate) pair: ``mix64(salt XOR (bucket * 0x9E3779B97F4A7C15 mod 2**64))``,
  where ``mix64`` is the SplitMix64 finaliser, then (top 52 bits + 0.5) / 2**52,
  which is exact in a double and so never reaches 0 or 1. A candidate's salt is ``h64(service, role, name)`` with role
  ``dc``, ``endpoint`` or ``canary``, computed once at compile time, so a
  query costs one BLAKE2b (the key) and a few integer mixes.
* ``score(bucket, salt, weight) = -weight / ln(draw)``: weighted rendezvous
  (highest random weight) hashing; the highest score wins and each candidate
  wins with probability weight / total.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from hashlib import blake2b

# The version of the steering function (hashing + rendezvous rules) that answers are
# computed with. Every node of a fleet must use the same one, or clients move mid-upgrade;
# a change is an explicit, recorded choice (tests/httpdns/golden), never a refactoring.
STEERING_VERSION = 1
BUCKET_BITS = 16
BUCKETS = 1 << BUCKET_BITS
M64 = _M64 = (1 << 64) - 1
GOLDEN = _GOLDEN = 0x9E3779B97F4A7C15
TWO52 = _TWO52 = float(1 << 52)


def h64(*fields: str) -> int:
    """BLAKE2b-64 of the fields joined by U+001F."""
    return int.from_bytes(blake2b("\x1f".join(fields).encode(), digest_size=8).digest(), "big")


# A fresh BLAKE2b-64 state, copied for each key: a copy costs half what the constructor
# does (its keyword arguments and parameter block), and hashing keys is the bulk of a miss.
_BLAKE64 = blake2b(digest_size=8).copy


def bucket(key: str) -> int:
    """The client bucket (0..65535) of a client key."""
    return bucket_bytes(key.encode())


def bucket_bytes(key: bytes) -> int:
    """``bucket`` of a key given as UTF-8 bytes: the same number, without the text round
    trip."""
    h = _BLAKE64()
    h.update(key)
    digest = h.digest()
    return digest[0] << 8 | digest[1]


def mix64s(zs: Iterable[int], xor: int = 0) -> list[int]:
    """The SplitMix64 finaliser of each value XOR ``xor``: a bijection on 64-bit integers
    with full avalanche. The one place it is written; every draw and score goes through it."""
    out: list[int] = []
    append = out.append
    for z in zs:
        z ^= xor
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
        append(z ^ (z >> 31))
    return out


def mix64(z: int) -> int:
    """SplitMix64 finaliser of one value (``mix64s`` of one)."""
    return mix64s((z,))[0]


def spread(bucket: int) -> int:
    """The bucket spread over 64 bits (Fibonacci hashing), XORed into each salt."""
    return (bucket * _GOLDEN) & _M64


def draw(bucket: int, salt: int) -> float:
    """Uniform in the open interval (0, 1) for (bucket, salt)."""
    return ((mix64(salt ^ spread(bucket)) >> 12) + 0.5) / _TWO52


def score(bucket: int, salt: int, weight: int) -> float:
    """Weighted rendezvous score; higher wins. Weight 0 never wins."""
    return -weight / math.log(draw(bucket, salt))


def scores(bucket: int, salts: Sequence[int], weights: Sequence[int] | None) -> list[float]:
    """``score`` for many candidates at once (the same arithmetic, one call).

    With ``weights`` None (all weights equal) the ranking is the same as the
    draw's, so the draws (times 2**52) are returned and the logarithm is skipped.
    """
    mixed = mix64s(salts, (bucket * _GOLDEN) & _M64)
    if weights is None:
        return [(m >> 12) + 0.5 for m in mixed]
    log = math.log
    return [-w / log(((m >> 12) + 0.5) / _TWO52) for m, w in zip(mixed, weights, strict=True)]
