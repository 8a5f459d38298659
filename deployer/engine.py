"""The container engine interface the controller drives, and an in-memory engine for tests.

One ``Engine`` per Docker host. Its handful of methods are all idempotent by
container name, which is what makes the controller crash-safe: ``run`` finds a
container created before a crash instead of creating a second one, and ``remove``
of a container that is already gone succeeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from .container import ContainerSpec
from .errors import EngineError, ImageError, PullError


@dataclass(frozen=True, slots=True)
class Container:
    """What an engine reports about one container."""

    name: str
    host: str
    state: str  # created | running | exited | dead | ...
    labels: Mapping[str, str] = field(default_factory=dict)
    address: str = ""
    mac: str = ""
    image: str = ""
    id: str = ""
    pid: int = 0  # the main process on the Docker host (inspect only; 0 when not known)

    @property
    def running(self) -> bool:
        """Whether the container's process runs."""
        return self.state == "running"


@dataclass(frozen=True, slots=True)
class Stats:
    """Resource figures of one container: rates over a short interval (CPU) and current
    values or counters since it started (everything else)."""

    cpu_percent: float  # of one core (100 = one core busy)
    memory_bytes: int  # without the inactive page cache, as ``docker stats``
    memory_limit_bytes: int  # 0 = no limit
    net_rx_bytes: int
    net_tx_bytes: int
    blkio_read_bytes: int
    blkio_write_bytes: int
    pids: int
    tcp_connections: int | None  # TCP sockets but listeners; None when not known (Docker API)
    cpu_throttled_periods: int = 0
    cpu_throttled_seconds: float = 0.0
    oom_kills: int = 0
    cpu_quota: int = 0
    cpu_period: int = 0
    tcp_states: Mapping[str, int] = field(default_factory=dict)
    source: str = "cgroup"  # "cgroup" (files on this host) or "api" (Docker stats API)

    def to_dict(self) -> dict[str, object]:
        """The JSON form (``rolling ps --stats --json``)."""
        return {
            "cpu_percent": self.cpu_percent,
            "memory_bytes": self.memory_bytes,
            "memory_limit_bytes": self.memory_limit_bytes,
            "net_rx_bytes": self.net_rx_bytes,
            "net_tx_bytes": self.net_tx_bytes,
            "blkio_read_bytes": self.blkio_read_bytes,
            "blkio_write_bytes": self.blkio_write_bytes,
            "pids": self.pids,
            "tcp_connections": self.tcp_connections,
            "tcp_states": dict(self.tcp_states),
            "cpu_throttled_periods": self.cpu_throttled_periods,
            "cpu_throttled_seconds": self.cpu_throttled_seconds,
            "oom_kills": self.oom_kills,
            "cpu_quota": self.cpu_quota,
            "cpu_period": self.cpu_period,
            "stats_source": self.source,
        }


class Engine(Protocol):
    """Containers on one Docker host."""

    host: str

    async def run(self, spec: ContainerSpec) -> Container:
        """Create the container if no container has its name, and start it if not running."""
        ...

    async def remove(self, name: str) -> None:
        """Stop and remove the container; a container that does not exist is fine."""
        ...

    async def inspect(self, name: str) -> Container | None:
        """The container called ``name``, or None."""
        ...

    async def list(self, labels: Mapping[str, str]) -> list[Container]:
        """Containers (running or not) carrying every given label."""
        ...

    async def stats(self, name: str) -> Stats:
        """A resource sample of a running container."""
        ...

    async def ensure_image(self, image: str) -> None:
        """Make sure the host has ``image`` (pull it if missing); ImageError otherwise."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...


class MemoryEngine:
    """An engine that keeps containers in a dict: for unit tests (and dry runs)."""

    def __init__(self, host: str = "memory://a") -> None:
        self.host = host
        self.containers: dict[str, Container] = {}
        self.specs: dict[str, ContainerSpec] = {}
        self.created = 0  # how many containers were ever created (duplicates would show here)
        self.fail: str | None = None  # when set, every call raises EngineError with it
        self.images: set[str] | None = None  # None: every image is there (pulls succeed)

    def _check(self) -> None:
        if self.fail is not None:
            raise EngineError(self.host, self.fail)

    async def run(self, spec: ContainerSpec) -> Container:
        self._check()
        current = self.containers.get(spec.name)
        if current is None and self.images is not None and spec.image not in self.images:
            raise PullError(self.host, f"image {spec.image} is missing and the pull failed")
        if current is None:
            self.created += 1
            self.specs[spec.name] = spec
            current = Container(spec.name, self.host, "created", dict(spec.labels),
                                spec.address, spec.mac, spec.image, f"{self.host}#{self.created}")  # fmt: skip
        current = replace(current, state="running")
        self.containers[spec.name] = current
        return current

    async def remove(self, name: str) -> None:
        self._check()
        self.containers.pop(name, None)

    async def inspect(self, name: str) -> Container | None:
        self._check()
        return self.containers.get(name)

    async def list(self, labels: Mapping[str, str]) -> list[Container]:
        self._check()
        return [
            c for c in self.containers.values()
            if all(c.labels.get(k) == v for k, v in labels.items())
        ]  # fmt: skip

    async def stats(self, name: str) -> Stats:
        self._check()
        spec = self.specs[name]
        return Stats(0.0, spec.memory // 10, spec.memory, 0, 0, 0, 0, 1, None,
                     cpu_quota=spec.cpu_quota, cpu_period=spec.cpu_period, source="api")  # fmt: skip

    async def ensure_image(self, image: str) -> None:
        self._check()
        if self.images is not None and image not in self.images:
            raise ImageError(f"image {image} is not on {self.host} and cannot be pulled")

    async def close(self) -> None:
        return None

    def kill(self, name: str) -> None:
        """Make a container exit, as a crash would (test helper)."""
        self.containers[name] = replace(self.containers[name], state="exited")
