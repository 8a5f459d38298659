"""Steering: which addresses a client gets for a service (DESIGN §3). Pure.

``CompiledService`` is built once per service change from registry records and
holds everything a decision needs, prepared for hashing. ``decide`` picks, for
one (address family, region, client bucket):

1. the region's weight table (or ``default``);
2. the version cohort: canary iff draw(bucket, canary salt) < percent / 100,
   so cohorts are nested as the percentage grows;
3. the eligible datacenters: weight > 0, not drained, writable for ``rw``
   services, and holding a healthy endpoint (weight > 0) of that version;
   if none, the stable version, then any version, is tried;
4. the datacenter with the highest weighted rendezvous score, so a failed
   datacenter's share spreads over the others in proportion to their weights;
5. the top ``answers`` endpoints of that datacenter and version by weighted
   rendezvous score;
6. if nothing is eligible: ``fail-open`` answers as if every endpoint were
   healthy, ``fail-closed`` answers empty.

Passing a list as ``trace`` records every step for ``explain``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from registry.model import Datacenter, Endpoint, Release, Service

from .hashing import draw, h64, score, scores


@dataclass(frozen=True, slots=True)
class Candidate:
    """An endpoint prepared for rendezvous hashing."""

    id: str
    address: str
    salt: int
    weight: int


@dataclass(frozen=True, slots=True)
class Pool:
    """Candidates of one (family, datacenter, version, health) as parallel tuples."""

    ids: tuple[str, ...]
    addresses: tuple[str, ...]
    salts: tuple[int, ...]
    weights: tuple[int, ...]
    equal: bool  # all weights equal: rank by the draw alone (no logarithm)

    @classmethod
    def of(cls, cands: list[Candidate]) -> Pool:
        weights = tuple(c.weight for c in cands)
        return cls(
            tuple(c.id for c in cands),
            tuple(c.address for c in cands),
            tuple(c.salt for c in cands),
            weights,
            len(set(weights)) <= 1,
        )


@dataclass(frozen=True, slots=True)
class Choice:
    """The outcome of one decision: ordered addresses and their TTL."""

    addresses: tuple[str, ...]
    ttl: int
    dc: str | None = None
    version: str | None = None
    cohort: str = "stable"
    status: str = "ok"  # ok | failover-open | closed | empty


_SERIALS = itertools.count(1)
MAX_INTERNED = 64  # numbered choices per compiled service (bounded: 10,000 services x 64 at most)


@dataclass(slots=True)
class CompiledService:
    """A service's records prepared for fast, repeatable decisions."""

    name: str
    ttl: int
    answers: int
    all_down: str
    access: str
    stable: str | None
    canary: str | None
    canary_threshold: float
    canary_salt: int
    # region -> ((dc, weight, salt), ...) with only usable datacenters (weight > 0,
    # not drained, writable when the service is rw)
    tables: dict[str, tuple[tuple[str, int, int], ...]]
    # (family, dc, version or None for any, healthy_only) -> candidates (weight > 0)
    pools: dict[tuple[int, str, str | None, bool], Pool]
    # versions to try in order, per cohort (None = any version)
    versions_stable: tuple[str | None, ...] = (None,)
    versions_canary: tuple[str | None, ...] = (None,)
    # why a datacenter of a table is not usable, for explain
    excluded: dict[str, str] = field(default_factory=dict)
    # Not part of the decision: a number no other compile gets (caches key on it) and the
    # distinct decisions seen so far, numbered (``intern``).
    serial: int = field(default_factory=lambda: next(_SERIALS), compare=False)
    seen: dict[Choice, int] = field(default_factory=dict, compare=False, repr=False)
    seen_list: list[Choice] = field(default_factory=list, compare=False, repr=False)

    def intern(self, choice: Choice) -> int:
        """A small number for ``choice`` (the same for equal choices), or -1 when this
        service has numbered ``MAX_INTERNED`` choices already."""
        n = self.seen.get(choice)
        if n is None:
            if len(self.seen_list) >= MAX_INTERNED:
                return -1
            n = self.seen[choice] = len(self.seen_list)
            self.seen_list.append(choice)
        return n


def compile_service(
    service: Service,
    endpoints: Iterable[Endpoint],
    release: Release | None,
    datacenters: Mapping[str, Datacenter],
) -> CompiledService:
    """Prepare ``service`` for decisions."""
    name = service.name
    excluded: dict[str, str] = {}
    usable: dict[str, int] = {}
    for table in service.traffic.values():
        for dc in table:
            if dc in usable or dc in excluded:
                continue
            rec = datacenters.get(dc)
            if rec is None:
                excluded[dc] = "unknown datacenter"
            elif rec.drained:
                excluded[dc] = "drained"
            elif service.access == "rw" and not rec.writable:
                excluded[dc] = "read-only datacenter, service is rw"
            else:
                usable[dc] = h64(name, "dc", dc)
    tables = {
        region: tuple((dc, w, usable[dc]) for dc, w in sorted(t.items()) if w > 0 and dc in usable)
        for region, t in service.traffic.items()
    }
    lists: dict[tuple[int, str, str | None, bool], list[Candidate]] = {}
    for ep in sorted(endpoints, key=lambda e: e.id):
        if ep.weight <= 0:
            continue
        family = 6 if ":" in ep.address else 4
        cand = Candidate(ep.id, ep.address, h64(name, "endpoint", ep.id), ep.weight)
        for version in (ep.version, None):
            lists.setdefault((family, ep.dc, version, False), []).append(cand)
            if ep.healthy:
                lists.setdefault((family, ep.dc, version, True), []).append(cand)
    stable = release.stable if release else None
    canary = release.canary if release and release.canary_percent > 0 else None
    return CompiledService(
        name=name,
        ttl=service.ttl,
        answers=service.answers,
        all_down=service.all_down,
        access=service.access,
        stable=stable,
        canary=canary,
        canary_threshold=(release.canary_percent / 100.0) if canary and release else 0.0,
        canary_salt=h64(name, "canary"),
        tables=tables,
        pools=_pools(lists),
        excluded=excluded,
        versions_stable=_versions(stable),
        versions_canary=_versions(canary, stable),
    )


def _pools(
    lists: dict[tuple[int, str, str | None, bool], list[Candidate]],
) -> dict[tuple[int, str, str | None, bool], Pool]:
    """One Pool per distinct candidate list: with one version per datacenter and every
    endpoint healthy, the four keys of a datacenter share one Pool (compile time, memory)."""
    seen: dict[tuple[int, ...], Pool] = {}
    out = {}
    for key, cands in lists.items():
        ident = tuple(map(id, cands))
        pool = seen.get(ident)
        if pool is None:
            pool = seen[ident] = Pool.of(cands)
        out[key] = pool
    return out


def _versions(*preferred: str | None) -> tuple[str | None, ...]:
    out: list[str | None] = []
    for v in (*preferred, None):
        if v not in out:
            out.append(v)
    return tuple(out)


def in_canary(svc: CompiledService, bucket: int) -> bool:
    """Whether the client bucket belongs to the canary cohort."""
    return svc.canary is not None and draw(bucket, svc.canary_salt) < svc.canary_threshold


def decide(
    svc: CompiledService,
    family: int,
    region: str,
    bucket: int,
    trace: list[dict[str, Any]] | None = None,
) -> Choice:
    """Choose the addresses for one (family, region, client bucket)."""
    table_name = region if region in svc.tables else "default"
    # A region whose own table has nothing usable falls back to the default table before
    # any all-down policy applies (DESIGN §3.3: "falling back to default").
    tables = [svc.tables[table_name]]
    if table_name != "default":
        tables.append(svc.tables["default"])
    table = tables[0]
    canary = in_canary(svc, bucket)
    cohort = "canary" if canary else "stable"
    versions = svc.versions_canary if canary else svc.versions_stable
    if trace is not None:
        trace.append(
            {
                "step": "table",
                "region": region,
                "table": table_name,
                "weights": {dc: w for dc, w, _ in table},
                "excluded": dict(svc.excluded),
            }
        )
        trace.append(
            {
                "step": "cohort",
                "cohort": cohort,
                "canary": svc.canary,
                "canary_percent": round(svc.canary_threshold * 100, 2),
                "draw": draw(bucket, svc.canary_salt) if svc.canary else None,
                "versions_tried": list(versions),
            }
        )
    for healthy_only in (True, False):
        if not healthy_only:
            if svc.all_down == "fail-closed":
                if trace is not None:
                    trace.append({"step": "all-down", "policy": "fail-closed", "answer": []})
                return Choice((), svc.ttl, None, None, cohort, "closed")
            if trace is not None:
                trace.append({"step": "all-down", "policy": "fail-open"})
        for table in tables:
            for version in versions:
                choice = _pick(svc, family, table, bucket, version, healthy_only, trace)
                if choice is not None:
                    dc, addrs = choice
                    status = "ok" if healthy_only else "failover-open"
                    return Choice(addrs, svc.ttl, dc, version, cohort, status)
    return Choice((), svc.ttl, None, None, cohort, "empty")


def _pick(
    svc: CompiledService,
    family: int,
    table: tuple[tuple[str, int, int], ...],
    bucket: int,
    version: str | None,
    healthy_only: bool,
    trace: list[dict[str, Any]] | None,
) -> tuple[str, tuple[str, ...]] | None:
    pools = svc.pools
    present = [c for c in table if (family, c[0], version, healthy_only) in pools]
    best_dc: str | None = None
    dc_scores: dict[str, float] = {}
    if present:
        ranked = scores(bucket, [salt for _, _, salt in present], [w for _, w, _ in present])
        best = max(range(len(present)), key=ranked.__getitem__)  # the first of equals wins
        best_dc = present[best][0]
        if trace is not None:
            dc_scores = {c[0]: s for c, s in zip(present, ranked, strict=True)}
    if trace is not None:
        trace.append(
            {
                "step": "datacenter",
                "version": version,
                "healthy_only": healthy_only,
                "eligible": sorted(dc_scores),
                "scores": dc_scores,
                "chosen": best_dc,
            }
        )
    if best_dc is None:
        return None
    pool = pools[(family, best_dc, version, healthy_only)]
    ranks = scores(bucket, pool.salts, None if pool.equal else pool.weights)
    order = sorted(range(len(ranks)), key=ranks.__getitem__, reverse=True)[: svc.answers]
    if trace is not None:
        trace.append(
            {
                "step": "endpoints",
                "dc": best_dc,
                # the weighted rendezvous score, whatever shortcut ranked them
                "candidates": {
                    i: round(score(bucket, salt, w), 6)
                    for i, salt, w in zip(pool.ids, pool.salts, pool.weights, strict=True)
                },
                "chosen": [pool.ids[i] for i in order],
            }
        )
    return best_dc, tuple(pool.addresses[i] for i in order)
