"""The registry's records: datacenters, regions, services, endpoints, releases.

Records are immutable. ``from_dict`` validates untrusted input (an admin API
body, a CLI argument) and names the offending field; ``to_dict`` gives the JSON
form that the store keeps and the admin API returns; ``load`` rebuilds a record
from the store's own JSON without validating it again (start-up speed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal

from . import validation as v
from .errors import ValidationError

DatacenterKind = Literal["idc", "cloud"]
Access = Literal["rw", "ro"]
AllDown = Literal["fail-open", "fail-closed"]


def _frozen(record: object, name: str, value: Mapping[str, Any], depth: int = 1) -> None:
    """Store a read-only copy of a mapping field, so a shared record cannot change."""
    if depth > 1:
        value = {k: MappingProxyType(dict(v)) for k, v in value.items()}
    object.__setattr__(record, name, MappingProxyType(dict(value)))


def _body(kind: str, data: Any, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValidationError(kind, "body must be a JSON object")
    unknown = sorted(str(k) for k in set(data) - allowed)
    if unknown:
        raise ValidationError(unknown[0], f"unknown field for a {kind}")
    return data


@dataclass(frozen=True, slots=True)
class Datacenter:
    """A place that runs endpoints: the own datacenter (idc) or a cloud."""

    name: str
    kind: DatacenterKind = "idc"
    writable: bool = True
    drained: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)

    FIELDS: ClassVar[frozenset[str]] = frozenset({"kind", "writable", "drained", "labels"})

    def __post_init__(self) -> None:
        _frozen(self, "labels", self.labels)

    @classmethod
    def from_dict(cls, name: str, data: Any) -> Datacenter:
        """Validate an admin body for datacenter ``name``."""
        d = _body("datacenter", data, cls.FIELDS)
        return cls(
            name=v.identifier("name", name),
            kind=v.choice("kind", d.get("kind", "idc"), ("idc", "cloud")),  # type: ignore[arg-type]
            writable=v.boolean("writable", d.get("writable", True)),
            drained=v.boolean("drained", d.get("drained", False)),
            labels=v.labels("labels", d.get("labels")),
        )

    @classmethod
    def load(cls, d: Mapping[str, Any]) -> Datacenter:
        """Rebuild from the store's JSON (trusted)."""
        return cls(d["name"], d["kind"], d["writable"], d["drained"], d.get("labels", {}))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "name": self.name,
            "kind": self.kind,
            "writable": self.writable,
            "drained": self.drained,
            "labels": dict(self.labels),
        }


@dataclass(frozen=True, slots=True)
class Region:
    """A set of client networks; clients belong to the longest matching prefix."""

    name: str
    cidrs: tuple[str, ...] = ()

    FIELDS: ClassVar[frozenset[str]] = frozenset({"cidrs"})

    @classmethod
    def from_dict(cls, name: str, data: Any) -> Region:
        """Validate an admin body for region ``name``."""
        d = _body("region", data, cls.FIELDS)
        name = v.identifier("name", name)
        if name == "default":
            raise ValidationError("name", "'default' is implicit and matches every client")
        cidrs = d.get("cidrs", [])
        if not isinstance(cidrs, list):
            raise ValidationError("cidrs", "must be a list of CIDR strings")
        return cls(name, tuple(v.cidr(f"cidrs[{i}]", c) for i, c in enumerate(cidrs)))

    @classmethod
    def load(cls, d: Mapping[str, Any]) -> Region:
        """Rebuild from the store's JSON (trusted)."""
        return cls(d["name"], tuple(d["cidrs"]))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"name": self.name, "cidrs": list(self.cidrs)}


@dataclass(frozen=True, slots=True)
class Service:
    """A name that clients resolve, and how its traffic is split."""

    name: str
    traffic: Mapping[str, Mapping[str, int]]
    access: Access = "ro"
    ttl: int = 60
    answers: int = 2
    all_down: AllDown = "fail-open"

    FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"access", "ttl", "answers", "all_down", "traffic"}
    )

    def __post_init__(self) -> None:
        _frozen(self, "traffic", self.traffic, depth=2)

    @classmethod
    def from_dict(cls, name: str, data: Any) -> Service:
        """Validate an admin body for service ``name``."""
        d = _body("service", data, cls.FIELDS)
        if "traffic" not in d:
            raise ValidationError("traffic", "is required (at least a 'default' table)")
        return cls(
            name=v.dns_name("name", name),
            traffic=v.traffic("traffic", d["traffic"]),
            access=v.choice("access", d.get("access", "ro"), ("rw", "ro")),  # type: ignore[arg-type]
            ttl=v.integer("ttl", d.get("ttl", 60), 0, v.MAX_TTL),
            answers=v.integer("answers", d.get("answers", 2), 1, 64),
            all_down=v.choice(  # type: ignore[arg-type]
                "all_down", d.get("all_down", "fail-open"), ("fail-open", "fail-closed")
            ),
        )

    @classmethod
    def load(cls, d: Mapping[str, Any]) -> Service:
        """Rebuild from the store's JSON (trusted)."""
        return cls(d["name"], d["traffic"], d["access"], d["ttl"], d["answers"], d["all_down"])

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "name": self.name,
            "access": self.access,
            "ttl": self.ttl,
            "answers": self.answers,
            "all_down": self.all_down,
            "traffic": {r: dict(t) for r, t in self.traffic.items()},
        }


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One address (usually a container) serving a service in a datacenter."""

    service: str
    id: str
    dc: str
    address: str
    port: int = 80
    version: str = "v1"
    weight: int = 100
    healthy: bool = True
    labels: Mapping[str, str] = field(default_factory=dict)

    FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"dc", "address", "port", "version", "weight", "healthy", "labels"}
    )

    def __post_init__(self) -> None:
        if self.labels:
            _frozen(self, "labels", self.labels)
        else:
            object.__setattr__(self, "labels", _EMPTY)

    @property
    def key(self) -> str:
        """The store key: ``service/id`` (service names hold no '/')."""
        return f"{self.service}/{self.id}"

    @classmethod
    def from_dict(cls, service: str, id: str, data: Any) -> Endpoint:
        """Validate an admin body for endpoint ``id`` of ``service``."""
        d = _body("endpoint", data, cls.FIELDS)
        for required in ("dc", "address"):
            if required not in d:
                raise ValidationError(required, "is required")
        return cls(
            service=v.dns_name("service", service),
            id=v.token("id", id),
            dc=v.identifier("dc", d["dc"]),
            address=v.address("address", d["address"]),
            port=v.integer("port", d.get("port", 80), 1, 65535),
            version=v.token("version", d.get("version", "v1")),
            weight=v.integer("weight", d.get("weight", 100), 0, v.MAX_WEIGHT),
            healthy=v.boolean("healthy", d.get("healthy", True)),
            labels=v.labels("labels", d.get("labels")),
        )

    @classmethod
    def load(cls, d: Mapping[str, Any]) -> Endpoint:
        """Rebuild from the store's JSON (trusted)."""
        return cls(
            d["service"], d["id"], d["dc"], d["address"], d["port"], d["version"],
            d["weight"], d["healthy"], d.get("labels", {}),
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "service": self.service,
            "id": self.id,
            "dc": self.dc,
            "address": self.address,
            "port": self.port,
            "version": self.version,
            "weight": self.weight,
            "healthy": self.healthy,
            "labels": dict(self.labels),
        }


@dataclass(frozen=True, slots=True)
class Release:
    """Which version of a service is stable, and which share goes to a canary."""

    service: str
    stable: str | None = None
    canary: str | None = None
    canary_percent: float = 0.0

    FIELDS: ClassVar[frozenset[str]] = frozenset({"stable", "canary", "canary_percent"})

    @classmethod
    def from_dict(cls, service: str, data: Any) -> Release:
        """Validate an admin body for the release of ``service``."""
        d = _body("release", data, cls.FIELDS)
        stable = d.get("stable")
        canary = d.get("canary")
        pct = v.percent("canary_percent", d.get("canary_percent", 0))
        if canary is None and pct:
            raise ValidationError("canary_percent", "needs a canary version")
        return cls(
            service=v.dns_name("service", service),
            stable=None if stable is None else v.token("stable", stable),
            canary=None if canary is None else v.token("canary", canary),
            canary_percent=pct,
        )

    @classmethod
    def load(cls, d: Mapping[str, Any]) -> Release:
        """Rebuild from the store's JSON (trusted)."""
        return cls(d["service"], d["stable"], d["canary"], d["canary_percent"])

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "service": self.service,
            "stable": self.stable,
            "canary": self.canary,
            "canary_percent": self.canary_percent,
        }


_EMPTY: Mapping[str, str] = MappingProxyType({})

Record = Datacenter | Region | Service | Endpoint | Release
