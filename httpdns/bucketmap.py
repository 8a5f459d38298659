"""Bucket maps: every decision of one (service, region, family), computed at once.

``steering.decide`` is the definition of an answer; it costs ~13 µs per call. A
``BucketMap`` holds its result for all 65,536 client buckets as one byte (or
two) per bucket indexing the few distinct ``Choice``s, so a decision that no
cache holds is one ``bytes`` index instead (half a byte per bucket when there
are at most 16 choices, as usual: 32 KiB a map). ``build`` computes it with numpy in
a few milliseconds, following ``decide`` step by step:

* SplitMix64 draws in ``uint64`` arithmetic (wrapping multiplication, exactly
  ``hashing.mix64s``) and ``((m >> 12) + 0.5)`` in float64, which is exact; so
  the canary cohort (a draw against a threshold) and equal-weight endpoint
  rankings (by the draw alone) are bit-for-bit those of ``hashing.scores``;
* weighted scores ``-w / ln(u)`` use ``numpy.log``, which may differ from
  ``math.log`` in the last bit. A bucket whose ranking could depend on that
  (two scores within ``_TIE`` relative of each other where the order matters)
  is decided by ``steering.decide`` itself, so the map never differs from it.

Maps are built per key and only when asked (``RoutingTable`` builds one when a
key becomes hot, a slice per query with ``steps`` so no query waits for a whole
map); a map with more than ``MAX_CHOICES`` distinct answers is not worth keeping
and ``build`` returns None.
"""

from __future__ import annotations

from array import array
from collections.abc import Generator
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from .hashing import BUCKETS, GOLDEN, TWO52
from .steering import Choice, CompiledService, decide

MAX_CHOICES = 4096  # distinct answers in one map; beyond, per-bucket decisions are cheaper
_TIE = 1e-9  # relative score gap below which numpy's last-bit log error could reorder
_SLICE = 8192  # buckets computed together
_CHUNK = 1 << 16  # and at most this many scores at once (candidates x buckets)
STEPS = BUCKETS // _SLICE  # calls of a ``steps`` job, the last one finishing the map

_U64 = np.uint64
_C1, _C2 = _U64(0xBF58476D1CE4E5B9), _U64(0x94D049BB133111EB)
_S30, _S27, _S31, _S12 = _U64(30), _U64(27), _U64(31), _U64(12)
_SPREAD = np.arange(BUCKETS, dtype=np.uint64) * _U64(GOLDEN)  # bucket * golden mod 2**64

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class BucketMap:
    """``choices[index[bucket]]`` is ``decide(service, family, region, bucket)``."""

    service: CompiledService  # the compiled entry it was built from (identity = validity)
    # half a byte per bucket (<= 16 choices: the even bucket in the low half), else one
    # byte (<= 256 choices), else 'H' items
    index: bytes | array[int]
    choices: tuple[Choice, ...]
    packed: bool = False  # half a byte per bucket

    @property
    def nbytes(self) -> int:
        """Approximate memory held (the index and the choices)."""
        per_choice = 120 + 60 * max((len(c.addresses) for c in self.choices), default=0)
        return len(self.index) * (1 if isinstance(self.index, bytes) else 2) + per_choice * len(
            self.choices
        )

    def choice(self, bucket: int) -> Choice:
        """The decision for ``bucket``."""
        if self.packed:
            return self.choices[(self.index[bucket >> 1] >> ((bucket & 1) << 2)) & 15]
        return self.choices[self.index[bucket]]


def draws(salt: int, buckets: I64 | None = None) -> F64:
    """``(mix64(salt ^ spread(b)) >> 12) + 0.5`` for the buckets (all by default): the
    draw times 2**52, as ``hashing.scores`` ranks equal weights."""
    z = (_SPREAD if buckets is None else _SPREAD[buckets]) ^ _U64(salt)
    # in place: one array for the whole mix (uint64 multiplication wraps mod 2**64)
    z ^= z >> _S30
    z *= _C1
    z ^= z >> _S27
    z *= _C2
    z ^= z >> _S31
    z >>= _S12
    out = z.astype(np.float64)
    out += 0.5
    return out


def weighted(salt: int, weight: int, buckets: I64) -> F64:
    """``-weight / ln(draw)`` for the buckets (last bit may differ from ``math.log``)."""
    with np.errstate(divide="ignore"):
        return np.float64(-weight) / np.log(draws(salt, buckets) / TWO52)


def build(svc: CompiledService, family: int, region: str) -> BucketMap | None:
    """The map of ``decide(svc, family, region, b)`` for every bucket ``b``; None when it
    would hold more than ``MAX_CHOICES`` distinct answers."""
    job = steps(svc, family, region)
    while True:
        try:
            next(job)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def steps(
    svc: CompiledService, family: int, region: str
) -> Generator[None, None, BucketMap | None]:
    """``build`` a slice at a time: each ``next`` computes one slice of buckets (a
    millisecond or two, where a whole map takes ten); the map (or None) is the value of
    the ``StopIteration`` that ends it, after at most ``STEPS`` calls."""
    codes = np.empty(BUCKETS, dtype=np.int64)
    found: dict[Choice, int] = {}
    # Slices of 8,192 buckets: arrays of 64 KiB stay in the cache and on malloc's heap
    # (a fresh 512 KiB temporary is an mmap and its page faults: 10x slower here).
    for lo in range(0, BUCKETS, _SLICE):
        part = np.arange(lo, lo + _SLICE, dtype=np.int64)
        if svc.canary is not None:
            canary = draws(svc.canary_salt, part) / TWO52 < svc.canary_threshold
            cohorts = [(False, part[~canary]), (True, part[canary])]
        else:
            cohorts = [(False, part)]
        for is_canary, buckets in cohorts:
            if len(buckets) and not _cohort(svc, family, region, is_canary, buckets, codes, found):
                return None
        if lo + _SLICE < BUCKETS:
            yield
    return _finish(svc, codes, found)


def _intern(found: dict[Choice, int], choice: Choice) -> int:
    return found.setdefault(choice, len(found))


def _finish(svc: CompiledService, codes: I64, found: dict[Choice, int]) -> BucketMap | None:
    if len(found) > MAX_CHOICES:
        return None
    choices = tuple(found)  # insertion order = code order
    if len(choices) <= 16:  # the common map (a few datacenters and pools): 32 KiB
        small = codes.astype(np.uint8)
        return BucketMap(svc, (small[0::2] | (small[1::2] << 4)).tobytes(), choices, True)
    if len(choices) <= 256:
        index: bytes | array[int] = codes.astype(np.uint8).tobytes()
    else:
        index = array("H", codes.astype(np.uint16).tobytes())
    return BucketMap(svc, index, choices)


def _cohort(
    svc: CompiledService,
    family: int,
    region: str,
    is_canary: bool,
    buckets: I64,
    codes: I64,
    found: dict[Choice, int],
) -> bool:
    """Fill ``codes`` for the buckets of one cohort; False when there are too many choices.

    ``decide`` walks (healthy only, then not) x (region table, then default) x versions
    and stops at the first step with an eligible datacenter; which step that is does not
    depend on the bucket, only the scores within it do.
    """
    cohort = "canary" if is_canary else "stable"
    table_name = region if region in svc.tables else "default"
    tables = [svc.tables[table_name]]
    if table_name != "default":
        tables.append(svc.tables["default"])
    versions = svc.versions_canary if is_canary else svc.versions_stable
    pools = svc.pools
    for healthy_only in (True, False):
        if not healthy_only and svc.all_down == "fail-closed":
            codes[buckets] = _intern(found, Choice((), svc.ttl, None, None, cohort, "closed"))
            return True
        for table in tables:
            for version in versions:
                present = [c for c in table if (family, c[0], version, healthy_only) in pools]
                if present:
                    status = "ok" if healthy_only else "failover-open"
                    step = (family, region, version, healthy_only, cohort, status)
                    return _step(svc, present, step, buckets, codes, found)
    codes[buckets] = _intern(found, Choice((), svc.ttl, None, None, cohort, "empty"))
    return True


def _step(
    svc: CompiledService,
    present: list[tuple[str, int, int]],
    step: tuple[int, str, str | None, bool, str, str],
    buckets: I64,
    codes: I64,
    found: dict[Choice, int],
) -> bool:
    family, region, version, healthy_only, cohort, status = step
    pools = svc.pools
    # The datacenter: the highest weighted score, the first of equals (as ``max``).
    if len(present) == 1:
        winners = [buckets]
    else:
        if len({w for _, w, _ in present}) == 1:
            # equal weights rank as their draws (-w / ln u grows with u): no logarithm,
            # but equal-looking scores from distinct draws still go to ``decide``
            dc_scores = [draws(salt, buckets) for _, _, salt in present]
        else:
            dc_scores = [weighted(salt, w, buckets) for _, w, salt in present]
        order, sure = _ranked(dc_scores, 1, check=True)
        winners = [buckets[(order[0] == i) & sure] for i in range(len(present))]
        _decide_each(svc, family, region, buckets[~sure], codes, found)
    for (dc, _, _), mine in zip(present, winners, strict=True):
        if not len(mine):
            continue
        pool = pools[(family, dc, version, healthy_only)]
        n = len(pool.salts)
        take = min(svc.answers, n)
        if n**take >= 1 << 62:
            return False  # more distinct answers than any map should hold
        step_chunk = max(1, _CHUNK // n)
        for at in range(0, len(mine), step_chunk):
            part = mine[at : at + step_chunk]
            if pool.equal:
                ranks = [draws(salt, part) for salt in pool.salts]
            else:
                ranks = [
                    weighted(s, w, part) for s, w in zip(pool.salts, pool.weights, strict=True)
                ]
            order, ok = _ranked(ranks, take, check=not pool.equal)
            # the top ``take`` candidates in order, packed as the digits of one number
            packed = order[0].copy()
            for column in order[1:]:
                packed *= n
                packed += column
            keys, inverse = _distinct(packed[ok])
            local = []
            for key in keys.tolist():
                row = []
                for _ in range(take):
                    key, digit = divmod(key, n)
                    row.append(pool.addresses[digit])
                choice = Choice(tuple(reversed(row)), svc.ttl, dc, version, cohort, status)
                local.append(_intern(found, choice))
            if len(found) > MAX_CHOICES:
                return False
            codes[part[ok]] = np.array(local, dtype=np.int64)[inverse]
            _decide_each(svc, family, region, part[~ok], codes, found)
    return len(found) <= MAX_CHOICES


def _decide_each(
    svc: CompiledService,
    family: int,
    region: str,
    buckets: I64,
    codes: I64,
    found: dict[Choice, int],
) -> None:
    """The few buckets a near tie leaves to the definition itself."""
    for b in buckets.tolist():
        codes[b] = _intern(found, decide(svc, family, region, b))


def _distinct(packed: I64) -> tuple[I64, I64]:
    """``numpy.unique(packed, return_inverse=True)``, by counting when the values are small."""
    if not len(packed):
        return packed, packed
    top = int(packed.max())
    if top < 1 << 20:
        seen = np.bincount(packed, minlength=top + 1) > 0
        keys = np.flatnonzero(seen)
        lut = np.zeros(top + 1, dtype=np.int64)
        lut[keys] = np.arange(len(keys))
        return keys, lut[packed]
    keys, inverse = np.unique(packed, return_inverse=True)
    return keys, inverse.reshape(-1)


def _ranked(scores: list[F64], take: int, check: bool) -> tuple[list[I64], npt.NDArray[np.bool_]]:
    """Per bucket, the candidates in the first ``take`` places (one array per place):
    highest score first, equals in candidate order, as ``sorted(..., reverse=True)``
    (stable) and ``max`` (the first) rank them. With ``check``, also per bucket whether
    those places and the next one are apart by more than ``_TIE`` relative — else the
    last bit of a logarithm could reorder them."""
    n, size = len(scores), len(scores[0])
    ok = np.ones(size, dtype=bool)
    if n == 1:
        return [np.zeros(size, dtype=np.int64)], ok
    if n > 8:
        stacked = np.stack(scores, axis=1)  # (buckets, candidates): each row contiguous
        by_rank = np.argsort(-stacked, axis=1, kind="stable")[:, : take + 1]
        if check:
            ordered = np.take_along_axis(stacked, by_rank, axis=1)
            hi, lo = ordered[:, :-1], ordered[:, 1:]
            ok = np.all(hi - lo > _TIE * np.abs(hi), axis=1)
        return [np.ascontiguousarray(by_rank[:, p]) for p in range(take)], ok
    # few candidates: each one's place is how many beat it (on equal scores, the earlier)
    order = [np.zeros(size, dtype=np.int64) for _ in range(take)]
    best = [np.zeros(size) for _ in range(min(take + 1, n))] if check and n > 2 else []
    for i in range(n):
        place = np.zeros(size, dtype=np.int64)
        for j in range(n):
            if j != i:
                place += (scores[j] >= scores[i]) if j < i else (scores[j] > scores[i])
        for p, column in enumerate(order):
            if i:
                column[place == p] = i
        for p, vals in enumerate(best):
            np.copyto(vals, scores[i], where=place == p)
    if check and n == 2:
        a, b = scores
        ok = np.abs(a - b) > _TIE * np.maximum(a, b)  # scores and draws are positive
    for hi, lo in pairwise(best):
        ok &= hi - lo > _TIE * np.abs(hi)
    return order, ok
