"""Answer shares: what clients were actually told, next to what the registry says.

Pure: every node (every worker) counts the answers it gives per (service, dc,
version, cohort) (``httpdns_answers_total``, ``httpdns.metrics``); given those
counters from N nodes at two times, ``observe`` sums what changed between them
for one service and ``report`` sets the observed split per datacenter and per
version beside the configured one (the ``default`` traffic table over the
datacenters that can serve, and the release's canary percentage).

A counter that went down between the two times belongs to a restarted process:
its whole new value is what it answered since (as Prometheus' ``increase``). A
node seen only at the later time counts from zero; one seen only at the
earlier time (it stopped) adds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Answer = tuple[str, str, str, str]  # service, dc, version, cohort
Counters = Mapping[Answer, int | float]


@dataclass(frozen=True, slots=True)
class Observed:
    """Answers of one service in a window, per (dc, version), and the window's length."""

    service: str
    counts: Mapping[tuple[str, str], float]
    seconds: float
    nodes: int

    @property
    def total(self) -> float:
        """Every answer counted."""
        return sum(self.counts.values())


def _delta(now: float, then: float | None) -> float:
    if then is None or now < then:  # new node, or a restarted process: it counted from zero
        return now
    return now - then


def observe(
    service: str,
    before: Mapping[str, Counters],
    after: Mapping[str, Counters],
    seconds: float,
) -> Observed:
    """Answers of ``service`` per (dc, version) between two readings of every node's
    counters (node id -> counters), ``seconds`` apart."""
    counts: dict[tuple[str, str], float] = {}
    for node, now in after.items():
        old = before.get(node, {})
        for key, value in now.items():
            if key[0] != service:
                continue
            d = _delta(value, old.get(key))
            if d:
                dv = (key[1], key[2])
                counts[dv] = counts.get(dv, 0) + d
    return Observed(service, counts, seconds, len(after))


def configured_dcs(traffic: Mapping[str, int], usable: Iterable[str]) -> dict[str, float]:
    """Percent per datacenter of a weight table, over the datacenters that can serve
    (weight > 0, not drained, writable when the service writes, with healthy endpoints)."""
    ok = set(usable)
    weights = {dc: w for dc, w in traffic.items() if w > 0 and dc in ok}
    total = sum(weights.values())
    return {dc: 100.0 * w / total for dc, w in sorted(weights.items())} if total else {}


def configured_versions(
    stable: str | None, canary: str | None, canary_percent: float
) -> dict[str, float]:
    """Percent per version of a release."""
    if canary is None or canary == stable or canary_percent <= 0:
        return {stable or "none": 100.0}
    if canary_percent >= 100:
        return {canary: 100.0}
    return {stable or "none": 100.0 - canary_percent, canary: float(canary_percent)}


def _percent(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def report(
    observed: Observed, dcs: Mapping[str, float], versions: Mapping[str, float]
) -> dict[str, Any]:
    """The shares document (``GET /api/v1/services/{name}/shares``): per datacenter and per
    version the answers counted, their percent, the configured percent and the difference
    in points; ``by_dc_version`` the joint counts."""
    total = observed.total
    by_dc: dict[str, float] = {}
    by_version: dict[str, float] = {}
    for (dc, version), n in observed.counts.items():
        by_dc[dc] = by_dc.get(dc, 0) + n
        by_version[version] = by_version.get(version, 0) + n

    def rows(seen: Mapping[str, float], conf: Mapping[str, float]) -> list[dict[str, Any]]:
        out = []
        for key in sorted(set(seen) | set(conf)):
            pct = _percent(seen.get(key, 0), total)
            want = conf.get(key, 0.0)
            out.append(
                {
                    "name": key,
                    "answers": seen.get(key, 0),
                    "percent": pct,
                    "configured": round(want, 2),
                    "delta": None if pct is None else round(pct - want, 2),
                }
            )
        return out

    return {
        "service": observed.service,
        "window_seconds": round(observed.seconds, 3),
        "nodes": observed.nodes,
        "answers": total,
        "datacenters": rows(by_dc, dcs),
        "versions": rows(by_version, versions),
        "by_dc_version": [
            {"dc": dc, "version": v, "answers": n, "percent": _percent(n, total)}
            for (dc, v), n in sorted(observed.counts.items())
        ],
    }


def max_delta(doc: Mapping[str, Any], what: str = "versions") -> float | None:
    """The largest distance, in points, between observed and configured (None: no data)."""
    deltas = [abs(r["delta"]) for r in doc[what] if r["delta"] is not None]
    return max(deltas) if deltas else None
