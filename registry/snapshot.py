"""An immutable view of the whole registry at one revision, and how changes apply to it.

``Snapshot.apply`` is pure: it returns a new snapshot (sharing what did not
change) or raises without touching the old one, so a store can validate a
batch completely before it writes anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from itertools import islice
from sys import intern
from types import MappingProxyType
from typing import Any, Generic, TypeVar

import orjson

from .changes import _LOADERS, Change
from .digest import RunningDigest, field_name, split_field
from .errors import InUseError, NotFoundError, ValidationError
from .lazy import LazyRecords
from .model import (
    Allocation,
    Datacenter,
    Endpoint,
    Heartbeat,
    Region,
    Release,
    Rollout,
    Service,
    Zone,
)

try:
    from . import _rowhash
except ImportError:  # not built (no compiler or no OpenSSL headers): the Python loop
    _rowhash = None  # type: ignore[assignment]

T = TypeVar("T")


def _plain(value: Any) -> Any:
    if type(value) is MappingProxyType:  # first: a record's read-only fields, by the 100,000
        return dict(value)
    if isinstance(value, LazyRecords):
        # raw records written as read (never decoded for a save)
        return {key: _fragment(raw) for key, raw in value.raw_items()}
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _fragment(raw: Any) -> Any:
    """A raw record as JSON to embed as it is: a service's or release's object, a list of
    a service's endpoint objects; a decoded record as it is (orjson serialises it)."""
    if type(raw) is bytes:
        return orjson.Fragment(raw)
    if type(raw) is list:
        return orjson.Fragment(b"[" + b",".join(raw) + b"]")
    return raw


DUMP_CHUNK = 500  # records serialised in one C call by ``Snapshot.dump_json_parts``
_TABLES = ("datacenters", "regions", "services", "endpoints", "releases", "rollouts",
           "allocations", "heartbeats", "zones")  # fmt: skip


class _Cow(Generic[T]):
    """A mapping copied on first write (a lazily decoded one stays lazy: its copy
    decodes nothing)."""

    __slots__ = ("_own", "current")

    def __init__(self, base: Mapping[str, T]) -> None:
        self.current = base
        self._own: MutableMapping[str, T] | None = None

    def mutable(self) -> MutableMapping[str, T]:
        if self._own is None:
            base = self.current
            self._own = base.copy() if isinstance(base, LazyRecords) else dict(base)
            self.current = self._own
        return self._own


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The registry at ``revision``. Treat every mapping as read-only."""

    revision: int = 0
    datacenters: Mapping[str, Datacenter] = field(default_factory=dict)
    regions: Mapping[str, Region] = field(default_factory=dict)
    services: Mapping[str, Service] = field(default_factory=dict)
    endpoints: Mapping[str, Mapping[str, Endpoint]] = field(default_factory=dict)
    releases: Mapping[str, Release] = field(default_factory=dict)
    rollouts: Mapping[str, Rollout] = field(default_factory=dict)  # by "service/id"
    allocations: Mapping[str, Allocation] = field(default_factory=dict)  # by "dc/address"
    heartbeats: Mapping[str, Heartbeat] = field(default_factory=dict)  # old controllers'
    zones: Mapping[str, Zone] = field(default_factory=dict)

    def endpoints_of(self, service: str) -> Mapping[str, Endpoint]:
        """Endpoints of ``service`` by id (empty when none)."""
        return self.endpoints.get(service, {})

    def rollouts_of(self, service: str) -> list[Rollout]:
        """Rollouts of ``service``, oldest first (by creation time, then id: "r9" < "r10")."""
        found = [r for r in self.rollouts.values() if r.service == service]
        return sorted(found, key=lambda r: (r.created, len(r.id), r.id))

    def apply(
        self, changes: Iterable[Change], revision: int
    ) -> tuple[Snapshot, tuple[Change, ...]]:
        """Apply ``changes`` in order and check references.

        Returns the new snapshot and the effective changes (a service delete
        expands into deletes of its endpoints and release). Raises
        ValidationError, NotFoundError or InUseError and changes nothing.
        """
        # Copy-on-write: a table is copied only when the batch touches it, so a
        # one-service change does not copy the other tables (10,000 entries each).
        tables: dict[str, _Cow[Any]] = {
            "datacenter": _Cow(self.datacenters),
            "region": _Cow(self.regions),
            "service": _Cow(self.services),
            "release": _Cow(self.releases),
            "rollout": _Cow(self.rollouts),
            "allocation": _Cow(self.allocations),
            "heartbeat": _Cow(self.heartbeats),
            "zone": _Cow(self.zones),
        }
        eps_cow: _Cow[Mapping[str, Endpoint]] = _Cow(self.endpoints)
        copied: set[str] = set()  # services whose endpoint map is already a private copy
        effective: list[Change] = []

        def own_endpoints(svc: str) -> dict[str, Endpoint]:
            endpoints = eps_cow.mutable()
            if svc not in copied:
                endpoints[svc] = dict(endpoints.get(svc) or {})
                copied.add(svc)
            return endpoints[svc]  # type: ignore[return-value]

        # Every effective change carries the record it replaces (``before``): the audit log
        # then says what a change undid, and ``revert`` can restore it, on every store.
        for change in changes:
            if change.kind == "endpoint":
                svc, _, eid = change.key.partition("/")
                eps = own_endpoints(svc)
                if change.op == "put":
                    before = eps.get(eid)
                    eps[eid] = change.value  # type: ignore[assignment]
                else:
                    before = eps.pop(eid, None)
                    if before is None:
                        raise NotFoundError(f"endpoint {eid!r} of service {svc!r} does not exist")
                effective.append(change.with_before(before))
                continue
            if change.kind == "allocation" and change.op == "put":
                held = tables["allocation"].current.get(change.key)
                if held is not None and held.owner != change.value.owner:  # type: ignore[union-attr]
                    raise InUseError(f"address {change.key} is already allocated to {held.owner}")
            table = tables[change.kind].mutable()
            if change.op == "put":
                before = table.get(change.key)
                table[change.key] = change.value
            else:
                before = table.pop(change.key, None)
                if before is None:
                    raise NotFoundError(f"{change.kind} {change.key!r} does not exist")
                if change.kind == "service":
                    if change.key in eps_cow.current:
                        eps = own_endpoints(change.key)
                        for eid in sorted(eps):
                            gone = Change.delete("endpoint", f"{change.key}/{eid}")
                            effective.append(gone.named(change.verb).with_before(eps[eid]))
                        eps_cow.mutable().pop(change.key, None)
                    copied.discard(change.key)
                    if change.key in tables["release"].current:
                        rel = tables["release"].mutable().pop(change.key)
                        gone = Change.delete("release", change.key)
                        effective.append(gone.named(change.verb).with_before(rel))
            effective.append(change.with_before(before))

        if copied:
            endpoints = eps_cow.mutable()
            for svc in copied:
                if not endpoints.get(svc):
                    endpoints.pop(svc, None)
        new = Snapshot(
            revision,
            tables["datacenter"].current,
            tables["region"].current,
            tables["service"].current,
            eps_cow.current,
            tables["release"].current,
            tables["rollout"].current,
            tables["allocation"].current,
            tables["heartbeat"].current,
            tables["zone"].current,
        )
        new._check_references(effective)
        return new, tuple(effective)

    def _check_references(self, changes: Iterable[Change]) -> None:
        """Every reference from a changed record, and to a deleted one, must resolve."""
        for c in changes:
            if c.op == "put":
                if isinstance(c.value, Endpoint):
                    if c.value.service not in self.services:
                        raise NotFoundError(f"service {c.value.service!r} does not exist")
                    if c.value.dc not in self.datacenters:
                        raise ValidationError("dc", f"datacenter {c.value.dc!r} does not exist")
                elif isinstance(c.value, Release):
                    if c.value.service not in self.services:
                        raise NotFoundError(f"service {c.value.service!r} does not exist")
                elif isinstance(c.value, Service):
                    self._check_traffic(c.value)
                elif isinstance(c.value, Region):
                    self._check_cidrs(c.value)
                elif isinstance(c.value, Allocation) and c.value.dc not in self.datacenters:
                    raise ValidationError("dc", f"datacenter {c.value.dc!r} does not exist")
            elif c.kind == "datacenter":
                users = self._users_of_datacenter(c.key)
                if users:
                    raise InUseError(
                        f"datacenter {c.key!r} is still used by {', '.join(users[:5])}"
                    )
            elif c.kind == "region":
                users = [s.name for s in self.services.values() if c.key in s.traffic]
                if users:
                    raise InUseError(
                        f"region {c.key!r} still has traffic tables in {', '.join(users[:5])}"
                    )

    def _check_cidrs(self, region: Region) -> None:
        for other in self.regions.values():
            if other.name == region.name:
                continue
            for cidr in region.cidrs:
                if cidr in other.cidrs:
                    raise ValidationError(
                        "cidrs", f"{cidr} already belongs to region {other.name!r}"
                    )

    def _check_traffic(self, service: Service) -> None:
        for region, table in service.traffic.items():
            if region != "default" and region not in self.regions:
                raise ValidationError(f"traffic.{region}", f"region {region!r} does not exist")
            for dc in table:
                if dc not in self.datacenters:
                    raise ValidationError(
                        f"traffic.{region}.{dc}", f"datacenter {dc!r} does not exist"
                    )

    def _users_of_datacenter(self, dc: str) -> list[str]:
        users = [f"service {s.name}" for s in self.services.values()
                 if any(dc in t for t in s.traffic.values())]  # fmt: skip
        for svc, eps in self.endpoints.items():
            if any(e.dc == dc for e in eps.values()):
                users.append(f"endpoints of {svc}")
        if any(a.dc == dc for a in self.allocations.values()):
            users.append("address allocations")
        return users

    def to_dict(self) -> dict[str, Any]:
        """The whole registry as JSON (admin ``GET /state``, node snapshots)."""
        return {
            "revision": self.revision,
            "datacenters": {k: d.to_dict() for k, d in sorted(self.datacenters.items())},
            "regions": {k: r.to_dict() for k, r in sorted(self.regions.items())},
            "services": {
                name: {
                    **s.to_dict(),
                    "release": self.releases[name].to_dict() if name in self.releases else None,
                    "endpoints": {
                        eid: e.to_dict() for eid, e in sorted(self.endpoints_of(name).items())
                    },
                }
                for name, s in sorted(self.services.items())
            },
            "rollouts": {k: r.to_dict() for k, r in sorted(self.rollouts.items())},
            "allocations": {k: a.to_dict() for k, a in sorted(self.allocations.items())},
            "heartbeats": {k: h.to_dict() for k, h in sorted(self.heartbeats.items())},
            "zones": {k: z.to_dict() for k, z in sorted(self.zones.items())},
        }

    @classmethod
    def from_records(cls, revision: int, records: Iterable[tuple[str, str, bytes]]) -> Snapshot:
        """Rebuild from a store's ``(kind, key, record JSON)`` rows (trusted)."""
        tables: dict[str, dict[str, Any]] = {k: {} for k in _LOADERS}
        for kind, key, value in records:
            tables[kind][key] = _LOADERS[kind](orjson.loads(value))
        return cls._from_tables(revision, tables)

    @classmethod
    def decode_records(
        cls, revision: int, records: Iterable[tuple[str, str, bytes]]
    ) -> tuple[Snapshot, list[str]]:
        """Like ``from_records`` for rows that may be damaged: the snapshot of the rows that
        decode, and ``kind/key`` of those that do not (bad JSON, unknown kind, bad record)."""
        decoder = RecordsDecoder()
        for kind, key, value in records:
            decoder.add(kind, key, value)
        return decoder.result(revision)

    @classmethod
    def _from_tables(cls, revision: int, tables: dict[str, dict[str, Any]]) -> Snapshot:
        endpoints: dict[str, dict[str, Any]] = {}
        for key, ep in tables["endpoint"].items():
            svc, _, eid = key.partition("/")
            # the loaded record's interned strings: one copy of each name, not one per key
            endpoints.setdefault(intern(svc), {})[intern(eid)] = ep
        return cls(
            revision,
            tables["datacenter"],
            tables["region"],
            tables["service"],
            endpoints,
            tables["release"],
            tables["rollout"],
            tables["allocation"],
            tables["heartbeat"],
            tables["zone"],
        )

    def dump_json(self) -> bytes:
        """The whole snapshot as compact JSON, serialised in C (fast enough for 10,000
        services on every save); read back with ``load_json``."""
        return b"".join(self.dump_json_parts())

    def dump_json_parts(self, chunk: int = DUMP_CHUNK) -> Iterator[bytes]:
        """``dump_json`` in pieces of at most ``chunk`` records each, to write one after
        the other: serialising 100,000 services in one C call holds the GIL for a second
        or more, and a node saves its snapshot on a thread beside its event loop."""
        yield b'{"revision":%d' % self.revision
        for name in _TABLES:
            table: Mapping[str, Any] = getattr(self, name)
            yield b',"%s":{' % name.encode()
            items = iter(table.raw_items() if isinstance(table, LazyRecords) else table.items())
            sep = b""
            while True:
                part = {key: _fragment(raw) for key, raw in islice(items, chunk)}
                if not part:
                    break
                yield sep + orjson.dumps(part, default=_plain)[1:-1]
                sep = b","
            yield b"}"
        yield b"}"

    @classmethod
    def load_json(cls, raw: bytes) -> Snapshot:
        """Rebuild from ``dump_json`` output (trusted)."""
        d = orjson.loads(raw)
        return cls(
            d["revision"],
            {k: Datacenter.load(x) for k, x in d["datacenters"].items()},
            {k: Region.load(x) for k, x in d["regions"].items()},
            {k: Service.load(x) for k, x in d["services"].items()},
            {intern(s): _endpoints_json(eps) for s, eps in d["endpoints"].items()},
            {k: Release.load(x) for k, x in d["releases"].items()},
            {k: Rollout.load(x) for k, x in d.get("rollouts", {}).items()},
            {k: Allocation.load(x) for k, x in d.get("allocations", {}).items()},
            {k: Heartbeat.load(x) for k, x in d.get("heartbeats", {}).items()},
            {k: Zone.load(x) for k, x in d.get("zones", {}).items()},
        )

    @classmethod
    def load(cls, d: Mapping[str, Any]) -> Snapshot:
        """Rebuild from ``to_dict`` output (trusted)."""
        services, endpoints, releases = {}, {}, {}
        for name, s in d["services"].items():
            services[name] = Service.load(s)
            if s.get("release"):
                releases[name] = Release.load(s["release"])
            if s.get("endpoints"):
                endpoints[name] = {eid: Endpoint.load(e) for eid, e in s["endpoints"].items()}
        return cls(
            d["revision"],
            {k: Datacenter.load(x) for k, x in d["datacenters"].items()},
            {k: Region.load(x) for k, x in d["regions"].items()},
            services,
            endpoints,
            releases,
            {k: Rollout.load(x) for k, x in d.get("rollouts", {}).items()},
            {k: Allocation.load(x) for k, x in d.get("allocations", {}).items()},
            {k: Heartbeat.load(x) for k, x in d.get("heartbeats", {}).items()},
            {k: Zone.load(x) for k, x in d.get("zones", {}).items()},
        )


# -- revert and declarative apply ----------------------------------------------------------------

# The kinds ``diff`` compares: the records operators write. Rollouts and allocations are the
# deployer's own bookkeeping, left as they are by a revert or an apply.
ROUTED_KINDS: tuple[str, ...] = ("datacenter", "region", "zone", "service", "release", "endpoint")


def _records(snap: Snapshot, kind: str) -> Mapping[str, Any]:
    if kind == "endpoint":
        return {e.key: e for eps in snap.endpoints.values() for e in eps.values()}
    return {
        "datacenter": snap.datacenters,
        "region": snap.regions,
        "zone": snap.zones,
        "service": snap.services,
        "release": snap.releases,
    }[kind]


def undo(snap: Snapshot, entries: Iterable[Any]) -> Snapshot:
    """The registry as it was before the batches ``entries`` (ChangeSets, oldest first,
    the last one being ``snap``'s): each change undone, newest first, from its ``before``.

    Raises ValidationError when an entry predates recorded ``before`` values.
    """
    for cs in reversed(list(entries)):
        back = []
        for c in reversed(cs.changes):
            if not c.known:
                raise ValidationError(
                    "to", f"revision {cs.revision} was written without its previous values"
                )
            back.append(Change("delete", c.kind, c.key) if c.before is None else
                        Change("put", c.kind, c.key, c.before))  # fmt: skip
        # Undoing a batch in reverse order passes through consistent states only; the
        # expansion of a service delete was recorded, so a restored service gets its
        # endpoints back from the changes that follow it here.
        snap, _ = snap.apply(_without_expanded(back), cs.revision - 1)
    return snap


def _without_expanded(changes: list[Change]) -> list[Change]:
    """Drop endpoint/release deletes a service delete in the same list already implies."""
    gone = {c.key for c in changes if c.kind == "service" and c.op == "delete"}
    return [
        c for c in changes
        if not (c.op == "delete" and c.kind in ("endpoint", "release")
                and (c.key.split("/", 1)[0] in gone))
    ]  # fmt: skip


def diff(current: Snapshot, target: Snapshot) -> list[Change]:
    """The changes that turn ``current`` into ``target`` (operators' records only), in an
    order ``Snapshot.apply`` accepts: deletes of endpoints and releases, of services, then
    every put, then deletes of regions and datacenters."""
    first: list[Change] = []
    services: list[Change] = []
    puts: list[Change] = []
    last: list[Change] = []
    dropped = set(current.services) - set(target.services)
    for kind in ROUTED_KINDS:
        now, want = _records(current, kind), _records(target, kind)
        for key in sorted(set(now) | set(want)):
            old, new = now.get(key), want.get(key)
            if new is None:
                if kind in ("endpoint", "release") and key.split("/", 1)[0] in dropped:
                    continue  # the service delete takes them along
                change = Change("delete", kind, key)  # type: ignore[arg-type]
                bucket = {"endpoint": first, "release": first, "service": services}.get(kind, last)
                bucket.append(change)
            elif old != new:
                puts.append(Change.put(new))
    return [*first, *services, *puts, *last]


def declared(current: Snapshot, body: Any, *, prune: bool = False) -> Snapshot:
    """The registry ``body`` declares, applied over ``current``: ``datacenters``,
    ``regions`` and ``services`` (each with optional ``endpoints`` and ``release``) in
    the admin API's body shapes. With ``prune`` every operator record the body does not
    name is deleted (a service named without ``endpoints`` keeps none). Raises
    ValidationError naming the bad field."""
    if not isinstance(body, Mapping):
        raise ValidationError("body", "must be an object of datacenters, regions, services")
    names = ("datacenters", "regions", "zones", "services")
    unknown = sorted(set(body) - set(names))
    if unknown:
        raise ValidationError(unknown[0], f"unknown section ({', '.join(names)})")
    sections = {k: body.get(k) or {} for k in names}
    for name, value in sections.items():
        if not isinstance(value, Mapping):
            raise ValidationError(name, "must be an object of name -> record")
    changes: list[Change] = []
    for name, d in sections["datacenters"].items():
        changes.append(Change.put(Datacenter.from_dict(name, d)))
    for name, d in sections["regions"].items():
        changes.append(Change.put(Region.from_dict(name, d)))
    for name, d in sections["zones"].items():
        changes.append(Change.put(Zone.from_dict(name, d)))
    named_eps: set[str] = set()
    named_rel: set[str] = set()
    for name, d in sections["services"].items():
        if not isinstance(d, Mapping):
            raise ValidationError(f"services.{name}", "must be an object")
        fields = {k: v for k, v in d.items() if k not in ("endpoints", "release")}
        svc = Service.from_dict(name, fields)
        changes.append(Change.put(svc))
        eps = d.get("endpoints") or {}
        if not isinstance(eps, Mapping):
            raise ValidationError(
                f"services.{name}.endpoints", "must be an object of id -> endpoint"
            )
        for eid, e in eps.items():
            ep = Endpoint.from_dict(svc.name, eid, e)
            changes.append(Change.put(ep))
            named_eps.add(ep.key)
        if d.get("release") is not None:
            changes.append(Change.put(Release.from_dict(svc.name, d["release"])))
            named_rel.add(svc.name)
    target, _ = current.apply(changes, current.revision)
    if not prune:
        return target
    keep = {
        "datacenter": {c.key for c in changes if c.kind == "datacenter"},
        "region": {c.key for c in changes if c.kind == "region"},
        "zone": {c.key for c in changes if c.kind == "zone"},
        "service": {c.key for c in changes if c.kind == "service"},
        "release": named_rel,
        "endpoint": named_eps,
    }
    drop = [
        Change("delete", kind, key)  # type: ignore[arg-type]
        for kind in ROUTED_KINDS
        for key in sorted(_records(target, kind))
        if key not in keep[kind]
    ]
    pruned, _ = target.apply(_without_expanded(_ordered(drop)), current.revision)
    return pruned


def _ordered(deletes: list[Change]) -> list[Change]:
    """Deletes in an order ``apply`` accepts: endpoints and releases, services, the rest."""
    rank = {"endpoint": 0, "release": 0, "service": 1, "region": 2, "zone": 2, "datacenter": 2}
    return sorted(deletes, key=lambda c: rank[c.kind])


def _endpoints_json(eps: Any) -> dict[str, Endpoint]:
    """A service's endpoints in a ``dump_json`` file: id -> record, or a list of records
    (written as loaded, never decoded)."""
    if isinstance(eps, list):
        return {ep.id: ep for ep in map(Endpoint.load, eps)}
    return {intern(i): Endpoint.load(e) for i, e in eps.items()}


def _service(raw: bytes) -> Service:
    return Service.load(orjson.loads(raw))


def _release(raw: bytes) -> Release:
    return Release.load(orjson.loads(raw))


def _endpoints(raws: list[bytes]) -> dict[str, Endpoint]:
    eps = (Endpoint.load(orjson.loads(raw)) for raw in raws)
    return {ep.id: ep for ep in eps}  # ``load`` interned the ids


class RecordsDecoder:
    """Rows decoded one at a time, as a store streams them (Redis ``HSCAN`` batches):
    ``Snapshot.decode_records`` for a caller that cannot hand over one iterable.

    ``lazy``: services, their endpoints and releases are kept as read and decoded on
    first use (registry/lazy.py), the other kinds decoded now. Only for rows that match
    the digest the write path keeps (a load that can check it before it trusts them):
    an unreadable raw record is then not reported here but when it is first read.
    """

    __slots__ = ("_endpoints", "bad", "lazy", "tables")

    def __init__(self, *, lazy: bool = False) -> None:
        self.tables: dict[str, dict[str, Any]] = {k: {} for k in _LOADERS}
        self.bad: list[str] = []
        self.lazy = lazy
        self._endpoints: dict[str, list[bytes]] = {}  # lazy: service -> raw endpoints

    def add(self, kind: str, key: str, value: bytes) -> None:
        """Decode one row (or keep it raw, see ``lazy``); an unreadable one (bad JSON,
        unknown kind, bad record) is remembered as ``kind/key``, nothing else."""
        if self.lazy:
            if kind == "endpoint":
                svc = key.partition("/")[0]
                raws = self._endpoints.get(svc)
                if raws is None:
                    self._endpoints[intern(svc)] = [value]
                else:
                    raws.append(value)
                return
            if kind == "service" or kind == "release":
                self.tables[kind][intern(key)] = value
                return
        try:
            self.tables[kind][key] = _LOADERS[kind](orjson.loads(value))
        except Exception:  # any decoding failure makes the row unreadable, nothing else
            self.bad.append(f"{kind}/{key}")

    def add_hashed(self, rows: Iterable[tuple[str, str, bytes]], running: RunningDigest) -> None:
        """``add`` every row, and hash it into ``running`` first (a store's load: one
        pass over the rows as they stream). At 100,000 services this runs 600,000 times,
        the slowest part of a start: the kinds kept raw go through registry/_rowhash.c
        when it is built (the same result, several times faster)."""
        one = self._hashing(running)
        if self.lazy and _rowhash is not None:
            t = self.tables
            counted = _rowhash.take_rows(rows, self._endpoints, t["service"], t["release"], one)
            running.merge(*counted)
        else:
            for kind, key, value in rows:
                one(kind, key, value)

    def add_fields(self, flat: list[bytes], running: RunningDigest) -> None:
        """``add_hashed`` of records as a Redis ``HSCAN`` reply lists them: field, value,
        field, value..., each field ``b"kind\\x1fkey"``. A name is hashed as decoded: one
        that is not UTF-8 does not match the digest, and the store's atomic read decides."""
        one = self._hashing(running)

        def one_field(field: bytes, value: bytes) -> None:
            one(*split_field(field), value)

        if self.lazy and _rowhash is not None:
            t = self.tables
            counted = _rowhash.take_fields(
                flat, self._endpoints, t["service"], t["release"], one_field
            )
            running.merge(*counted)
        else:
            for i in range(0, len(flat) - 1, 2):
                one_field(flat[i], flat[i + 1])

    def _hashing(self, running: RunningDigest) -> Callable[[str, str, bytes], None]:
        """The definition for one row: hashed into ``running``, then ``add``."""

        def one(kind: str, key: str, value: bytes) -> None:
            running.add(field_name(kind, key), value)
            self.add(kind, key, value)

        return one

    def result(self, revision: int) -> tuple[Snapshot, list[str]]:
        """The snapshot of the rows that decoded, and the unreadable rows' names."""
        if not self.lazy:
            return Snapshot._from_tables(revision, self.tables), self.bad
        t = self.tables
        snap = Snapshot(
            revision,
            t["datacenter"],
            t["region"],
            LazyRecords(t["service"], bytes, _service, "service"),
            LazyRecords(self._endpoints, list, _endpoints, "endpoints of"),
            LazyRecords(t["release"], bytes, _release, "release"),
            t["rollout"],
            t["allocation"],
            t["heartbeat"],
            t["zone"],
        )
        return snap, self.bad
