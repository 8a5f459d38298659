"""What a registry change would do to answers, computed with the real steering code. Pure.

Every admin write is checked here before it is written (and a dry run stops here):

* ``empty_regions``: the (service, region) pairs that answer nobody — no address for
  either family, whatever the client — found by ``steering.decide`` itself on the
  compiled service; ``newly_empty`` compares two snapshots (the ``would_empty`` guard);
* ``warnings``: weights that can never apply (a read-only datacenter in an ``rw``
  service's table);
* ``empty_versions``: a release whose stable or canary version has no endpoint;
* ``impact``: per changed service and region, the split of a fixed sample of client
  buckets over datacenters before and after, and the share of those clients whose
  answer would change — measured by steering each bucket, never estimated.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from registry.changes import Change, ChangeSet
from registry.snapshot import Snapshot

from .hashing import BUCKETS
from .steering import CompiledService, compile_service, decide

if TYPE_CHECKING:
    from .table import RoutingTable

SAMPLE_SIZE = 4096
# Evenly spread buckets: the same sample on every run, so two dry runs agree.
SAMPLE: tuple[int, ...] = tuple(range(0, BUCKETS, BUCKETS // SAMPLE_SIZE))


def compiled(snap: Snapshot, name: str) -> CompiledService:
    """``name`` of ``snap`` compiled exactly as the routing table compiles it."""
    return compile_service(
        snap.services[name],
        snap.endpoints_of(name).values(),
        snap.releases.get(name),
        snap.datacenters,
    )


def regions_of(snap: Snapshot, name: str) -> list[str]:
    """The regions that may answer differently for ``name``: ``default`` (every client
    outside a region with a table of its own) and each region with its own table."""
    svc = snap.services[name]
    return ["default", *sorted(r for r in svc.traffic if r != "default")]


def _families(svc: CompiledService) -> tuple[int, ...]:
    """The address families the service has endpoints of (4 alone when it has none)."""
    found = tuple(f for f in (4, 6) if any(key[0] == f for key in svc.pools))
    return found or (4,)


def touched(changes: Iterable[Change], snap: Snapshot) -> list[str]:
    """The services whose answers ``changes`` may change (every one for a datacenter or
    region change), present in ``snap``."""
    names = ChangeSet(0, tuple(changes)).services
    pool = snap.services if names is None else [n for n in names if n in snap.services]
    return sorted(pool)


def _empty_in(svc: CompiledService, regions: Iterable[str]) -> list[str]:
    """The regions where ``svc`` answers no address of either family to anyone.
    Eligibility does not depend on the client (a canary cohort falls back to any version),
    so one bucket per region and family decides."""
    return [
        region
        for region in regions
        if not any(decide(svc, family, region, 0).addresses for family in (4, 6))
    ]


def empty_regions(snap: Snapshot, names: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Services (of ``names``, default all) that answer empty for some region, with those
    regions (``default`` and the regions with a table of their own)."""
    out: dict[str, list[str]] = {}
    for name in sorted(snap.services if names is None else names):
        if name not in snap.services:
            continue
        empty = _empty_in(compiled(snap, name), regions_of(snap, name))
        if empty:
            out[name] = empty
    return out


def newly_empty(before: Snapshot, after: Snapshot, names: Iterable[str]) -> dict[str, list[str]]:
    """The (service, regions) whose clients get answers in ``before`` and would get none
    in ``after`` (a region without a table of its own is steered by ``default``). New
    services (nothing to lose yet) and deleted ones do not count."""
    out = {}
    for name in sorted(names):
        if name not in before.services or name not in after.services:
            continue
        regions = sorted(set(regions_of(before, name)) | set(regions_of(after, name)))
        now = _empty_in(compiled(after, name), regions)
        if not now:
            continue
        was = set(_empty_in(compiled(before, name), now))
        lost = [r for r in now if r not in was]
        if lost:
            out[name] = lost
    return out


def describe_empty(empty: Mapping[str, Sequence[str]]) -> str:
    """``a.example.org (default, north), b.example.org (default)``."""
    return ", ".join(f"{name} ({', '.join(regions)})" for name, regions in sorted(empty.items()))


def warnings(snap: Snapshot, names: Iterable[str]) -> list[str]:
    """Weights of the services ``names`` that can never apply: a read-only datacenter in
    an ``rw`` service's table (the weight is kept, but no client is ever sent there)."""
    out = []
    for name in sorted(names):
        svc = snap.services.get(name)
        if svc is None or svc.access != "rw":
            continue
        for region, table in sorted(svc.traffic.items()):
            for dc, weight in sorted(table.items()):
                rec = snap.datacenters.get(dc)
                if weight > 0 and rec is not None and not rec.writable:
                    out.append(
                        f"{name}: traffic.{region}.{dc}={weight} never applies "
                        f"({dc} is read-only and the service is rw)"
                    )
    return out


def empty_versions(snap: Snapshot, changes: Iterable[Change]) -> list[str]:
    """Releases put by ``changes`` whose stable or canary version has no endpoint in
    ``snap`` (the canary would silently answer stable; the stable anything)."""
    out = []
    for c in changes:
        if c.kind != "release" or c.op != "put" or c.value is None:
            continue
        rel = c.value
        have = {e.version for e in snap.endpoints_of(c.key).values()}
        for role in ("stable", "canary"):
            version = getattr(rel, role)
            if version is not None and version not in have:
                out.append(f"{c.key}: {role} version {version!r} has no endpoints")
    return out


def _answers(
    svc: CompiledService, region: str, families: Sequence[int], sample: Sequence[int]
) -> list[tuple[Any, ...]]:
    """The answer (datacenter and addresses of each family) of every sampled bucket."""
    return [
        tuple(
            (choice.dc, choice.addresses)
            for choice in (decide(svc, family, region, b) for family in families)
        )
        for b in sample
    ]


def _split(answers: Sequence[tuple[Any, ...]]) -> dict[str, float]:
    """Share of the sample per datacenter (of the first family), ``none`` for empty."""
    counts = Counter((a[0][0] if a[0][1] else None) or "none" for a in answers)
    return {dc: round(n / len(answers), 4) for dc, n in sorted(counts.items())}


def shares(snap: Snapshot, name: str, svc: CompiledService | None = None) -> dict[str, Any]:
    """The effective split of ``name`` per region (``regions_of``), measured by steering
    ``SAMPLE``: the share of clients per datacenter (``none``: answered empty), per
    address family the service has endpoints of. ``svc`` is its compiled form, when the
    routing table already holds it."""
    svc = svc or compiled(snap, name)
    out: dict[str, Any] = {}
    for region in regions_of(snap, name):
        out[region] = {
            f"ipv{family}": _split(_answers(svc, region, (family,), SAMPLE))
            for family in _families(svc)
        }
    return {"sample": len(SAMPLE), "regions": out}


DETAIL_LIMIT = 50  # services shown even when their answers do not change
BUDGET = 150_000  # decisions one impact may steer (~26 us each): a fleet-wide change stays
MIN_SAMPLE = 16  # within seconds by steering fewer buckets per service, never fewer than this


def impact(before: Snapshot, after: Snapshot, names: Iterable[str]) -> dict[str, Any]:
    """Per service of ``names`` and region: the split of the client sample before and
    after, and the share of clients whose answer (either family) would change; and the
    largest such share (``moved``). Services new or deleted are listed as such (a deleted
    service that answered anyone moves all of its clients: ``moved`` 1.0).

    The sample is ``SAMPLE`` (4,096 buckets); a change that touches many services (a
    datacenter change touches all) steers an evenly spread part of it per service so that
    the whole stays within ``BUDGET`` decisions (``sample`` says how many), and then
    services whose compiled form does not change are only counted (``unchanged``).
    """
    names = sorted(names)
    services: dict[str, Any] = {}
    largest = 0.0
    unchanged = 0
    work: list[tuple[str, CompiledService, CompiledService, list[str], tuple[int, ...]]] = []
    for name in names:
        if name not in before.services:
            services[name] = {"new": True}  # nobody was answered for it yet
            continue
        if name not in after.services:
            # Every client that got an answer loses it (the name stops resolving).
            old = compiled(before, name)
            answered = len(_empty_in(old, regions_of(before, name))) < len(regions_of(before, name))
            services[name] = {"deleted": True, "moved": 1.0 if answered else 0.0}
            largest = max(largest, services[name]["moved"])
            continue
        old, new = compiled(before, name), compiled(after, name)
        if old == new and len(names) > DETAIL_LIMIT:
            unchanged += 1
            continue
        families = tuple(sorted(set(_families(old)) | set(_families(new))))
        regions = sorted(set(regions_of(before, name)) | set(regions_of(after, name)))
        work.append((name, old, new, regions, families))
    cost = sum(len(r) * len(f) * (1 if o == n else 2) for _, o, n, r, f in work) or 1
    size = max(MIN_SAMPLE, min(len(SAMPLE), BUDGET // cost))
    sample = SAMPLE[:: max(1, len(SAMPLE) // size)]
    for name, old, new, regions_list, families in work:
        rows: dict[str, Any] = {}
        for region in regions_list:
            was = _answers(old, region, families, sample)
            now = was if old == new else _answers(new, region, families, sample)
            moved = sum(1 for a, b in zip(was, now, strict=True) if a != b) / len(sample)
            largest = max(largest, moved)
            rows[region] = {"before": _split(was), "after": _split(now), "moved": round(moved, 4)}
        services[name] = {"regions": rows}
    return {
        "sample": len(sample),
        "moved": round(largest, 4),
        "services": services,
        "unchanged": unchanged,
    }


LOOK_BUDGET = 0.005  # seconds one look may spend: health must never stall the event loop


class _Look:
    """What ``answering_empty`` knows, carried from one look to the next."""

    def __init__(self) -> None:
        # name -> (the records it was computed from, its empty regions)
        self.memo: dict[str, tuple[tuple[object, ...], list[str]]] = {}
        self.empty: dict[str, list[str]] = {}  # the services last found answering empty
        self.snap: Snapshot | None = None  # the snapshot of the pass under way (or done)
        self.names: Iterator[str] = iter(())  # the services that pass has still to look at
        self.first: list[str] = []  # changed since, looked at before ``names``
        self.full = False  # the pass under way looks at every service
        self.done = True  # that pass has looked at every service


_LOOKS: WeakKeyDictionary[RoutingTable, _Look] = WeakKeyDictionary()  # per routing table


def answering_empty(table: RoutingTable, budget: float = LOOK_BUDGET) -> dict[str, list[str]]:
    """Services of the routing table that answer empty in some region.

    Health asks often (``/healthz``, every second in the log watcher), so a look is cheap:
    a service is looked at again only when one of its records (or the datacenters) changed,
    one not compiled yet is compiled for the look and not kept (the table stays lazily
    compiled), and a look spends at most ``budget`` seconds: with 100,000 services the
    first pass decodes and compiles every one (seconds of CPU), so a pass is spread over
    several looks (``looked_at_all`` says when it is through; the node's health watcher
    keeps it moving). After a batch of service changes those services are looked at
    (first, when a pass is under way: it goes on with the rest). Until then services not
    yet looked at are reported as last found.
    """
    st = _LOOKS.get(table)
    if st is None:
        st = _LOOKS[table] = _Look()
    snap = table.snapshot
    if st.snap is not snap:  # a new registry: a new pass
        moved = table.changed_since(st.snap.revision) if st.snap is not None else None
        if moved is not None:
            # Batches of service changes: those alone, first, then what the pass under
            # way had left (what it looked at already is unchanged). Restarting the pass
            # instead never let a first pass through 100,000 services end while changes came.
            st.first.extend(moved)
            if st.done:
                st.names = iter(())
        else:  # anything else (a datacenter, a reload): all
            st.first, st.names, st.full = [], iter(list(snap.services)), True
        st.snap, st.done = snap, False
    if not st.done:
        deadline = time.perf_counter() + budget
        memo, empty, datacenters = st.memo, st.empty, snap.datacenters
        first, rest = st.first, st.names
        n = 0
        name: str | None = None
        while True:
            if first:
                name = first.pop()
            else:
                name = next(rest, None)
                if name is None:
                    break
            n += 1
            service = snap.services.get(name)
            if service is None:  # deleted
                memo.pop(name, None)
                empty.pop(name, None)
                continue
            key = (service, snap.endpoints.get(name), snap.releases.get(name), datacenters)
            seen = memo.get(name)
            if seen is None or not all(a is b for a, b in zip(seen[0], key, strict=True)):
                svc = table.peek(name) or table.compile_detached(name)
                regions = ["default", *sorted(r for r in svc.tables if r != "default")]
                found = [
                    region
                    for region in regions
                    if not any(decide(svc, family, region, 0).addresses for family in (4, 6))
                ]
                seen = memo[name] = (key, found)
            if seen[1]:
                empty[name] = seen[1]
            else:
                empty.pop(name, None)
            if not n & 7 and time.perf_counter() > deadline:  # at most 8 services (≈ 0.7 ms) over
                break
        if name is None:  # through every name of the pass
            st.done = True
            if st.full:
                # Services deleted since the last full pass (a pass of changed services
                # met its deleted ones above). Only then: this goes through every name.
                st.full = False
                for gone in [n for n in memo if n not in snap.services]:
                    del memo[gone]
                    empty.pop(gone, None)
    return {n: list(e) for n, e in sorted(st.empty.items()) if n in snap.services}


def looked_at_all(table: RoutingTable) -> bool:
    """Whether ``answering_empty`` has looked at every service of the table's registry."""
    st = _LOOKS.get(table)
    return st is not None and st.snap is table.snapshot and st.done
