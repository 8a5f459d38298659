"""The registry's records: datacenters, regions, services, endpoints, releases, zones,
and the deployer's rollouts and address allocations (and older controllers' heartbeats).

Records are immutable. ``from_dict`` validates untrusted input (an admin API
body, a CLI argument) and names the offending field; ``to_dict`` gives the JSON
form that the store keeps and the admin API returns; ``load`` rebuilds a record
from the store's own JSON without validating it again (start-up speed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from sys import intern
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


_TRAFFIC: dict[tuple[tuple[str, tuple[tuple[str, int], ...]], ...], Mapping[str, Any]] = {}
MAX_SHARED_TRAFFIC = 50_000  # distinct tables remembered (only sharing depends on it)


def _shared_traffic(
    traffic: Mapping[str, Mapping[str, int]],
) -> Mapping[str, Mapping[str, int]]:
    """A read-only copy of ``traffic``, the same object for equal tables (trusted loads)."""
    key = tuple((region, tuple(table.items())) for region, table in traffic.items())
    shared = _TRAFFIC.get(key)
    if shared is None:
        if len(_TRAFFIC) >= MAX_SHARED_TRAFFIC:
            _TRAFFIC.clear()
        shared = _TRAFFIC[key] = MappingProxyType(
            {region: MappingProxyType(dict(table)) for region, table in traffic.items()}
        )
    return shared


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
        """Rebuild from the store's JSON (trusted).

        Services with equal traffic tables share one read-only copy (most of a large
        registry's services split alike: ~500 bytes a service saved).
        """
        svc = object.__new__(cls)
        for name, value in (
            ("name", intern(d["name"])),
            ("traffic", _shared_traffic(d["traffic"])),
            ("access", d["access"]),
            ("ttl", d["ttl"]),
            ("answers", d["answers"]),
            ("all_down", d["all_down"]),
        ):
            object.__setattr__(svc, name, value)
        return svc

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


_PORTS: dict[int, int] = {}  # one int object per port number in use (65,535 at most)


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
        """Rebuild from the store's JSON (trusted).

        The strings every endpoint of a service (or of the registry) repeats are interned
        and the port shared: a registry of 200,000 endpoints holds ~40 MB less.
        """
        port = d["port"]
        return cls(
            intern(d["service"]), intern(d["id"]), intern(d["dc"]), d["address"],
            _PORTS.setdefault(port, port), intern(d["version"]),
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


MAX_NAMESERVERS = 16
MAX_SOA_TIMER = 2**31 - 1  # RFC 2181 §8: 31-bit unsigned


@dataclass(frozen=True, slots=True)
class Zone:
    """A DNS zone every node answers authoritatively: apex SOA and NS, nameserver glue,
    NXDOMAIN for unserved names inside it.

    ``nameservers`` keeps its order: the first is the SOA's primary (mname) unless
    ``mname`` is given. The SOA serial is the registry revision (not stored).
    """

    name: str
    nameservers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    mname: str | None = None
    rname: str | None = None
    refresh: int = 3600
    retry: int = 600
    expire: int = 86400
    minimum: int = 30

    FIELDS: ClassVar[frozenset[str]] = frozenset({"nameservers", "soa"})
    SOA_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"mname", "rname", "refresh", "retry", "expire", "minimum"}
    )

    def __post_init__(self) -> None:
        _frozen(self, "nameservers", {k: tuple(a) for k, a in self.nameservers.items()})

    @property
    def primary(self) -> str:
        """The SOA mname: given, else the first nameserver, else ``ns1.<zone>``."""
        return self.mname or next(iter(self.nameservers), None) or f"ns1.{self.name}"

    @property
    def contact(self) -> str:
        """The SOA rname: given, else ``hostmaster.<zone>``."""
        return self.rname or f"hostmaster.{self.name}"

    @classmethod
    def from_dict(cls, name: str, data: Any) -> Zone:
        """Validate an admin body for zone ``name``."""
        d = _body("zone", data, cls.FIELDS)
        name = v.dns_name("name", name)
        raw = d.get("nameservers")
        if not isinstance(raw, Mapping) or not raw:
            raise ValidationError("nameservers", "is required: an object of name -> [addresses]")
        if len(raw) > MAX_NAMESERVERS:
            raise ValidationError("nameservers", f"at most {MAX_NAMESERVERS} nameservers")
        nameservers: dict[str, tuple[str, ...]] = {}
        for ns, addrs in raw.items():
            where = f"nameservers.{ns}"
            host = v.dns_name(where, ns)
            if not isinstance(addrs, list) or len(addrs) > MAX_NAMESERVERS:
                raise ValidationError(
                    where, f"must be a list of at most {MAX_NAMESERVERS} addresses"
                )
            if host in nameservers:
                raise ValidationError(where, f"nameserver {host!r} appears twice")
            inside = host == name or host.endswith("." + name)
            if inside and not addrs:
                raise ValidationError(where, "a nameserver inside the zone needs its addresses")
            nameservers[host] = tuple(
                dict.fromkeys(v.address(f"{where}[{i}]", a) for i, a in enumerate(addrs))
            )
        soa = _body("soa", d.get("soa", {}), cls.SOA_FIELDS)
        mname, rname = soa.get("mname"), soa.get("rname")
        return cls(
            name=name,
            nameservers=nameservers,
            mname=None if mname is None else v.dns_name("soa.mname", mname),
            rname=None if rname is None else v.dns_name("soa.rname", rname),
            refresh=v.integer("soa.refresh", soa.get("refresh", 3600), 1, MAX_SOA_TIMER),
            retry=v.integer("soa.retry", soa.get("retry", 600), 1, MAX_SOA_TIMER),
            expire=v.integer("soa.expire", soa.get("expire", 86400), 1, MAX_SOA_TIMER),
            minimum=v.integer("soa.minimum", soa.get("minimum", 30), 0, v.MAX_TTL),
        )

    @classmethod
    def load(cls, d: Mapping[str, Any]) -> Zone:
        """Rebuild from the store's JSON (trusted); also reads the flat dataclass form that
        ``Snapshot.dump_json`` writes."""
        soa = d.get("soa", d)
        return cls(
            d["name"], {k: tuple(a) for k, a in d["nameservers"].items()}, soa["mname"],
            soa["rname"], soa["refresh"], soa["retry"], soa["expire"], soa["minimum"],
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``mname``/``rname`` null when they follow the defaults)."""
        return {
            "name": self.name,
            "nameservers": {k: list(a) for k, a in self.nameservers.items()},
            "soa": {
                "mname": self.mname,
                "rname": self.rname,
                "refresh": self.refresh,
                "retry": self.retry,
                "expire": self.expire,
                "minimum": self.minimum,
            },
        }


@dataclass(frozen=True, slots=True)
class Rollout:
    """One release of a service by the deployer (``rolling``): its whole, resumable state.

    The registry only stores it; the deployer defines the phases, the intents and
    the ``spec`` (the resolved release spec, kept so a restarted controller needs
    nothing but the registry). ``events`` is the rollout's own short history.
    """

    service: str
    id: str
    version: str
    previous: str | None = None
    phase: str = "pending"
    step: int = -1
    percent: float = 0.0
    paused: bool = False
    intent: str | None = None
    since: float = 0.0
    created: float = 0.0
    actor: str = "unknown"
    message: str = ""
    spec: Mapping[str, Any] = field(default_factory=dict)
    ready: Mapping[str, int] = field(default_factory=dict)
    drained: Mapping[str, int] = field(default_factory=dict)
    events: tuple[Mapping[str, Any], ...] = ()

    FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"version", "previous", "phase", "step", "percent", "paused", "intent", "since",
         "created", "actor", "message", "spec", "ready", "drained", "events"}
    )  # fmt: skip

    def __post_init__(self) -> None:
        object.__setattr__(self, "spec", _freeze(self.spec))
        _frozen(self, "ready", self.ready)
        _frozen(self, "drained", self.drained)
        object.__setattr__(self, "events", tuple(_freeze(e) for e in self.events))

    @property
    def key(self) -> str:
        """The store key: ``service/id``."""
        return f"{self.service}/{self.id}"

    @classmethod
    def from_dict(cls, service: str, id: str, data: Any) -> Rollout:
        """Validate a body for rollout ``id`` of ``service`` (field shapes only)."""
        d = _body("rollout", data, cls.FIELDS)
        if "version" not in d:
            raise ValidationError("version", "is required")
        previous, intent = d.get("previous"), d.get("intent")
        spec, events = d.get("spec", {}), d.get("events", [])
        if not isinstance(spec, Mapping):
            raise ValidationError("spec", "must be an object")
        if not isinstance(events, list) or not all(isinstance(e, Mapping) for e in events):
            raise ValidationError("events", "must be a list of objects")
        message = d.get("message", "")
        if not isinstance(message, str):
            raise ValidationError("message", "must be a string")
        return cls(
            service=v.dns_name("service", service),
            id=v.token("id", id),
            version=v.token("version", d["version"]),
            previous=None if previous is None else v.token("previous", previous),
            phase=v.identifier("phase", d.get("phase", "pending")),
            step=v.integer("step", d.get("step", -1), -1, 1000),
            percent=v.percent("percent", d.get("percent", 0)),
            paused=v.boolean("paused", d.get("paused", False)),
            intent=None if intent is None else v.identifier("intent", intent),
            since=_number("since", d.get("since", 0.0)),
            created=_number("created", d.get("created", 0.0)),
            actor=v.token("actor", d.get("actor", "unknown")),
            message=message,
            spec=spec,
            ready=_counts("ready", d.get("ready", {})),
            drained=_counts("drained", d.get("drained", {})),
            events=tuple(events),
        )

    @classmethod
    def load(cls, d: Mapping[str, Any]) -> Rollout:
        """Rebuild from the store's JSON (trusted)."""
        return cls(
            d["service"], d["id"], d["version"], d["previous"], d["phase"], d["step"],
            d["percent"], d["paused"], d["intent"], d["since"], d["created"], d["actor"],
            d["message"], d["spec"], d["ready"], d["drained"], tuple(d["events"]),
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "service": self.service,
            "id": self.id,
            "version": self.version,
            "previous": self.previous,
            "phase": self.phase,
            "step": self.step,
            "percent": self.percent,
            "paused": self.paused,
            "intent": self.intent,
            "since": self.since,
            "created": self.created,
            "actor": self.actor,
            "message": self.message,
            "spec": _thaw(self.spec),
            "ready": dict(self.ready),
            "drained": dict(self.drained),
            "events": [_thaw(e) for e in self.events],
        }


@dataclass(frozen=True, slots=True)
class Allocation:
    """An address of a datacenter's pool handed to one container (its ``owner``).

    The key ``dc/address`` makes an address impossible to hand out twice: a put
    for an address held by another owner is refused (see ``Snapshot.apply``).
    """

    dc: str
    address: str
    owner: str
    service: str = ""
    rollout: str = ""
    time: float = 0.0

    FIELDS: ClassVar[frozenset[str]] = frozenset({"owner", "service", "rollout", "time"})

    @property
    def key(self) -> str:
        """The store key: ``dc/address``."""
        return f"{self.dc}/{self.address}"

    @classmethod
    def from_dict(cls, dc: str, address: str, data: Any) -> Allocation:
        """Validate a body for the allocation of ``address`` in ``dc``."""
        d = _body("allocation", data, cls.FIELDS)
        if "owner" not in d:
            raise ValidationError("owner", "is required")
        service = d.get("service", "")
        return cls(
            dc=v.identifier("dc", dc),
            address=v.address("address", address),
            owner=v.token("owner", d["owner"]),
            service=v.dns_name("service", service) if service else "",
            rollout=v.token("rollout", d["rollout"]) if d.get("rollout") else "",
            time=_number("time", d.get("time", 0.0)),
        )

    @classmethod
    def load(cls, d: Mapping[str, Any]) -> Allocation:
        """Rebuild from the store's JSON (trusted)."""
        return cls(d["dc"], d["address"], d["owner"], d["service"], d["rollout"], d["time"])

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "dc": self.dc,
            "address": self.address,
            "owner": self.owner,
            "service": self.service,
            "rollout": self.rollout,
            "time": self.time,
        }


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A deployer controller's last reconcile pass, as controllers before 2026-12 wrote it
    into the registry (now they use the store's liveness entries: registry/liveness.py).
    Still loaded so that old registries load; ``rolling status`` still reads it, and a
    controller deletes them when it starts."""

    id: str  # the controller, e.g. "host-pid"
    time: float = 0.0  # when its last pass ended
    every: float = 1.0  # seconds between its passes
    actor: str = ""

    FIELDS: ClassVar[frozenset[str]] = frozenset({"time", "every", "actor"})

    @property
    def key(self) -> str:
        """The store key: the controller id."""
        return self.id

    @classmethod
    def from_dict(cls, id: str, data: Any) -> Heartbeat:
        """Validate a body for the heartbeat of controller ``id``."""
        d = _body("heartbeat", data, cls.FIELDS)
        actor = d.get("actor", "")
        return cls(
            id=v.token("id", id),
            time=_number("time", d.get("time", 0.0)),
            every=_number("every", d.get("every", 1.0)),
            actor=v.token("actor", actor) if actor else "",
        )

    @classmethod
    def load(cls, d: Mapping[str, Any]) -> Heartbeat:
        """Rebuild from the store's JSON (trusted)."""
        return cls(d["id"], d["time"], d["every"], d["actor"])

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"id": self.id, "time": self.time, "every": self.every, "actor": self.actor}


def _number(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(field, f"must be a number, not {value!r}")
    return float(value)


def _counts(field: str, value: Any) -> dict[str, int]:
    if not isinstance(value, Mapping):
        raise ValidationError(field, "must be an object of name -> integer")
    return {str(k): v.integer(f"{field}.{k}", n, 0, 1_000_000) for k, n in value.items()}


def _freeze(value: Any) -> Any:
    """A deeply read-only copy of a JSON value (objects become mapping proxies, lists tuples)."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(x) for k, x in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(x) for x in value)
    return value


def _thaw(value: Any) -> Any:
    """A plain JSON copy of a (possibly read-only) nested value."""
    if isinstance(value, Mapping):
        return {k: _thaw(x) for k, x in value.items()}
    if isinstance(value, list | tuple):
        return [_thaw(x) for x in value]
    return value


_EMPTY: Mapping[str, str] = MappingProxyType({})

Record = (
    Datacenter | Region | Service | Endpoint | Release | Rollout | Allocation | Heartbeat | Zone
)
