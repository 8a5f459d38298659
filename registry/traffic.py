"""Traffic operations that span services, as pure functions over records."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from . import validation as v
from .errors import ValidationError
from .model import Datacenter, Service


@dataclass(frozen=True, slots=True)
class Move:
    """What a shift did to one traffic table: ``moved`` weight from the source to the
    target, and why less than asked moved (``note``, empty when it moved all it was asked)."""

    service: str
    region: str
    before: Mapping[str, int]
    after: Mapping[str, int]
    asked: int
    moved: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (admin API answer)."""
        out = {
            "service": self.service,
            "region": self.region,
            "before": dict(self.before),
            "after": dict(self.after),
            "asked": self.asked,
            "moved": self.moved,
        }
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True, slots=True)
class Skip:
    """A service (``region`` empty) or a table a shift left alone, and why."""

    service: str
    region: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (admin API answer)."""
        return {"service": self.service, "region": self.region or None, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class ShiftResult:
    """The services a shift changed, every table it moved weight in, and what it skipped."""

    services: list[Service] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)


def ineligible(service: Service, dc: Datacenter | None) -> str | None:
    """Why ``dc`` can never take traffic of ``service`` (None when it can)."""
    if dc is None:
        return "unknown datacenter"
    if dc.drained:
        return f"{dc.name} is drained"
    if service.access == "rw" and not dc.writable:
        return f"{dc.name} is read-only and the service is rw"
    return None


def shift(
    services: Iterable[Service],
    source: str,
    target: str,
    percent: float,
    datacenters: Mapping[str, Datacenter] | None = None,
    *,
    selected: bool = True,
) -> ShiftResult:
    """Move ``percent`` % of the source's weight to ``target`` in each table it touches.

    ``idc=60 cloud=40`` shifted by 50 % from idc to cloud becomes ``idc=30 cloud=70``
    (half of idc's 60). The moved amount is rounded to a whole weight; a table where it
    rounds to 0, or where the target would pass the maximum weight (then less moves),
    is named with the reason. ``selected`` says the services were named by the operator:
    when False (every service), only services that already use both datacenters and for
    which the target is eligible (``datacenters``: writable for ``rw``, not drained) are
    touched, and in them only tables that already name the target; the others are
    skipped with the reason. Returns the changed services, the moves and the skips.
    """
    if source == target:
        raise ValidationError("to", "must differ from 'from'")
    if not 0 < percent <= 100:
        raise ValidationError("percent", f"{percent} is outside (0, 100]")
    dcs = datacenters or {}
    result = ShiftResult()
    for svc in services:
        uses = {dc for t in svc.traffic.values() for dc in t}
        if not selected:
            if source not in uses or target not in uses:
                missing = source if source not in uses else target
                result.skipped.append(Skip(svc.name, "", f"does not use {missing}"))
                continue
            if datacenters is not None:
                why = ineligible(svc, dcs.get(target))
                if why is not None:
                    result.skipped.append(Skip(svc.name, "", why))
                    continue
        tables: dict[str, dict[str, int]] = {}
        changed = False
        for region, table in svc.traffic.items():
            new = dict(table)
            tables[region] = new
            have = table.get(source, 0)
            if have <= 0:
                if source in table or selected:
                    result.skipped.append(Skip(svc.name, region, f"{source} has no weight"))
                continue
            if not selected and target not in table:
                result.skipped.append(Skip(svc.name, region, f"the table has no {target}"))
                continue
            asked = round(have * percent / 100)
            room = v.MAX_WEIGHT - table.get(target, 0)
            moved, note = min(asked, room), ""
            if asked == 0:
                note = f"{percent:g} % of {have} rounds to 0"
            elif moved < asked:
                note = f"capped: {target} would pass the maximum weight {v.MAX_WEIGHT}"
            if moved <= 0:
                result.skipped.append(Skip(svc.name, region, note))
                continue
            new[source] = have - moved
            new[target] = table.get(target, 0) + moved
            changed = True
            result.moves.append(Move(svc.name, region, dict(table), new, asked, moved, note))
        if changed:
            if not any(tables["default"].values()):
                raise ValidationError(f"{svc.name}.traffic.default", "would have no weight left")
            result.services.append(replace(svc, traffic=tables))
    return result
