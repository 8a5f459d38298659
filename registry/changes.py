"""Changes: the unit of every registry write, of the change feed and of the audit log."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .model import (
    Allocation,
    Datacenter,
    Endpoint,
    Heartbeat,
    Record,
    Region,
    Release,
    Rollout,
    Service,
    Zone,
)

Kind = Literal[
    "datacenter",
    "region",
    "service",
    "endpoint",
    "release",
    "rollout",
    "allocation",
    "heartbeat",
    "zone",
]
Op = Literal["put", "delete"]

_LOADERS: dict[str, Any] = {
    "datacenter": Datacenter.load,
    "region": Region.load,
    "service": Service.load,
    "endpoint": Endpoint.load,
    "release": Release.load,
    "rollout": Rollout.load,
    "allocation": Allocation.load,
    "heartbeat": Heartbeat.load,
    "zone": Zone.load,
}

# Kinds that never change an answer: the deployer's bookkeeping. A batch of them
# recompiles nothing (and never forces a rebuild of the whole routing table).
UNROUTED: frozenset[str] = frozenset({"rollout", "allocation", "heartbeat"})
# Kinds read from the snapshot at query time: they change answers but no compiled service.
UNCOMPILED: frozenset[str] = frozenset({"zone"})


@dataclass(frozen=True, slots=True)
class Change:
    """Put or delete one record.

    ``key`` is the record's name; for an endpoint or a rollout it is ``service/id``,
    for a release the service name, for an allocation ``dc/address``. ``value`` is the
    record after the change (None for a delete). ``before`` is the record as it was
    (None when it did not exist), filled in by ``Snapshot.apply`` so that every store
    keeps it in its audit log; ``verb`` names the operation (``shift``, ``drain``,
    ``set``...). Neither takes part in equality: they describe a change, not what it does.
    """

    op: Op
    kind: Kind
    key: str
    value: Record | None = None
    before: Record | None = field(default=None, compare=False)
    verb: str = field(default="", compare=False)
    # Whether ``before`` is known: entries written before it was recorded have none.
    known: bool = field(default=False, compare=False)

    @classmethod
    def put(cls, record: Record) -> Change:
        """A change that creates or replaces ``record``."""
        return cls("put", kind_of(record), key_of(record), record)

    @classmethod
    def delete(cls, kind: Kind, key: str) -> Change:
        """A change that removes the record ``kind``/``key``."""
        return cls("delete", kind, key, None)

    def named(self, verb: str) -> Change:
        """This change with its operation named (``shift``, ``drain``...) for the audit log."""
        # the constructor, not dataclasses.replace: ~10x cheaper, and a bulk apply names
        # and fills in hundreds of thousands of changes
        return Change(self.op, self.kind, self.key, self.value, self.before, verb, self.known)

    def with_before(self, before: Record | None) -> Change:
        """This change with the record it replaces (or None: it did not exist)."""
        return Change(self.op, self.kind, self.key, self.value, before, self.verb, True)

    @property
    def service(self) -> str | None:
        """The service this change touches, or None for datacenters, regions and allocations."""
        if self.kind in ("service", "release"):
            return self.key
        if self.kind in ("endpoint", "rollout"):
            return self.key.split("/", 1)[0]
        return None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (feed, audit log); ``before`` and ``verb`` only when known."""
        out: dict[str, Any] = {
            "op": self.op,
            "kind": self.kind,
            "key": self.key,
            "value": None if self.value is None else self.value.to_dict(),
        }
        if self.known:
            out["before"] = None if self.before is None else self.before.to_dict()
        if self.verb:
            out["verb"] = self.verb
        return out

    @classmethod
    def load(cls, d: Mapping[str, Any]) -> Change:
        """Rebuild from the store's JSON (trusted)."""
        value, before = d.get("value"), d.get("before")
        loader = _LOADERS[d["kind"]]
        return cls(
            d["op"],
            d["kind"],
            d["key"],
            None if value is None else loader(value),
            None if before is None else loader(before),
            d.get("verb", ""),
            "before" in d,
        )


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """One committed batch: the revision it produced, who made it and when."""

    revision: int
    changes: tuple[Change, ...]
    actor: str = "unknown"
    time: float = 0.0

    @property
    def services(self) -> frozenset[str] | None:
        """Services whose answers may change, or None when a datacenter or region changed
        (all affected). Rollouts and allocations change no answer and count for nothing;
        zones are read from the snapshot when answering, so they recompile nothing either."""
        out = set()
        for c in self.changes:
            if c.kind in UNROUTED or c.kind in UNCOMPILED:
                continue
            s = c.service
            if s is None:
                return None
            out.add(s)
        return frozenset(out)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (feed, audit log)."""
        return {
            "revision": self.revision,
            "actor": self.actor,
            "time": self.time,
            "changes": [c.to_dict() for c in self.changes],
        }

    @classmethod
    def load(cls, d: Mapping[str, Any]) -> ChangeSet:
        """Rebuild from the store's JSON (trusted)."""
        return cls(
            d["revision"], tuple(Change.load(c) for c in d["changes"]), d["actor"], d["time"]
        )


def kind_of(record: Record) -> Kind:
    """The change kind for a record."""
    if isinstance(record, Datacenter):
        return "datacenter"
    if isinstance(record, Region):
        return "region"
    if isinstance(record, Service):
        return "service"
    if isinstance(record, Endpoint):
        return "endpoint"
    if isinstance(record, Rollout):
        return "rollout"
    if isinstance(record, Allocation):
        return "allocation"
    if isinstance(record, Heartbeat):
        return "heartbeat"
    if isinstance(record, Zone):
        return "zone"
    return "release"


def key_of(record: Record) -> str:
    """The store key for a record."""
    if isinstance(record, Endpoint | Rollout | Allocation | Heartbeat):
        return record.key
    if isinstance(record, Release):
        return record.service
    return record.name
