"""The ``Engine`` over the Docker Engine API (the ``docker`` SDK), one client per host.

Hosts are Engine API URLs: ``unix:///var/run/docker.sock``, ``tcp://10.0.0.7:2375``.
The SDK is synchronous, so every call runs in a worker thread. Docker's exceptions
are wrapped into ``EngineError`` (the host refused: its explanation) or
``EngineUnavailableError`` (the host cannot be reached), both naming the host.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import docker
import docker.errors
import requests

from .container import ContainerSpec
from .engine import Container, Stats
from .errors import EngineError, EngineUnavailableError, ImageError, PullError

T = TypeVar("T")
TIMEOUT = 60  # seconds per Engine API call
NAME_WAIT = 5.0  # seconds to wait for a name held by a container being removed


class DockerEngine:
    """Containers on one Docker host."""

    def __init__(self, host: str, timeout: int = TIMEOUT) -> None:
        self.host = host
        self._timeout = timeout
        self._api: Any = None
        self._lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------------------------

    def _client(self) -> Any:
        with self._lock:
            if self._api is None:
                path = self.host.removeprefix("unix://")
                if self.host.startswith("unix://") and not os.path.exists(path):
                    # checked here: the SDK leaks the socket of a failed unix connect
                    raise EngineUnavailableError(self.host, f"no Engine API socket at {path}")
                self._api = docker.APIClient(
                    base_url=self.host, version="auto", timeout=self._timeout
                )
            return self._api

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args)
        except docker.errors.APIError as exc:
            raise EngineError(self.host, str(exc.explanation or exc)) from exc
        except (
            docker.errors.DockerException,
            requests.exceptions.RequestException,
            OSError,
        ) as exc:
            raise EngineUnavailableError(self.host, f"cannot reach the Engine API: {exc}") from exc

    # -- the Engine protocol ----------------------------------------------------------------------

    async def run(self, spec: ContainerSpec) -> Container:
        """Create (if missing) and start the container; finds one created before a crash."""
        return await self._call(self._run, spec)

    async def remove(self, name: str) -> None:
        """Stop (SIGTERM, then SIGKILL after the container's stop timeout) and remove."""
        await self._call(self._remove, name)

    async def inspect(self, name: str) -> Container | None:
        """The container called ``name``, or None."""
        return await self._call(self._inspect, name)

    async def list(self, labels: Mapping[str, str]) -> list[Container]:
        """Containers carrying every label, running or not."""
        return await self._call(self._list, dict(labels))

    async def stats(self, name: str) -> Stats:
        """A resource sample from the container's cgroup (takes about a second)."""
        return await self._call(self._stats, name)

    async def ensure_image(self, image: str) -> None:
        """Make sure the host has ``image``: present, or pulled now (ImageError if not)."""
        try:
            await self._call(self._ensure_image, image)
        except EngineUnavailableError:
            raise
        except EngineError as exc:
            raise ImageError(f"image {image} is not on docker {self.host} and cannot be "
                             f"pulled: {exc.detail.removeprefix(f'docker {self.host}: ')}") from exc  # fmt: skip

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        if self._api is not None:
            api, self._api = self._api, None
            await asyncio.to_thread(api.close)

    # -- worker-thread side ----------------------------------------------------------------------

    def _inspect(self, name: str) -> Container | None:
        try:
            info = self._client().inspect_container(name)
        except docker.errors.NotFound:
            return None
        return _from_inspect(self.host, info)

    def _ensure_image(self, image: str) -> None:
        api = self._client()
        try:
            api.inspect_image(image)
        except docker.errors.ImageNotFound:
            api.pull(image)
            api.inspect_image(image)  # a pull that "succeeds" without the image still fails

    def _run(self, spec: ContainerSpec) -> Container:
        api = self._client()
        current = self._inspect(spec.name) or self._create_or_find(spec)
        if not current.running:
            api.start(spec.name)
            current = self._inspect(spec.name) or current
        return current

    def _create_or_find(self, spec: ContainerSpec) -> Container:
        """Create the container, or find the one another controller created meanwhile.

        A create refused because the name is taken while nothing by that name can be
        inspected means a container of that name is being removed (another controller
        replacing it: Docker forgets the container before it releases its name). The
        name is free again within moments, so the create is tried again for a few
        seconds; past that, an ``EngineError`` (the next pass tries again)."""
        deadline = time.monotonic() + NAME_WAIT
        while True:
            self._create(spec)
            current = self._inspect(spec.name)
            if current is not None:
                return current
            if time.monotonic() >= deadline:
                raise EngineError(self.host, f"the name {spec.name} stayed held by a container "
                                  f"being removed for {NAME_WAIT:g}s")  # fmt: skip
            time.sleep(0.05)

    def _create(self, spec: ContainerSpec) -> None:
        """Create the container; a name already taken (HTTP 409) is left to the caller."""
        api = self._client()
        if self.host.startswith("unix://"):  # the Docker host is this machine
            os.makedirs(spec.persist, exist_ok=True)
        host_config = api.create_host_config(
            cpu_period=spec.cpu_period,
            cpu_quota=spec.cpu_quota,
            mem_limit=spec.memory,
            memswap_limit=spec.memory_swap,
            binds={spec.persist: {"bind": "/persist", "mode": "rw"}},  # created if missing
            network_mode=spec.network,
            dns=list(spec.dns) or None,
            extra_hosts=dict(spec.extra_hosts) or None,
            restart_policy={"Name": spec.restart} if spec.restart != "no" else None,
        )
        networking = api.create_networking_config(
            {spec.network: api.create_endpoint_config(ipv4_address=spec.address)}
        )
        kwargs: dict[str, Any] = {
            "command": list(spec.command) or None,
            "name": spec.name,
            "hostname": spec.hostname,
            "labels": dict(spec.labels),
            "environment": dict(spec.env),
            "host_config": host_config,
            "networking_config": networking,
            "mac_address": spec.mac,
            "stop_timeout": spec.stop_timeout,
        }
        try:
            api.create_container(spec.image, **kwargs)
        except docker.errors.ImageNotFound:
            try:
                api.pull(spec.image)
            except docker.errors.APIError as exc:
                raise PullError(self.host, f"image {spec.image} is missing and the pull failed: "
                                f"{exc.explanation or exc}") from exc  # fmt: skip
            api.create_container(spec.image, **kwargs)
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: the name is taken (created or being removed)
                raise

    def _remove(self, name: str) -> None:
        api = self._client()
        try:
            api.stop(name)  # the container's own stop timeout applies
            api.remove_container(name, force=True)
        except docker.errors.NotFound:
            return

    def _list(self, labels: dict[str, str]) -> builtins.list[Container]:
        filters = {"label": [f"{k}={v}" for k, v in sorted(labels.items())]}
        found = self._client().containers(all=True, filters=filters)
        return [_from_summary(self.host, c) for c in found]

    def _stats(self, name: str) -> Stats:
        api = self._client()
        s = api.stats(name, stream=False)  # Docker samples twice, a second apart
        host = api.inspect_container(name)["HostConfig"]
        cpu, pre = s.get("cpu_stats", {}), s.get("precpu_stats", {})
        cpu_delta = cpu.get("cpu_usage", {}).get("total_usage", 0) - pre.get("cpu_usage", {}).get(
            "total_usage", 0
        )
        sys_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
        online = cpu.get("online_cpus") or 1
        nets = s.get("networks") or {}
        mem = s.get("memory_stats", {})
        inactive = (mem.get("stats") or {}).get("inactive_file") or (mem.get("stats") or {}).get(
            "total_inactive_file", 0
        )
        io = (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
        throttling = cpu.get("throttling_data") or {}
        return Stats(
            cpu_percent=round(cpu_delta / sys_delta * online * 100, 2) if sys_delta > 0 else 0.0,
            memory_bytes=max(int(mem.get("usage", 0)) - int(inactive), 0),
            memory_limit_bytes=int(mem.get("limit", 0)),
            net_rx_bytes=sum(int(n.get("rx_bytes", 0)) for n in nets.values()),
            net_tx_bytes=sum(int(n.get("tx_bytes", 0)) for n in nets.values()),
            blkio_read_bytes=sum(int(e["value"]) for e in io if e.get("op", "").lower() == "read"),
            blkio_write_bytes=sum(
                int(e["value"]) for e in io if e.get("op", "").lower() == "write"
            ),
            pids=int(s.get("pids_stats", {}).get("current", 0)),
            tcp_connections=None,  # the stats API does not see into the network namespace
            cpu_throttled_periods=int(throttling.get("throttled_periods", 0)),
            cpu_throttled_seconds=int(throttling.get("throttled_time", 0)) / 1e9,
            cpu_quota=int(host.get("CpuQuota") or 0),
            cpu_period=int(host.get("CpuPeriod") or 0),
            source="api",
        )


def _network(settings: Mapping[str, Any]) -> tuple[str, str]:
    for net in (settings.get("Networks") or {}).values():
        if net.get("IPAddress") or net.get("IPAMConfig"):
            ip = net.get("IPAddress") or (net.get("IPAMConfig") or {}).get("IPv4Address", "")
            return ip, net.get("MacAddress", "")
    return "", ""


def _from_inspect(host: str, info: Mapping[str, Any]) -> Container:
    address, mac = _network(info.get("NetworkSettings") or {})
    return Container(
        name=info["Name"].lstrip("/"),
        host=host,
        state=info["State"]["Status"],
        labels=dict(info["Config"].get("Labels") or {}),
        address=address,
        mac=mac,
        image=info["Config"].get("Image", ""),
        id=info.get("Id", ""),
        pid=int((info.get("State") or {}).get("Pid") or 0),
    )


def _from_summary(host: str, c: Mapping[str, Any]) -> Container:
    address, mac = _network(c.get("NetworkSettings") or {})
    return Container(
        name=c["Names"][0].lstrip("/"),
        host=host,
        state=c.get("State", ""),
        labels=dict(c.get("Labels") or {}),
        address=address,
        mac=mac,
        image=c.get("Image", ""),
        id=c.get("Id", ""),
    )
