"""Output shared by the commands: JSON for scripts, one line per completed write, rich
tables, and the short text forms of records (traffic tables, releases, flags)."""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping
from typing import Any

import click
from rich.console import Console

from .client import Client


def console() -> Console:
    """A console for tables; when piped it keeps rows whole (for grep) rather than fit 80
    columns."""
    out = Console(highlight=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = 160
    return out


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2))


def done(client: Client, what: str, data: dict[str, Any], summary: str = "") -> None:
    """Report a completed write (one line naming the new revision) or a dry run (what
    would change), then any warnings; with ``--json`` the answer as it came."""
    if client.json:
        print_json(data)
        return
    if data.get("dry_run"):
        click.echo(f"dry run at revision {data.get('revision', '?')}, nothing written: {what}")
        dry_run_report(data)
    else:
        tail = f": {summary}" if summary else ""
        click.echo(f"{what}{tail} (revision {data.get('revision', '?')})")
    notes(data)


def notes(data: Mapping[str, Any]) -> None:
    """Warnings (weights that never apply) and services a forced change left empty."""
    for text in data.get("warnings") or []:
        click.echo(f"warning: {text}")
    empty = data.get("empty") or {}
    if empty and not data.get("dry_run"):
        click.echo(f"warning: answering empty now: {fmt_empty(empty)}")


def fmt_empty(empty: Mapping[str, Any]) -> str:
    """``a.example.org (default, north), b.example.org (default)``."""
    return ", ".join(f"{n} ({', '.join(r)})" for n, r in sorted(empty.items()))


def pct(share: Any) -> str:
    """A share 0-1 as a percentage: ``37.5%``."""
    return f"{float(share) * 100:.1f}%" if isinstance(share, int | float) else "-"


def fmt_split(split: Mapping[str, Any]) -> str:
    """``idc 60.0% cloud 40.0%`` (``none``: clients answered empty)."""
    return " ".join(f"{dc} {pct(share)}" for dc, share in split.items()) or "-"


def fmt_diff(change: Mapping[str, Any]) -> str:
    """One change as a readable diff: ``service a.example.org: traffic.default.idc 60 -> 30``;
    a created or deleted record is named with ``+`` or ``-``."""
    kind, key, verb = change.get("kind"), change.get("key"), change.get("verb")
    head = f"{verb + ' ' if verb else ''}{kind} {key}"
    before, after = change.get("before"), change.get("after", change.get("value"))
    if "before" not in change:
        return f"{head}: {change.get('op')} (previous value not recorded)"
    if before is None and after is None:
        return head
    if before is None:
        return f"{head}: created"
    if after is None:
        return f"{head}: deleted"
    fields = [f"{k} {_was(v)} -> {_was(w)}" for k, v, w in _leaves(before, after)]
    return f"{head}: {'; '.join(fields) or 'unchanged'}"


def _was(value: Any) -> str:
    return "(none)" if value is None else fmt_scalar(value)


def _leaves(before: Any, after: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """The (dotted field, old, new) pairs that differ between two JSON values."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        out = []
        for k in list(before) + [k for k in after if k not in before]:
            out += _leaves(before.get(k), after.get(k), f"{prefix}{k}.")
        return out
    return [] if before == after else [(prefix.rstrip("."), before, after)]


def dry_run_report(data: Mapping[str, Any]) -> None:
    """What a dry run found: the changes, then per service and region the split of the
    client sample before -> after and the share of clients whose answer would change."""
    for change in data.get("changes") or []:
        click.echo(f"  {fmt_diff(change)}")
    impact = data.get("impact") or {}
    for name, svc in (impact.get("services") or {}).items():
        if svc.get("new"):
            click.echo(f"  {name}: new service")
            continue
        if svc.get("deleted"):
            lost = "; every client loses its answer" if svc.get("moved") else ""
            click.echo(f"  {name}: deleted{lost}")
            continue
        for region, row in (svc.get("regions") or {}).items():
            click.echo(
                f"  {name} [{region}]: {fmt_split(row.get('before') or {})} -> "
                f"{fmt_split(row.get('after') or {})}; {pct(row.get('moved'))} of clients move"
            )
    if impact.get("unchanged"):
        click.echo(f"  {impact['unchanged']} more services: no answer changes")
    if impact:
        click.echo(
            f"clients whose answer would change: up to {pct(impact.get('moved'))} "
            f"(sample of {impact.get('sample')} client buckets)"
        )


def yes(value: Any) -> str:
    """``yes`` or ``no``."""
    return "yes" if value else "no"


def fmt_table(table: Mapping[str, Any]) -> str:
    """One traffic table: ``idc=70 cloud=30`` (``-`` when empty)."""
    return " ".join(f"{dc}={w}" for dc, w in table.items()) or "-"


def fmt_traffic(traffic: Mapping[str, Any], sep: str = "\n") -> str:
    """Every region's table: ``default: idc=70 cloud=30`` joined by ``sep``."""
    return sep.join(f"{region}: {fmt_table(t)}" for region, t in traffic.items()) or "-"


def fmt_release(release: Mapping[str, Any] | None) -> str:
    """``v1``, or ``v1 + v2 @ 5.0%`` with a canary."""
    if not release:
        return "-"
    text = str(release.get("stable") or "-")
    if release.get("canary"):
        text += f" + {release['canary']} @ {release.get('canary_percent', 0)}%"
    return text


def fmt_scalar(value: Any) -> str:
    """A short text for any JSON value: 4 significant digits, ``k=v`` pairs, ``-`` for
    None (never the word ``None``)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return " ".join(f"{k}={fmt_scalar(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(fmt_scalar(v) for v in value) or "-"
    return "-" if value is None else str(value)


def fmt_time(value: Any) -> str:
    """A Unix time as local ``YYYY-MM-DD HH:MM:SS``."""
    if isinstance(value, int | float):
        return datetime.datetime.fromtimestamp(value).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    return str(value or "-")
