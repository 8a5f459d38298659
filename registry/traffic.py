"""Traffic operations that span services, as pure functions over records."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from .errors import ValidationError
from .model import Service


def shift(services: Iterable[Service], source: str, target: str, percent: float) -> list[Service]:
    """Move ``percent`` of each traffic table's total weight from ``source`` to ``target``.

    Applies to every region table of every given service that gives ``source``
    a weight; at most what ``source`` has is moved (it never goes below zero).
    Returns only the services that changed. ``idc=60 cloud=40`` shifted by 20
    from idc to cloud becomes ``idc=40 cloud=60``.
    """
    if source == target:
        raise ValidationError("to", "must differ from 'from'")
    if not 0 < percent <= 100:
        raise ValidationError("percent", f"{percent} is outside (0, 100]")
    out = []
    for svc in services:
        tables = {}
        changed = False
        for region, table in svc.traffic.items():
            new = dict(table)
            have = new.get(source, 0)
            moved = min(have, round(sum(table.values()) * percent / 100))
            if moved > 0:
                new[source] = have - moved
                new[target] = new.get(target, 0) + moved
                changed = True
            tables[region] = new
        if changed:
            if not any(tables["default"].values()):
                raise ValidationError(f"{svc.name}.traffic.default", "would have no weight left")
            if any(w > 10000 for t in tables.values() for w in t.values()):
                raise ValidationError(f"{svc.name}.traffic", "a weight would exceed 10000")
            out.append(replace(svc, traffic=tables))
    return out
