"""The release spec: what to run (image, command, port, resources), where (replicas and
Docker placement per datacenter), how to tell it is healthy, and how traffic moves
(canary steps, propagation allowance, bake time, TTL-first moves) and how a canary
step judges itself (``[[analysis]]`` checks, ``deployer.analysis``).

``ReleaseSpec.from_dict`` validates the TOML form (durations as ``"30s"``, sizes as
``"8g"``) and the stored JSON form alike; ``to_dict`` gives the stored form that a
rollout record keeps, so a restarted controller needs nothing but the registry.
"""

from __future__ import annotations

import ipaddress
import itertools
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, cast

from registry.errors import ValidationError
from registry.validation import dns_name, identifier

from . import units
from .analysis import Check, checks
from .errors import SpecError

DEFAULT_CORES = 4.0
DEFAULT_MEMORY = 8 << 30  # 8 GiB, no swap on top
DEFAULT_PERSIST_ROOT = "/var/lib/rolling/persist"
DEFAULT_TTL_FLOOR = 5  # seconds: the TTL a ttl_first move lowers the service to
RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
_TOP = frozenset(
    {"service", "image", "command", "port", "env", "labels", "weight", "restart", "replicas",
     "resources", "health", "steps", "rollout", "datacenters", "stop_timeout", "replace_after",
     "replace_limit", "replace_window", "pull_deadline", "analysis"}
)  # fmt: skip


def _table(field: str, value: Any, allowed: frozenset[str] | None = None) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(field, "must be a table")
    if allowed is not None:
        unknown = sorted(str(k) for k in set(value) - allowed)
        if unknown:
            raise SpecError(f"{field}.{unknown[0]}" if field else unknown[0], "unknown key")
    return value


def _int(field: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpecError(field, f"must be an integer {low}-{high}, not {value!r}")
    return value


def _strings(field: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list | tuple) or not all(isinstance(x, str) for x in value):
        raise SpecError(field, "must be a list of strings")
    return tuple(value)


def _str_map(field: str, value: Any) -> Mapping[str, str]:
    table = _table(field, value)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in table.items()):
        raise SpecError(field, "must map strings to strings")
    return MappingProxyType(dict(table))


def _registry(field: str, check: Any, value: Any) -> str:
    try:
        return str(check(field, value))
    except ValidationError as exc:
        raise SpecError("", exc.detail) from None


@dataclass(frozen=True, slots=True)
class Resources:
    """CPU as an absolute quota (cores x 100000 per 100000 us period); memory with no swap."""

    cores: float = DEFAULT_CORES
    memory: int = DEFAULT_MEMORY

    @classmethod
    def from_dict(cls, data: Any) -> Resources:
        d = _table("resources", data, frozenset({"cores", "cpus", "memory"}))
        cores = d.get("cores", d.get("cpus", DEFAULT_CORES))
        if isinstance(cores, bool) or not isinstance(cores, int | float) or not 0 < cores <= 1024:
            raise SpecError(
                "resources.cores", f"must be a number of cores (0, 1024], not {cores!r}"
            )
        memory = units.size("resources.memory", d.get("memory", DEFAULT_MEMORY))
        if memory < 6 << 20:
            raise SpecError("resources.memory", "Docker needs at least 6m")
        return cls(float(cores), memory)

    def to_dict(self) -> dict[str, Any]:
        return {"cores": self.cores, "memory": self.memory}


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """How to probe a container: HTTP GET of ``path`` (2xx/3xx) or a TCP connect."""

    kind: Literal["http", "tcp"] = "tcp"
    path: str = "/"
    interval: float = 2.0
    timeout: float = 1.0
    rise: int = 2
    fall: int = 3
    deadline: float = 120.0

    @classmethod
    def from_dict(cls, data: Any) -> HealthCheck:
        keys = frozenset({"http", "tcp", "kind", "path", "interval", "timeout", "rise", "fall",
                          "deadline"})  # fmt: skip
        d = _table("health", data, keys)
        if "http" in d:
            kind, path = "http", d["http"]
        elif d.get("tcp") is True:
            kind, path = "tcp", "/"
        else:
            kind, path = d.get("kind", "tcp"), d.get("path", "/")
        if kind not in ("http", "tcp"):
            raise SpecError("health.kind", f"must be http or tcp, not {kind!r}")
        if not isinstance(path, str) or not path.startswith("/"):
            raise SpecError("health.http", f"must be a path starting with '/', not {path!r}")
        check = cls(
            kind=cast(Literal["http", "tcp"], kind),
            path=path,
            interval=units.duration("health.interval", d.get("interval", 2.0)),
            timeout=units.duration("health.timeout", d.get("timeout", 1.0)),
            rise=_int("health.rise", d.get("rise", 2), 1, 100),
            fall=_int("health.fall", d.get("fall", 3), 1, 100),
            deadline=units.duration("health.deadline", d.get("deadline", 120.0)),
        )
        if check.interval <= 0 or check.timeout <= 0:
            raise SpecError("health.interval", "interval and timeout must be above zero")
        return check

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "path": self.path, "interval": self.interval,
            "timeout": self.timeout, "rise": self.rise, "fall": self.fall,
            "deadline": self.deadline,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Step:
    """One canary step: the canary's share, then a hold (seconds) or a manual pause (None)."""

    percent: float
    pause: float | None = 0.0

    @property
    def manual(self) -> bool:
        """Whether the step waits for ``promote``."""
        return self.pause is None

    def to_dict(self) -> dict[str, Any]:
        return {"percent": self.percent, "pause": "manual" if self.pause is None else self.pause}


def _steps(value: Any) -> tuple[Step, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise SpecError("steps", "must be a list of {percent, pause} tables")
    out: list[Step] = []
    for i, raw in enumerate(value):
        d = _table(f"steps[{i}]", raw, frozenset({"percent", "pause"}))
        pct = d.get("percent")
        if isinstance(pct, bool) or not isinstance(pct, int | float) or not 0 < pct <= 100:
            raise SpecError(f"steps[{i}].percent", f"must be a number in (0, 100], not {pct!r}")
        if round(pct, 2) != pct:
            raise SpecError(f"steps[{i}].percent", "has more than two decimals")
        if out and pct <= out[-1].percent:
            raise SpecError(f"steps[{i}].percent", "steps must increase")
        pause = d.get("pause", 0)
        out.append(
            Step(
                float(pct),
                None if pause == "manual" else units.duration(f"steps[{i}].pause", pause),
            )
        )
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a datacenter's containers run: Docker hosts (Engine API URLs), the user-defined
    network, the address pool, and the run-time conventions (DNS, hosts file, /persist)."""

    hosts: tuple[str, ...]
    network: str
    pool: str
    dns: tuple[str, ...] = ()
    extra_hosts: Mapping[str, str] = field(default_factory=dict)
    persist_root: str = DEFAULT_PERSIST_ROOT

    KEYS = frozenset({"hosts", "network", "pool", "dns", "extra_hosts", "persist_root"})

    @classmethod
    def from_dict(cls, dc: str, data: Any) -> Placement:
        f = f"datacenters.{dc}"
        d = _table(f, data, cls.KEYS)
        hosts = _strings(f"{f}.hosts", d.get("hosts"))
        if not hosts:
            raise SpecError(f"{f}.hosts", "needs at least one Docker host (unix:// or tcp://)")
        for h in hosts:
            if not h.startswith(
                ("unix://", "tcp://", "http://", "https://", "ssh://", "memory://")
            ):
                raise SpecError(f"{f}.hosts", f"{h!r} is not an Engine API URL (unix://, tcp://)")
        network = d.get("network")
        if not isinstance(network, str) or not network:
            raise SpecError(f"{f}.network", "needs the name of a user-defined Docker network")
        from .addresses import Pool  # the pool syntax lives with the allocator

        pool = d.get("pool")
        Pool.parse(f"{f}.pool", pool)
        for server in _strings(f"{f}.dns", d.get("dns")):
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise SpecError(f"{f}.dns", f"{server!r} is not an IP address") from None
        root = d.get("persist_root", DEFAULT_PERSIST_ROOT)
        if not isinstance(root, str) or not root.startswith("/"):
            raise SpecError(f"{f}.persist_root", "must be an absolute path")
        return cls(
            hosts=hosts,
            network=network,
            pool=str(pool),
            dns=_strings(f"{f}.dns", d.get("dns")),
            extra_hosts=_str_map(f"{f}.extra_hosts", d.get("extra_hosts")),
            persist_root=root.rstrip("/") or "/",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "hosts": list(self.hosts), "network": self.network, "pool": self.pool,
            "dns": list(self.dns), "extra_hosts": dict(self.extra_hosts),
            "persist_root": self.persist_root,
        }  # fmt: skip


def check_disjoint(pools: Mapping[str, str]) -> None:
    """Refuse address pools of two datacenters that overlap (two containers, one IP)."""
    from .addresses import Pool

    parsed = sorted(
        ((Pool.parse(f"datacenters.{dc}.pool", p), dc) for dc, p in pools.items()),
        key=lambda x: int(x[0].first),
    )
    for (a, dc_a), (b, dc_b) in itertools.pairwise(parsed):
        if b.first <= a.last:
            raise SpecError(f"datacenters.{dc_b}.pool",
                            f"{pools[dc_b]} overlaps the pool of datacenter {dc_a} "
                            f"({pools[dc_a]}); pools must be disjoint")  # fmt: skip


def _optional_int(field: str, value: Any) -> int | None:
    return None if value is None else _int(field, value, 0, 2**31 - 1)


def _optional_number(field: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(field, f"must be a number, not {value!r}")
    return float(value)


def _ttl_floor(value: Any) -> int:
    seconds = round(units.duration("rollout.ttl_floor", value))
    if not 1 <= seconds <= 86400:
        raise SpecError("rollout.ttl_floor", "must be 1s to 1 day")
    return seconds


@dataclass(frozen=True, slots=True)
class ReleaseSpec:
    """Everything a rollout needs to know, validated."""

    service: str
    image: str
    port: int
    replicas: Mapping[str, int]
    placement: Mapping[str, Placement]
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    health: HealthCheck = field(default_factory=HealthCheck)
    steps: tuple[Step, ...] = ()
    weight: int = 100
    restart: str = "unless-stopped"
    stop_timeout: int = 10  # seconds between SIGTERM and SIGKILL when a container is removed
    propagation: float = 5.0
    bake: float = 600.0
    replace_after: float = 30.0  # a running container unhealthy this long is replaced
    replace_limit: int = 5  # replacements per service within replace_window, at most
    replace_window: float = 300.0
    pull_deadline: float = 120.0  # a rollout whose image cannot be pulled this long aborts
    analysis: tuple[Check, ...] = ()  # judged during every canary step's hold
    ttl_first: bool = False  # lower the TTL to ttl_floor one old TTL before each traffic move
    ttl_floor: int = DEFAULT_TTL_FLOOR
    # written by the controller into the rollout's stored spec when it lowered the TTL
    # (a ttl_first rollout): the TTL to put back at the end, and when it was lowered
    ttl_restore: int | None = None
    ttl_lowered: float | None = None

    @classmethod
    def from_dict(cls, data: Any) -> ReleaseSpec:
        """Validate a spec (TOML or stored form); names the offending key."""
        d = _table("", data, _TOP)
        for required in ("service", "image", "port", "replicas"):
            if required not in d:
                raise SpecError(required, "is required")
        service = _registry("service", dns_name, d["service"])
        image = d["image"]
        if not isinstance(image, str) or not image or any(c.isspace() for c in image):
            raise SpecError("image", f"must be an image reference, not {image!r}")
        command = d.get("command", ())
        command = tuple(shlex.split(command)) if isinstance(command, str) else command
        replicas: dict[str, int] = {}
        for dc, n in _table("replicas", d["replicas"]).items():
            replicas[_registry(f"replicas.{dc}", identifier, dc)] = _int(
                f"replicas.{dc}", n, 0, 1000
            )
        if not any(replicas.values()):
            raise SpecError("replicas", "at least one datacenter needs a replica")
        dcs = _table("datacenters", d.get("datacenters"))
        placement = {
            dc: Placement.from_dict(dc, dcs.get(dc)) for dc, n in sorted(replicas.items()) if n
        }
        check_disjoint({dc: p.pool for dc, p in placement.items()})
        rollout = _table("rollout", d.get("rollout"),
                         frozenset({"propagation", "bake", "ttl_first", "ttl_floor",
                                    "ttl_restore", "ttl_lowered"}))  # fmt: skip
        ttl_first = rollout.get("ttl_first", False)
        if not isinstance(ttl_first, bool):
            raise SpecError("rollout.ttl_first", "must be true or false")
        restart = d.get("restart", "unless-stopped")
        if restart not in RESTART_POLICIES:
            raise SpecError("restart", f"must be one of {', '.join(RESTART_POLICIES)}")
        return cls(
            service=service,
            image=image,
            port=_int("port", d["port"], 1, 65535),
            replicas=MappingProxyType(replicas),
            placement=MappingProxyType(placement),
            command=_strings("command", command),
            env=_str_map("env", d.get("env")),
            labels=_str_map("labels", d.get("labels")),
            resources=Resources.from_dict(d.get("resources")),
            health=HealthCheck.from_dict(d.get("health")),
            steps=_steps(d.get("steps")),
            weight=_int("weight", d.get("weight", 100), 1, 10000),
            restart=restart,
            stop_timeout=round(units.duration("stop_timeout", d.get("stop_timeout", 10))),
            propagation=units.duration("rollout.propagation", rollout.get("propagation", 5.0)),
            bake=units.duration("rollout.bake", rollout.get("bake", 600.0)),
            replace_after=units.duration("replace_after", d.get("replace_after", 30.0)),
            replace_limit=_int("replace_limit", d.get("replace_limit", 5), 0, 1000),
            replace_window=units.duration("replace_window", d.get("replace_window", 300.0)),
            pull_deadline=units.duration("pull_deadline", d.get("pull_deadline", 120.0)),
            analysis=checks(d.get("analysis")),
            ttl_first=ttl_first,
            ttl_floor=_ttl_floor(rollout.get("ttl_floor", DEFAULT_TTL_FLOOR)),
            ttl_restore=_optional_int("rollout.ttl_restore", rollout.get("ttl_restore")),
            ttl_lowered=_optional_number("rollout.ttl_lowered", rollout.get("ttl_lowered")),
        )

    def to_dict(self) -> dict[str, Any]:
        """The stored (JSON) form; ``from_dict`` reads it back unchanged."""
        return {
            "service": self.service,
            "image": self.image,
            "command": list(self.command),
            "port": self.port,
            "env": dict(self.env),
            "labels": dict(self.labels),
            "weight": self.weight,
            "restart": self.restart,
            "stop_timeout": self.stop_timeout,
            "replicas": dict(self.replicas),
            "resources": self.resources.to_dict(),
            "health": self.health.to_dict(),
            "steps": [s.to_dict() for s in self.steps],
            "rollout": {
                "propagation": self.propagation,
                "bake": self.bake,
                "ttl_first": self.ttl_first,
                "ttl_floor": self.ttl_floor,
                **(
                    {"ttl_restore": self.ttl_restore, "ttl_lowered": self.ttl_lowered}
                    if self.ttl_restore is not None
                    else {}
                ),
            },
            "datacenters": {dc: p.to_dict() for dc, p in self.placement.items()},
            "replace_after": self.replace_after,
            "replace_limit": self.replace_limit,
            "replace_window": self.replace_window,
            "pull_deadline": self.pull_deadline,
            "analysis": [c.to_dict() for c in self.analysis],
        }

    def without_steps(self) -> ReleaseSpec:
        """The same release moved at once (no canary): for rollback redeploys."""
        d = self.to_dict()
        d["rollout"] = {
            k: v for k, v in d["rollout"].items() if k not in ("ttl_restore", "ttl_lowered")
        }  # a new rollout's own
        return ReleaseSpec.from_dict({**d, "steps": []})

    def total(self) -> int:
        """Containers across all datacenters."""
        return sum(self.replicas.values())
