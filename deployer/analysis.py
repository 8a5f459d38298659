"""Rollout analysis checks (``[[analysis]]`` in a release spec): the judgement a canary
step's hold would ask for, before it advances.

A check is either a Prometheus query with a threshold::

    [[analysis]]
    name = "errors"
    prometheus = "http://prometheus:9090"
    query = 'sum(rate(http_errors_total{version="{version}"}[1m]))'
    max = 0.01
    timeout = "5m"

or the observed canary share of the answers the fleet gave (``httpdns shares``) against
the configured canary percentage::

    [[analysis]]
    name = "canary-share"
    share_tolerance = 2    # points

Each evaluation gives a value or no data (an empty query result, NaN, no answers
counted yet, Prometheus unreachable). ``decide`` turns the last values of every check
into what the step does: **fail** (a value past its threshold) aborts; **no data**
holds the step — never passes, never fails — until the check's ``timeout`` since the
step began, then aborts; every check passing lets the step advance.

Each check is evaluated every ``interval`` (default 10 s) while a canary step holds
(``deployer.controller``); the last values are kept in the rollout's history
(``deployer.rollout.record_analysis``) so ``rolling status`` shows them.

Pure except ``query_prometheus`` (one HTTP GET of the Prometheus API).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from . import units
from .errors import SpecError

if TYPE_CHECKING:
    import aiohttp

DEFAULT_TIMEOUT = 300.0
DEFAULT_INTERVAL = 10.0
_KEYS = frozenset(
    {"name", "prometheus", "query", "max", "min", "share_tolerance", "timeout", "interval"}
)

Verdict = Literal["pass", "fail", "nodata"]
Decision = Literal["proceed", "hold", "abort"]


@dataclass(frozen=True, slots=True)
class Check:
    """One ``[[analysis]]`` entry, validated."""

    name: str
    prometheus: str | None = None
    query: str | None = None
    max: float | None = None
    min: float | None = None
    share_tolerance: float | None = None
    timeout: float = DEFAULT_TIMEOUT
    interval: float = DEFAULT_INTERVAL  # seconds between two evaluations

    @classmethod
    def from_dict(cls, index: int, data: Any) -> Check:
        """Validate one entry (``analysis[index]`` in messages)."""
        where = f"analysis[{index}]"
        if not isinstance(data, Mapping):
            raise SpecError(where, "must be a table")
        unknown = sorted(str(k) for k in set(data) - _KEYS)
        if unknown:
            raise SpecError(f"{where}.{unknown[0]}", "unknown key")
        name = data.get("name", f"check{index}")
        if not isinstance(name, str) or not name:
            raise SpecError(f"{where}.name", "must be a non-empty string")

        def number(key: str) -> float | None:
            v = data.get(key)
            if v is None:
                return None
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise SpecError(f"{where}.{key}", f"must be a number, not {v!r}")
            return float(v)

        check = cls(
            name=name,
            prometheus=data.get("prometheus"),
            query=data.get("query"),
            max=number("max"),
            min=number("min"),
            share_tolerance=number("share_tolerance"),
            timeout=units.duration(f"{where}.timeout", data.get("timeout", DEFAULT_TIMEOUT)),
            interval=units.duration(f"{where}.interval", data.get("interval", DEFAULT_INTERVAL)),
        )
        if check.interval <= 0:
            raise SpecError(f"{where}.interval", "must be above zero")
        if check.share_tolerance is not None:
            if check.prometheus or check.query or check.max is not None or check.min is not None:
                raise SpecError(where, "share_tolerance stands alone (no query, max or min)")
            if check.share_tolerance < 0:
                raise SpecError(f"{where}.share_tolerance", "must be >= 0")
            return check
        for key in ("prometheus", "query"):
            v = getattr(check, key)
            if not isinstance(v, str) or not v.strip():
                raise SpecError(f"{where}.{key}", "is required (or share_tolerance)")
        if not str(check.prometheus).startswith(("http://", "https://")):
            raise SpecError(f"{where}.prometheus", "must be an http:// or https:// URL")
        if check.max is None and check.min is None:
            raise SpecError(where, "needs max or min")
        return check

    def to_dict(self) -> dict[str, Any]:
        """The stored form (``from_dict`` reads it back)."""
        out: dict[str, Any] = {"name": self.name, "timeout": self.timeout,
                               "interval": self.interval}  # fmt: skip
        for key in ("prometheus", "query", "max", "min", "share_tolerance"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


def checks(value: Any) -> tuple[Check, ...]:
    """The ``analysis`` array of a spec."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise SpecError("analysis", "must be an array of tables ([[analysis]])")
    found = tuple(Check.from_dict(i, v) for i, v in enumerate(value))
    names = [c.name for c in found]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise SpecError("analysis", f"two checks are named {dup!r}")
    return found


def judge(check: Check, value: float | None) -> Verdict:
    """One check's verdict on one value (None: no data)."""
    if value is None or math.isnan(value):
        return "nodata"
    if check.share_tolerance is not None:
        return "fail" if value > check.share_tolerance else "pass"
    if check.max is not None and value > check.max:
        return "fail"
    if check.min is not None and value < check.min:
        return "fail"
    return "pass"


def threshold(check: Check) -> str:
    """The threshold as people read it (``max 0.01``, ``share within 2 points``)."""
    if check.share_tolerance is not None:
        return f"share within {check.share_tolerance:g} points"
    parts = [f"min {check.min:g}"] if check.min is not None else []
    parts += [f"max {check.max:g}"] if check.max is not None else []
    return ", ".join(parts)


def decide(
    found: Sequence[Check], values: Mapping[str, float | None], since: float, now: float
) -> tuple[Decision, str]:
    """What a step does given every check's last value: ``(decision, why)``.

    A failing check aborts at once; a check without data holds the step until its
    timeout (counted from ``since``, when the step began), then aborts; else proceed.
    """
    waiting = []
    for check in found:
        value = values.get(check.name)
        verdict = judge(check, value)
        if verdict == "fail":
            return "abort", f"analysis {check.name}: {value:g} is past {threshold(check)}"
        if verdict == "nodata":
            if now - since >= check.timeout:
                return "abort", f"analysis {check.name}: no data for {check.timeout:g}s"
            waiting.append(check.name)
    if waiting:
        return "hold", f"waiting for data from {', '.join(waiting)}"
    return "proceed", "every analysis check passes" if found else "no analysis checks"


def share_value(shares: Mapping[str, Any], canary: str) -> float | None:
    """For a share check: the distance in points between the canary version's observed and
    configured share, from a ``GET /api/v1/services/{name}/shares`` document (None: no
    answers counted yet)."""
    for row in shares.get("versions", []):
        if row.get("name") == canary:
            delta = row.get("delta")
            return None if delta is None else abs(float(delta))
    return None if not shares.get("answers") else float("inf")  # canary never answered


def expand(check: Check, service: str, version: str, previous: str | None) -> Check:
    """The check with ``{service}``, ``{version}`` (the canary) and ``{previous}`` (the
    stable version) replaced in its query."""
    if check.query is None:
        return check
    query = check.query.replace("{service}", service).replace("{version}", version)
    return replace(check, query=query.replace("{previous}", previous or ""))


def vector_value(result: Any, check: Check) -> float | None:
    """The value of an instant query's result: a scalar, or a vector's worst sample
    (the highest against ``max``, the lowest against ``min``); None when empty."""
    if not isinstance(result, Mapping):
        return None
    kind, data = result.get("resultType"), result.get("result")
    try:
        if kind == "scalar" and isinstance(data, list):
            values = [float(data[1])]
        elif kind == "vector" and isinstance(data, list):
            values = [float(s["value"][1]) for s in data]
        else:
            return None
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return None
    return max(values) if check.max is not None else min(values)


async def query_prometheus(
    session: aiohttp.ClientSession, check: Check, timeout: float = 5.0
) -> float | None:
    """Evaluate a Prometheus check now (None: no data, or Prometheus did not answer)."""
    import aiohttp  # only the controller evaluates: the pure parts import no HTTP client

    assert check.prometheus is not None and check.query is not None
    url = check.prometheus.rstrip("/") + "/api/v1/query"
    try:
        async with session.get(
            url, params={"query": check.query}, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as resp:
            if resp.status != 200:
                return None
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    if not isinstance(body, Mapping) or body.get("status") != "success":
        return None
    return vector_value(body.get("data"), check)
