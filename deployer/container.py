"""Containers as the source article runs them, as pure data (no Docker here).

- name ``<service>-<dc>-<version>-<n>`` (the idempotency key: creating it twice finds
  the first one; also the endpoint id in the registry);
- hostname ``<first label of the service>-<dc>-<n>``;
- CPU as an absolute quota: ``cpu_period`` 100000 us, ``cpu_quota`` = cores x 100000;
- memory limit = memory+swap limit (no swap: an OOM service fails fast);
- a fixed IPv4 address from the datacenter's pool on a user-defined network, and the
  MAC address derived from it (``addresses.mac_for``);
- the host directory ``<persist_root>/<ip>`` mounted read-write at ``/persist``;
- DNS servers and extra hosts from the config, labels naming service, version,
  datacenter and rollout, a restart policy.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .addresses import mac_for
from .spec import ReleaseSpec

CPU_PERIOD = 100_000  # microseconds
LABEL_SERVICE = "rolling.service"
LABEL_VERSION = "rolling.version"
LABEL_DC = "rolling.dc"
LABEL_ROLLOUT = "rolling.rollout"
LABEL_INDEX = "rolling.index"
_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")
MAX_NAME = 128  # also the registry's limit for an endpoint id


def container_name(service: str, dc: str, version: str, n: int) -> str:
    """The deterministic name of replica ``n`` (1-based); at most 128 characters."""
    name = _UNSAFE.sub("_", f"{service}-{dc}-{version}-{n}")
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.blake2b(name.encode(), digest_size=4).hexdigest()
    return f"{name[: MAX_NAME - 9]}-{digest}"


def hostname(service: str, dc: str, n: int) -> str:
    """``<first label of the service>-<dc>-<n>``, at most 63 characters."""
    base = service.split(".", 1)[0]
    suffix = f"-{dc}-{n}"
    return base[: 63 - len(suffix)] + suffix


@dataclass(frozen=True, slots=True)
class Replica:
    """One wanted container of a rollout."""

    name: str
    dc: str
    index: int
    host: str


def replicas(spec: ReleaseSpec, version: str) -> list[Replica]:
    """Every container a rollout of ``version`` wants, spread round-robin over each
    datacenter's hosts."""
    out = []
    for dc, count in sorted(spec.replicas.items()):
        hosts = spec.placement[dc].hosts if count else ()
        for n in range(1, count + 1):
            out.append(
                Replica(
                    container_name(spec.service, dc, version, n), dc, n, hosts[(n - 1) % len(hosts)]
                )
            )
    return out


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """Everything an engine needs to create one container."""

    name: str
    image: str
    command: tuple[str, ...]
    hostname: str
    network: str
    address: str
    mac: str
    cpu_period: int
    cpu_quota: int
    memory: int
    memory_swap: int
    persist: str  # host directory mounted read-write at /persist
    restart: str
    stop_timeout: int = 10
    labels: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    dns: tuple[str, ...] = ()
    extra_hosts: Mapping[str, str] = field(default_factory=dict)


def build(
    spec: ReleaseSpec, version: str, rollout: str, replica: Replica, address: str
) -> ContainerSpec:
    """The container for ``replica`` at ``address``."""
    place = spec.placement[replica.dc]
    labels = {
        **spec.labels,
        LABEL_SERVICE: spec.service,
        LABEL_VERSION: version,
        LABEL_DC: replica.dc,
        LABEL_ROLLOUT: rollout,
        LABEL_INDEX: str(replica.index),
    }
    env = {
        **spec.env,
        "ROLLING_SERVICE": spec.service,
        "ROLLING_VERSION": version,
        "ROLLING_DC": replica.dc,
        "ROLLING_IP": address,
    }
    return ContainerSpec(
        name=replica.name,
        image=spec.image,
        command=spec.command,
        hostname=hostname(spec.service, replica.dc, replica.index),
        network=place.network,
        address=address,
        mac=mac_for(address),
        cpu_period=CPU_PERIOD,
        cpu_quota=round(spec.resources.cores * CPU_PERIOD),
        memory=spec.resources.memory,
        memory_swap=spec.resources.memory,
        persist=f"{place.persist_root.rstrip('/')}/{address}",
        restart=spec.restart,
        stop_timeout=spec.stop_timeout,
        labels=labels,
        env=env,
        dns=place.dns,
        extra_hosts=place.extra_hosts,
    )
