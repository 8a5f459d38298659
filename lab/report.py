"""What the clients saw, per stage: ``report.json``, the plot and the Markdown summary.

The client regions write one JSON line per request (``t``, ``client``, ``name``, ``ok``
and ``dc``/``version``, or ``error``). ``build`` attributes each request to the stage
running at its time and counts requests, failures and the share of successful
requests per ``dc/version``; it is pure, so the tests feed it records directly.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BIN = 2.0  # seconds per point of the plot
COLOURS = {"idc/v1": "#1f77b4", "idc/v2": "#7fb3e0", "cloud/v1": "#ff7f0e", "cloud/v2": "#ffbf80"}


@dataclass
class StageRun:
    """One stage as it ran: its window and the operator actions with their output."""

    name: str
    summary: str
    started: float
    ended: float = 0.0
    actions: list[dict[str, Any]] = field(default_factory=list)


def read_records(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every complete JSON line of the client logs, oldest first."""
    records = []
    for path in paths:
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # a line cut short when a client was stopped
    records.sort(key=lambda r: float(r["t"]))
    return records


def shares(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Fraction of successful requests per ``dc/version`` (sorted keys, 4 decimals)."""
    counts = Counter(f"{r['dc']}/{r['version']}" for r in records if r.get("ok"))
    total = sum(counts.values())
    return {k: round(counts[k] / total, 4) for k in sorted(counts)} if total else {}


def build(stages: Sequence[StageRun], records: Sequence[dict[str, Any]],
          meta: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """The report: per stage its window, actions, requests, failures and shares; the
    totals over the whole run (requests outside every stage included) and every failure."""
    out_stages = []
    for stage in stages:
        inside = [r for r in records if stage.started <= float(r["t"]) < stage.ended]
        out_stages.append(
            {
                "name": stage.name,
                "summary": stage.summary,
                "started": round(stage.started, 3),
                "ended": round(stage.ended, 3),
                "actions": stage.actions,
                "requests": len(inside),
                "failed": sum(1 for r in inside if not r.get("ok")),
                "shares": shares(inside),
                "by_service": {
                    name: shares([r for r in inside if r["name"] == name])
                    for name in sorted({r["name"] for r in inside})
                },
            }
        )
    failures = [
        {"time": r["t"], "client": r["client"], "name": r["name"], "error": r.get("error", "")}
        for r in records
        if not r.get("ok")
    ]
    return {
        **meta,
        "stages": out_stages,
        "requests": len(records),
        "failed_requests": len(failures),
        "failures": failures,
        "shares": shares(records),
        # where the answers came from: "server" (fresh), "cache", "stale" (expired, served
        # while a refresh runs: a device asks for a name about every 3 s, the TTL is 2 s)
        "answer_sources": dict(Counter(str(r.get("source")) for r in records if r.get("ok"))),
    }


def series(records: Sequence[dict[str, Any]], start: float, end: float,
           width: float = BIN) -> tuple[list[float], dict[str, list[float]]]:  # fmt: skip
    """Per time bin (seconds from ``start``): the share of successful requests per
    ``dc/version`` key, for the plot."""
    bins = max(1, int((end - start) // width) + 1)
    counts: list[Counter[str]] = [Counter() for _ in range(bins)]
    for r in records:
        i = int((float(r["t"]) - start) // width)
        if r.get("ok") and 0 <= i < bins:
            counts[i][f"{r['dc']}/{r['version']}"] += 1
    keys = sorted({k for c in counts for k in c})
    xs = [i * width + width / 2 for i in range(bins)]
    out = {k: [c[k] / max(1, sum(c.values())) for c in counts] for k in keys}
    return xs, out


def plot(report: dict[str, Any], records: Sequence[dict[str, Any]], path: Path) -> None:
    """A PNG: the share of requests per datacenter/version over time, stages shaded; all
    requests on top, then one panel per service."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    stages = report["stages"]
    start = stages[0]["started"] if stages else float(records[0]["t"])
    end = stages[-1]["ended"] if stages else float(records[-1]["t"])
    names = sorted({r["name"] for r in records})
    panels = [("all requests", list(records))] + [
        (name, [r for r in records if r["name"] == name]) for name in names
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 3 + 1.6 * len(panels)), dpi=100,
                             sharex=True, gridspec_kw={"height_ratios": [2.2] + [1] * len(names)})  # fmt: skip
    axes = list(axes) if len(panels) > 1 else [axes]
    keys = sorted({f"{r['dc']}/{r['version']}" for r in records if r.get("ok")})
    for ax, (title, subset) in zip(axes, panels, strict=True):
        xs, ys = series(subset, start, end)
        ax.stackplot(xs, *(ys.get(k, [0.0] * len(xs)) for k in keys), labels=keys,
                     colors=[COLOURS.get(k, "#999999") for k in keys], alpha=0.9)  # fmt: skip
        for i, stage in enumerate(stages):
            a, b = stage["started"] - start, stage["ended"] - start
            ax.axvspan(a, b, color="black", alpha=0.07 if i % 2 else 0.0)
            ax.axvline(a, color="black", linewidth=0.6)
        failed = [float(r["t"]) - start for r in subset if not r.get("ok")]
        if failed:
            ax.plot(failed, [0.03] * len(failed), "rx", label="failed request")
        ax.set_xlim(0, end - start)
        ax.set_ylim(0, 1)
        ax.set_ylabel(title if title == "all requests" else title.split(".")[0], fontsize=9)
    for stage in stages:
        a, b = stage["started"] - start, stage["ended"] - start
        label = stage["name"].split(":")[0] if ":" in stage["name"] else stage["name"]
        label = (
            label.replace(" release of ", "\n").replace(": ", "\n").replace(" the idc", "\nthe idc")
        )
        axes[0].text((a + b) / 2, 1.02, label, ha="center", va="bottom", fontsize=7,
                     transform=axes[0].get_xaxis_transform())  # fmt: skip
    axes[0].set_title(
        f"What the clients saw: share of requests per datacenter/version; "
        f"{report['requests']} requests, {report['failed_requests']} failed",
        pad=30,
    )
    axes[0].legend(loc="lower left", fontsize=8, ncol=len(keys) + 1)
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _pct(value: float) -> str:
    return f"{value * 100:.0f} %"


def markdown(report: dict[str, Any]) -> str:
    """The one-page summary: a table of the stages, their commands, and any failure."""
    lines = [
        "# httpdns lab: the four stages, end to end",
        "",
        f"{report['requests']} client requests from {report.get('clients', '?')} simulated "
        f"devices in regions {', '.join(report.get('regions', []))}, "
        f"**{report['failed_requests']} failed**; "
        f"{report.get('duration', 0):.0f} s ({'quick' if report.get('quick') else 'full'} run).",
        "Answers used: "
        + ", ".join(f"{k} {v}" for k, v in sorted(report.get("answer_sources", {}).items()))
        + ".",
        "",
        "| stage | seconds | requests | failed | shares (dc/version) |",
        "|---|---:|---:|---:|---|",
    ]
    for s in report["stages"]:
        share = ", ".join(f"{k} {_pct(v)}" for k, v in s["shares"].items())
        lines.append(f"| {s['name']} | {s['ended'] - s['started']:.0f} | {s['requests']} | "
                     f"{s['failed']} | {share} |")  # fmt: skip
    lines += ["", "## Operator actions", ""]
    for s in report["stages"]:
        lines.append(f"**{s['name']}** — {s['summary']}")
        lines.append("")
        for a in s["actions"]:
            lines.append(
                f"- `{a['command']}`" + (" (dry run only)" if a.get("dry_run_only") else "")
            )
        lines.append("")
    if report["failures"]:
        lines += ["## Failed requests", "", "| time | client | name | error |", "|---|---|---|---|"]
        for f in report["failures"][:50]:
            lines.append(f"| {f['time']} | {f['client']} | {f['name']} | {f['error']} |")
        lines.append("")
    return "\n".join(lines)


def write(report: dict[str, Any], records: Sequence[dict[str, Any]], out: Path) -> None:
    """``report.json``, ``shares.png`` and ``summary.md`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    if records:
        plot(report, records, out / "shares.png")
    (out / "summary.md").write_text(markdown(report))
