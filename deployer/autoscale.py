"""Autoscaling as a recommendation (the source article's "future plan"): measure what a
service costs per 1,000 queries per second, then size it with ``plan.capacity``.

The load comes from the service's queries per second (a Prometheus query over the
nodes' answer counters, or a figure given by hand) and from its containers' CPU and
memory as the cgroup files report them. Cost per kQPS = what the containers use /
(QPS / 1000); the traffic split is the service's own default traffic table. Nothing
changes until an operator records the result as a scale intent (``--apply``).
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .engine import Stats
from .errors import DeployerError, SpecError
from .plan import DatacenterPlan, capacity

DEFAULT_QUERY = 'sum(rate(httpdns_answers_total{{service="{service}"}}[5m]))'


class MetricsError(DeployerError):
    """The load figures could not be read."""

    status = 502
    code = "metrics_unavailable"


@dataclass(frozen=True, slots=True)
class Load:
    """What a service carried and used at one moment."""

    qps: float
    cores: float  # CPU in use across its containers
    memory: int  # bytes in use across its containers
    containers: int

    @classmethod
    def measure(cls, qps: float, stats: Iterable[Stats]) -> Load:
        """The load from a QPS figure and the containers' figures."""
        rows = list(stats)
        return cls(qps, sum(s.cpu_percent for s in rows) / 100,
                   sum(s.memory_bytes for s in rows), len(rows))  # fmt: skip

    @property
    def cpu_per_kqps(self) -> float:
        """Cores per 1,000 QPS."""
        return self.cores / (self.qps / 1000)

    @property
    def mem_per_kqps(self) -> int:
        """Bytes per 1,000 QPS."""
        return round(self.memory / (self.qps / 1000))


def recommend(
    load: Load,
    split: Mapping[str, float],
    container: tuple[float, int],
    headroom: float = 0.3,
    minimum: int = 2,
) -> list[DatacenterPlan]:
    """Containers per datacenter for the measured load."""
    if load.qps <= 0:
        raise SpecError("qps", "no load measured (0 QPS): nothing to derive a cost from")
    if load.containers == 0:
        raise SpecError("containers", "no running container reported figures")
    return capacity(load.qps, load.cpu_per_kqps, load.mem_per_kqps, container, headroom,
                    split, minimum)  # fmt: skip


def split_of(traffic: Mapping[str, Mapping[str, int]], dcs: Iterable[str]) -> dict[str, float]:
    """Percent per datacenter from a service's default traffic table (among ``dcs``)."""
    table = {dc: w for dc, w in traffic.get("default", {}).items() if dc in set(dcs)}
    total = sum(table.values())
    if total <= 0:
        raise SpecError(
            "traffic", "the service's default traffic table gives no datacenter a share"
        )
    return {dc: w / total * 100 for dc, w in sorted(table.items())}


def prometheus_qps(url: str, query: str, timeout: float = 10.0) -> float:
    """The value of an instant Prometheus query (``/api/v1/query``), e.g. the rate of a
    service's answers."""
    full = url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        with urllib.request.urlopen(full, timeout=timeout) as resp:
            body = json.loads(resp.read())
    except (OSError, ValueError) as exc:
        raise MetricsError(f"prometheus {url}: {exc}") from exc
    if body.get("status") != "success":
        raise MetricsError(f"prometheus {url}: {body.get('error') or body.get('status')}")
    result = body.get("data", {}).get("result") or []
    if not result:
        raise MetricsError(f"prometheus {url}: the query {query!r} returned no series")
    try:
        return sum(float(r["value"][1]) for r in result)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise MetricsError(f"prometheus {url}: unexpected answer {result!r}") from exc
