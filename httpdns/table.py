"""The compiled routing table: the query hot path (DESIGN §4).

Built from a registry snapshot, it compiles a service (``CompiledService``) when
it is first asked for, not at start: a node with 100,000 services answers its
first query without compiling them all. A change recompiles the changed services
that were compiled; the others wait for their first query.

A (service, region, family) that keeps missing the decision cache is hot: it
gets a ``BucketMap`` (``httpdns.bucketmap``), every bucket's decision computed
with numpy, a slice per miss (a few maps at a time, so no query waits for a whole
map), and from then on a decision is one index — no client is ever a miss.
Maps are bounded by bytes (oldest first out) and rebuilt on the next query
after their service changes. Colder keys cache each decision per (service,
region, family, client bucket) in one bounded cache.

A cached decision or map is used only while its service's compiled entry is the
one it was computed from, so a change to one service (which
replaces that entry) retires its decisions at once; a datacenter or region
change rebuilds everything and swaps the whole table in one assignment.
Queries never touch the store.

Front ends that keep answers of their own (encoded HTTP bodies, DNS replies)
pass a ``deps`` list to ``resolve`` and later ask ``still_valid(deps)``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections import Counter, deque
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from registry.model import Region
from registry.snapshot import Snapshot

from . import bucketmap
from .bucketmap import BucketMap
from .cache import BoundedCache
from .errors import NoRegistry
from .hashing import bucket as bucket_of
from .steering import Choice, CompiledService, compile_service, decide

A, AAAA = 1, 28
MAX_BUCKET_MEMO = 100_000  # client key -> bucket memo (hashing is the dominant miss cost)
MAX_DECISIONS = 200_000  # cached decisions (Config.max_cached_answers)
# numbered choices over all compiled services (each also at most steering.MAX_INTERNED):
# about 200 bytes each; past it, a cached decision holds its own choice
MAX_INTERNED_TOTAL = 65_536
MAX_MAP_BYTES = 48 << 20  # bucket maps (32 or 64 KiB and a few choices each)
HOT_MISSES = 64  # decisions computed for one (service, region, family) before it gets a map:
# a map costs about as much as 500 decisions to build, and pays off from then on
MAX_BUILDING = 8  # maps built at once (0.5 MiB of work arrays each), a slice per miss
MAX_MOVES = 256  # registry moves remembered for looks that follow the table

Deps = list[tuple[str, CompiledService | None]]
_FAMILY = {A: 4, AAAA: 6}


def parse_ip(text: str) -> tuple[int, int]:
    """``(address as int, family)`` for an IPv4 or IPv6 literal; ValueError otherwise."""
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big"), 4
    except OSError:
        pass
    try:
        value = int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
    except (OSError, ValueError):
        raise ValueError(f"{text!r} is not an IP address") from None
    if value >> 32 == 0xFFFF:  # IPv4-mapped (::ffff:a.b.c.d): the client is an IPv4 client
        return value & 0xFFFFFFFF, 4
    return value, 6


@dataclass(frozen=True, slots=True)
class Client:
    """Who is asking: the address steering uses (may be None) and an optional device id."""

    ip: int | None = None
    family: int = 4
    uid: str | None = None

    @classmethod
    def of(cls, ip: str | None, uid: str | None = None) -> Client:
        """From an address literal (ValueError if malformed) and an optional device id."""
        if ip is None:
            return cls(None, 4, uid or None)
        value, family = parse_ip(ip)
        return cls(value, family, uid or None)

    @property
    def key(self) -> str:
        """The steering key (DESIGN §3.1): ``uid:<id>``, else ``4:<top 24 bits>`` or
        ``6:<top 56 bits>`` of the address as a decimal integer, else ``none``."""
        if self.uid:
            return "uid:" + self.uid
        if self.ip is None:
            return "none"
        return f"4:{self.ip >> 8}" if self.family == 4 else f"6:{self.ip >> 72}"

    @property
    def prefix_len(self) -> int:
        """The prefix length the key is built from (ECS scope); 0 for device ids."""
        if self.uid or self.ip is None:
            return 0
        return 24 if self.family == 4 else 56

    def address_text(self) -> str | None:
        """The client address as text, or None."""
        if self.ip is None:
            return None
        return str(
            ipaddress.ip_address(self.ip) if self.family == 4 else ipaddress.IPv6Address(self.ip)
        )


def _ancestors(name: str) -> list[str]:
    """``a.b.c`` -> ``["b.c", "c"]``."""
    parts = name.split(".")
    return [".".join(parts[i:]) for i in range(1, len(parts))]


class Regions:
    """Longest-prefix match of client addresses to region names ("default" if none)."""

    def __init__(self, regions: Iterable[Region]) -> None:
        self.names: list[str] = ["default"]
        self.index: dict[str, int] = {"default": 0}
        by_len: dict[tuple[int, int], dict[int, int]] = {}
        for region in sorted(regions, key=lambda r: r.name):
            idx = self.index.setdefault(region.name, len(self.names))
            if idx == len(self.names):
                self.names.append(region.name)
            for text in region.cidrs:
                net = ipaddress.ip_network(text)
                bits = net.max_prefixlen
                shift = bits - net.prefixlen
                by_len.setdefault((net.version, net.prefixlen), {})[
                    int(net.network_address) >> shift
                ] = idx
        self._v4 = [
            (32 - plen, m)
            for (fam, plen), m in sorted(by_len.items(), key=lambda x: -x[0][1])
            if fam == 4
        ]
        self._v6 = [
            (128 - plen, m)
            for (fam, plen), m in sorted(by_len.items(), key=lambda x: -x[0][1])
            if fam == 6
        ]

    def match(self, ip: int | None, family: int) -> int:
        """Index (into ``names``) of the region with the longest matching prefix."""
        if ip is None:
            return 0
        for shift, nets in self._v4 if family == 4 else self._v6:
            idx = nets.get(ip >> shift)
            if idx is not None:
                return idx
        return 0


class _Services(Mapping[str, CompiledService]):
    """The served services, compiled on access (``RoutingTable.services``)."""

    __slots__ = ("_table",)

    def __init__(self, table: RoutingTable) -> None:
        self._table = table

    def __getitem__(self, name: str) -> CompiledService:
        svc = self._table.compiled(name)
        if svc is None:
            raise KeyError(name)
        return svc

    def __iter__(self) -> Iterator[str]:
        return iter(self._table.snapshot.services)

    def __len__(self) -> int:
        return len(self._table.snapshot.services)

    def __contains__(self, name: object) -> bool:
        return name in self._table.snapshot.services


class RoutingTable:
    """All services, compiled for queries on first use, with per-bucket answer caches."""

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        max_cached: int = MAX_DECISIONS,
        max_map_bytes: int = MAX_MAP_BYTES,
        hot_misses: int | None = HOT_MISSES,
    ) -> None:
        """``hot_misses`` None: never build bucket maps (every decision by ``decide``)."""
        self.max_cached = max_cached
        self.hot_misses = hot_misses
        # (name, region/family) -> its map, or None: not worth one (too many choices)
        self._maps: BoundedCache[tuple[str, int], tuple[CompiledService, BucketMap | None]] = (
            BoundedCache(1 << 20, max_map_bytes)
        )
        self._heat: BoundedCache[tuple[str, int], int] = BoundedCache(100_000)
        # maps being built, a slice per miss: (name, region/family) -> (service, steps)
        self._building: dict[
            tuple[str, int], tuple[CompiledService, Generator[None, None, BucketMap | None]]
        ] = {}
        self.maps_built = 0
        self._buckets: BoundedCache[int | str, int] = BoundedCache(MAX_BUCKET_MEMO)
        # The compile's serial << 40 | region/family << 16 | bucket -> the choice's number in
        # ``CompiledService.intern`` (a small int: no allocation) or, past the interning
        # bounds, the choice itself. A new compile has a new serial: stale keys never hit,
        # they age out. One int key: ~90 bytes an entry (a (name, int) key cost ~225).
        self._decisions: BoundedCache[int, int | Choice] = BoundedCache(max_cached)
        self._interned = 0  # numbered choices of the compiled services (MAX_INTERNED_TOTAL)
        # Why the table holds no registry at all (the node started from nothing), or None:
        # then no name is "not served", every query fails (503, SERVFAIL) so that clients
        # ask another node rather than cache an empty answer.
        self.unavailable: str | None = None
        self._rebuild(snapshot)

    # -- building -----------------------------------------------------------

    def _rebuild(self, snap: Snapshot) -> None:
        self._ancestors: Counter[str] = Counter(a for n in snap.services for a in _ancestors(n))
        regions = Regions(snap.regions.values())
        # One assignment each: a query sees either the old table or the new one; every
        # service is compiled again on its next query. ``by_name`` (the services compiled
        # so far) is public for the hot paths: a kept answer is current while its service
        # is the very object found here.
        compiled: dict[str, CompiledService] = {}
        self.snapshot, self.regions, self.by_name = snap, regions, compiled
        # the last moves by ``update``: (the revision moved from, services changed), oldest
        # first, for looks that follow the table (``changed_since``); revisions, not the
        # snapshots, which would keep old registries alive
        self._moves: deque[tuple[int, frozenset[str]]] = deque(maxlen=MAX_MOVES)
        self.revision = snap.revision
        self._interned = 0
        self._decisions.clear()
        self._maps.clear()
        self._heat.clear()
        self._building.clear()

    @property
    def services(self) -> Mapping[str, CompiledService]:
        """Every served service by name, compiled on access (a read-only view)."""
        return _Services(self)

    def compiled(self, name: str) -> CompiledService | None:
        """The compiled ``name`` (compiling it now if it has not been), None if not served."""
        svc = self.by_name.get(name)
        if svc is None and name in self.snapshot.services:
            svc = self.by_name[name] = self._compile(self.snapshot, name)
        return svc

    def peek(self, name: str) -> CompiledService | None:
        """The compiled ``name`` if it has been compiled (never compiles)."""
        return self.by_name.get(name)

    def compile_detached(self, name: str) -> CompiledService:
        """``name`` compiled for a look (health, impact), not kept in the table."""
        return self._compile(self.snapshot, name)

    @staticmethod
    def _compile(snap: Snapshot, name: str) -> CompiledService:
        return compile_service(
            snap.services[name],
            snap.endpoints_of(name).values(),
            snap.releases.get(name),
            snap.datacenters,
        )

    def update(self, snapshot: Snapshot, services: frozenset[str] | None) -> None:
        """Move to ``snapshot``; recompile only ``services`` (None = everything)."""
        if services is None:
            self._rebuild(snapshot)
            return
        # what this move changed, for looks that follow the table (``impact.answering_empty``)
        self._moves.append((self.snapshot.revision, services))
        compiled, served = self.by_name, self.snapshot.services
        for name in services:
            was, now = name in served, name in snapshot.services
            # a compiled (asked-for) service is recompiled now, the others on first use
            old = compiled.pop(name, None)
            if old is not None:
                self._interned -= len(old.seen_list)
            if now and old is not None:
                compiled[name] = self._compile(snapshot, name)
            if now and not was:
                self._ancestors.update(_ancestors(name))
            elif was and not now:
                self._ancestors.subtract(_ancestors(name))
        self.snapshot = snapshot
        self.revision = snapshot.revision

    def changed_since(self, revision: int) -> frozenset[str] | None:
        """The services changed since the table was at ``revision``, when it moved from
        there to its current snapshot by changes it still remembers (the last
        ``MAX_MOVES``), else None (older, unknown, or a rebuild since). A look that last
        saw that revision then looks at those alone: several changes between two looks (a
        burst, at 100,000 services) used to send it back through every service."""
        names: set[str] = set()
        for before, services in reversed(self._moves):
            names.update(services)
            if before == revision:
                return frozenset(names)
        return None

    def sync_to(self, snapshot: Snapshot) -> None:
        """Move to an unrelated snapshot (a reload), recompiling only services that differ."""
        old = self.snapshot
        if old.datacenters != snapshot.datacenters or old.regions != snapshot.regions:
            self._rebuild(snapshot)
            return
        names = set(old.services) | set(snapshot.services)
        changed = frozenset(
            n
            for n in names
            if old.services.get(n) != snapshot.services.get(n)
            or old.releases.get(n) != snapshot.releases.get(n)
            or old.endpoints_of(n) != snapshot.endpoints_of(n)
        )
        self.update(snapshot, changed)

    # -- querying -----------------------------------------------------------

    def bucket(self, client: Client) -> int:
        """The client's bucket, memoised (hashing is the dominant per-query cost)."""
        memo: int | str
        if client.uid:
            memo = client.uid
        elif client.ip is None:
            memo = -1
        else:
            memo = client.ip >> 8 if client.family == 4 else (client.ip >> 72) + (1 << 56)
        b = self._buckets.get(memo)
        if b is None:
            b = bucket_of(client.key)
            self._buckets.put(memo, b)
        return b

    def resolve(
        self, name: str, qtype: int, client: Client, deps: Deps | None = None
    ) -> Choice | None:
        """Addresses for ``name`` (lower-case, no trailing dot); None if not served.

        With ``deps``, appends (name, the compiled service or None) to it: what an
        answer built from this decision depends on (see ``still_valid``).
        """
        svc = self.by_name.get(name) or self.compiled(name)
        if deps is not None:
            deps.append((name, svc))
        if svc is None:
            if self.unavailable is not None:
                raise NoRegistry(self.unavailable)
            return None
        family = _FAMILY[qtype]
        region = self.regions.match(client.ip, client.family)
        b = self.bucket(client)
        rf = (region << 1) | (family == 6)
        mapped = self._maps.get((name, rf))
        if mapped is not None and mapped[0] is svc and mapped[1] is not None:
            m = mapped[1]
            if m.packed:
                return m.choices[(m.index[b >> 1] >> ((b & 1) << 2)) & 15]
            return m.choices[m.index[b]]
        key = (svc.serial << 40) | (rf << 16) | b
        hit = self._decisions.get(key)
        if hit is not None:
            if type(hit) is int:
                return svc.seen_list[hit]
            return hit  # type: ignore[return-value]
        if self.hot_misses is not None and (mapped is None or mapped[0] is not svc):
            built = self._grow(name, rf, svc, mapped is not None)
            if built is not None:
                return built.choice(b)
        choice = decide(svc, family, self.regions.names[region], b)
        seen = svc.seen_list
        if self._interned < MAX_INTERNED_TOTAL:
            known = len(seen)
            n = svc.intern(choice)
            self._interned += len(seen) - known
        else:
            n = svc.seen.get(choice, -1)
        if n >= 0:
            self._decisions.put(key, n)
            return seen[n]  # the numbered one: equal choices are one object
        self._decisions.put(key, choice)
        return choice

    def mapped(self, name: str, qtype: int, ip: int, family: int, b: int) -> Choice | None:
        """``resolve(name, qtype, client at ip)`` when a current bucket map decides it, else
        None (no map yet, a stale one, a name not compiled or not served): then ``resolve``
        decides, counts the miss and grows the map. For front ends' miss lanes: a plain
        address client (no device id) whose bucket ``b`` the caller has already
        (``plainget.scan_query``), nothing allocated, nothing counted."""
        svc = self.by_name.get(name)
        if svc is None:
            return None
        region = 0  # Regions.match, inlined (a call is a tenth of this path)
        for shift, nets in self.regions._v4 if family == 4 else self.regions._v6:
            idx = nets.get(ip >> shift)
            if idx is not None:
                region = idx
                break
        mapped = self._maps.get((name, (region << 1) | (qtype == AAAA)))
        if mapped is None or mapped[0] is not svc:
            return None
        m = mapped[1]
        if m is None:
            return None
        if m.packed:
            return m.choices[(m.index[b >> 1] >> ((b & 1) << 2)) & 15]
        return m.choices[m.index[b]]

    def _grow(self, name: str, rf: int, svc: CompiledService, stale: bool) -> BucketMap | None:
        """On a miss of (``name``, ``rf``): count it, start its map when it turns hot (a
        stale map, whose service changed, was hot: at once), and take one step of one
        map being built — this key's, else the oldest. A whole map at once would stall
        the loop for 10+ ms; a step is a slice. The map of this key, once it is done."""
        key = (name, rf)
        building, hot = self._building, self.hot_misses
        assert hot is not None
        job = building.get(key)
        if job is None or job[0] is not svc:
            heat = hot if stale else self._heat.get(key) or 0
            if heat + 1 < hot:
                self._heat.put(key, heat + 1)
            elif job is not None or len(building) < MAX_BUILDING:
                family, region = 6 if rf & 1 else 4, self.regions.names[rf >> 1]
                job = building[key] = (svc, bucketmap.steps(svc, family, region))
            else:
                self._heat.put(key, heat)  # hot: it starts when a build finishes
        if job is None or job[0] is not svc:
            if not building:
                return None
            key = next(iter(building))  # one step of the oldest build instead
            job = building[key]
        try:
            next(job[1])
            return None
        except StopIteration as done:
            m: BucketMap | None = done.value
        del building[key]
        self._heat.pop(key)
        if self.by_name.get(key[0]) is not job[0]:
            return None  # its service changed meanwhile: dropped
        self._maps.put(key, (job[0], m), m.nbytes if m is not None else 64)
        self.maps_built += 1
        return m if key == (name, rf) else None

    def bucket_map(self, name: str, qtype: int, region: str) -> BucketMap | None:
        """The current bucket map of (``name``, ``qtype``, ``region``), if one is kept."""
        svc = self.services.get(name)
        idx = self.regions.index.get(region)
        if svc is None or idx is None:
            return None
        mapped = self._maps.get((name, (idx << 1) | (_FAMILY[qtype] == 6)))
        return mapped[1] if mapped is not None and mapped[0] is svc else None

    def has_descendants(self, name: str) -> bool:
        """Whether a served name lies below ``name`` (an empty non-terminal when unserved)."""
        return self._ancestors[name] > 0

    def still_valid(self, deps: Iterable[tuple[str, object]]) -> bool:
        """Whether an answer computed from ``deps`` (see ``resolve``) is still current."""
        compiled = self.by_name
        for name, svc in deps:
            got = compiled.get(name)
            if got is not svc:
                return False
            # not compiled: valid only while still not served (a lazy compile is pending)
            if got is None and name in self.snapshot.services:
                return False
        return True

    def cached_decisions(self, name: str) -> dict[int, Choice]:
        """The decisions cached for ``name`` that are still current (tests, debugging)."""
        svc = self.services.get(name)
        out: dict[int, Choice] = {}
        if svc is None:
            return out
        for key, value in self._decisions.items():
            if key >> 40 == svc.serial:
                out[key & 0xFFFFFFFFFF] = svc.seen_list[value] if isinstance(value, int) else value
        return out

    def explain(self, name: str, qtype: int, client: Client) -> dict[str, Any] | None:
        """The full decision trace for one query; None if the name is not served."""
        svc = self.services.get(name)
        if svc is None:
            return None
        region = self.regions.names[self.regions.match(client.ip, client.family)]
        b = self.bucket(client)
        trace: list[dict[str, Any]] = []
        choice = decide(svc, _FAMILY[qtype], region, b, trace)
        return {
            "name": name,
            "type": "AAAA" if qtype == AAAA else "A",
            "revision": self.revision,
            "client": {
                "ip": client.address_text(),
                "uid": client.uid,
                "key": client.key,
                "bucket": b,
            },
            "region": region,
            "answer": list(choice.addresses),
            "ttl": choice.ttl,
            "datacenter": choice.dc,
            "version": choice.version,
            "cohort": choice.cohort,
            "status": choice.status,
            "trace": trace,
        }

    def stats(self) -> Mapping[str, int]:
        """Sizes for health and metrics."""
        return {
            "services": len(self.snapshot.services),
            "compiled": len(self.by_name),
            "cached_answers": len(self._decisions),
            "bucket_maps": len(self._maps),
            "bucket_map_bytes": self._maps.bytes,
            "bucket_maps_building": len(self._building),
            "revision": self.revision,
        }
