"""The status of a rollout as plain data: phase, step, percent, healthy/total per
datacenter, each analysis check's last value, for the CLI's live view, ``--json`` and
the admin API."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from registry.liveness import is_controller
from registry.model import Heartbeat, Rollout
from registry.snapshot import Snapshot

from .analysis import threshold
from .container import replicas
from .rollout import STARTING
from .spec import ReleaseSpec


def summary(snap: Snapshot, r: Rollout) -> dict[str, Any]:
    """Everything the status view shows for one rollout."""
    spec = ReleaseSpec.from_dict(r.spec)
    eps = snap.endpoints_of(r.service)
    dcs: dict[str, dict[str, int]] = {}
    for rep in replicas(spec, r.version):
        row = dcs.setdefault(rep.dc, {"healthy": 0, "total": 0})
        row["total"] += 1
        ep = eps.get(rep.name)
        if ep is not None and ep.healthy:
            row["healthy"] += 1
    if r.phase == STARTING:
        for dc, n in r.ready.items():
            if dc in dcs:
                dcs[dc]["healthy"] = n
    release = snap.releases.get(r.service)
    return {
        "service": r.service,
        "id": r.id,
        "version": r.version,
        "previous": r.previous,
        "phase": r.phase,
        "step": r.step + 1 if r.step >= 0 else None,
        "steps": len(spec.steps),
        "percent": r.percent,
        "paused": r.paused,
        "intent": r.intent,
        "message": r.message,
        "since": r.since,
        "created": r.created,
        "actor": r.actor,
        "datacenters": dcs,
        "release": release.to_dict() if release else None,
        "analysis": analysis(r, spec),
    }


def analysis(r: Rollout, spec: ReleaseSpec) -> list[dict[str, Any]]:
    """Each ``[[analysis]]`` check with its last value (from the newest event that
    recorded one: the current step's, or the abort's): ``name``, ``value`` (None: no
    data yet), ``verdict`` (``pass``, ``fail``, ``nodata``, or None: never evaluated),
    ``threshold``, ``step`` and ``time`` of the evaluation."""
    last: dict[str, Any] = {}
    for e in reversed(r.events):
        if isinstance(e.get("analysis"), Mapping):
            last = {
                "rows": e["analysis"],
                "time": e.get("time"),
                "percent": e.get("at_percent", e.get("percent")),
            }
            break
    rows = last.get("rows", {})
    out = []
    for check in spec.analysis:
        row = rows.get(check.name, {})
        out.append({
            "name": check.name,
            "value": row.get("value"),
            "verdict": row.get("verdict"),
            "threshold": threshold(check),
            "percent": last.get("percent") if row else None,
            "time": last.get("time") if row else None,
        })  # fmt: skip
    return out


def analysis_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per analysis check of each status row, for people."""
    out = []
    for s in rows:
        for a in s.get("analysis") or ():
            if a["verdict"] is None:
                seen = "not evaluated yet"
            elif a["verdict"] == "nodata":
                seen = "no data"
            else:
                value = "inf" if a["value"] is None else f"{a['value']:g}"
                seen = f"{value} {a['verdict']}"
            at = f" at {a['percent']:g}%" if a["percent"] is not None else ""
            out.append(f"  {s['service']} analysis {a['name']}: {seen}{at} ({a['threshold']})")
    return out


def history_entry(r: Rollout) -> dict[str, Any]:
    """One line of ``rolling history`` with the rollout's events."""
    return {
        "id": r.id,
        "version": r.version,
        "previous": r.previous,
        "phase": r.phase,
        "created": r.created,
        "actor": r.actor,
        "message": r.message,
        "events": [_plain(e) for e in r.events],
    }


def _plain(value: Any) -> Any:
    """A frozen record value as JSON-ready dicts and lists (events nest analysis rows)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


STALE_AFTER = 3  # heartbeat periods without a pass: the controller is not running


def controllers(
    entries: Iterable[Mapping[str, Any]], now: float, legacy: Iterable[Heartbeat] = ()
) -> dict[str, Any]:
    """Every controller's last reconcile time, and whether any is running (one reconciled
    within 3 of its periods). ``entries`` are the store's liveness entries
    (``Store.nodes()``: the controllers' are picked out); ``legacy`` the ``heartbeat``
    records controllers before 2026-12 wrote into the registry (``snap.heartbeats``), so
    that one of those still running is not reported missing."""
    beats: dict[str, tuple[float, float]] = {}  # controller id -> (last pass, period)
    for h in legacy:
        beats[h.id] = (h.time, h.every)
    for e in entries:
        if not is_controller(e) or not _number(e.get("time")) or not _number(e.get("every")):
            continue
        name, t = str(e.get("id")), float(e["time"])
        if name not in beats or beats[name][0] < t:
            beats[name] = (t, float(e["every"]))
    rows = [
        {"id": name, "last_reconcile": t, "age": round(max(now - t, 0.0), 1),
         "running": now - t <= STALE_AFTER * every}
        for name, (t, every) in sorted(beats.items(), key=lambda kv: (-kv[1][0], kv[0]))
    ]  # fmt: skip
    return {
        "running": any(r["running"] for r in rows),
        "last_reconcile": rows[0]["last_reconcile"] if rows else None,
        "controllers": rows,
    }


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def controller_line(info: dict[str, Any]) -> str:
    """One line for people: who reconciled when, or "controller not running"."""
    rows = info["controllers"]
    if info["running"]:
        alive = [f"{r['id']} reconciled {r['age']:g}s ago" for r in rows if r["running"]]
        return "controller: " + ", ".join(alive)
    if rows:
        return (f"controller not running: the last reconcile was {rows[0]['age']:g}s ago "
                f"({rows[0]['id']}); start `rolling controller`")  # fmt: skip
    return "controller not running: no controller has reconciled yet; start `rolling controller`"
