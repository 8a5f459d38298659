"""Capacity planning: "ask for compute, not machines".

A team states its cost per unit of load (cores and memory per 1,000 QPS), the load
to carry and the container shape; the plan gives the containers per datacenter.
Each container is planned to run at most ``1 - headroom`` of its size (headroom 0.3
keeps 30 % spare for bursts and for losing a container), the larger of the CPU and
the memory need decides, and every datacenter that takes traffic runs at least
``minimum`` containers (availability comes from several stateless copies).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import SpecError


@dataclass(frozen=True, slots=True)
class DatacenterPlan:
    """The containers one datacenter needs."""

    dc: str
    share: float  # percent of the load
    qps: float
    cores: float  # needed, before headroom
    memory: int  # bytes needed, before headroom
    containers: int
    bound: str  # "cpu", "memory" or "minimum": what decided the count

    def to_dict(self) -> dict[str, object]:
        return {
            "dc": self.dc, "share": self.share, "qps": self.qps, "cores": self.cores,
            "memory": self.memory, "containers": self.containers, "bound": self.bound,
        }  # fmt: skip


def capacity(
    qps: float,
    cpu_per_kqps: float,
    mem_per_kqps: int,
    container: tuple[float, int],
    headroom: float = 0.3,
    split: Mapping[str, float] | None = None,
    minimum: int = 2,
) -> list[DatacenterPlan]:
    """Containers per datacenter for ``qps`` split by ``split`` (percent; default all in
    one line called ``total``)."""
    if qps < 0 or cpu_per_kqps < 0 or mem_per_kqps < 0:
        raise SpecError("qps", "load and costs must not be negative")
    if not 0 <= headroom < 1:
        raise SpecError("headroom", f"{headroom} is outside [0, 1)")
    if minimum < 0:
        raise SpecError("minimum", "must not be negative")
    split = dict(split or {"total": 100.0})
    total = sum(split.values())
    if total <= 0 or any(v < 0 for v in split.values()):
        raise SpecError("split", "shares must be >= 0 and not all zero")
    cores, memory = container
    usable_cores, usable_mem = cores * (1 - headroom), memory * (1 - headroom)
    out = []
    for dc, weight in split.items():
        share = weight / total * 100
        dc_qps = qps * share / 100
        need_cores = dc_qps / 1000 * cpu_per_kqps
        need_mem = round(dc_qps / 1000 * mem_per_kqps)
        by_cpu = math.ceil(need_cores / usable_cores - 1e-9)
        by_mem = math.ceil(need_mem / usable_mem - 1e-9)
        count = max(by_cpu, by_mem)
        bound = "cpu" if by_cpu >= by_mem else "memory"
        if weight > 0 and count < minimum:
            count, bound = minimum, "minimum"
        out.append(DatacenterPlan(dc, round(share, 2), dc_qps, round(need_cores, 3), need_mem,
                                  count, bound))  # fmt: skip
    return out
