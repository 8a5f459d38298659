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
    """Report a completed write: the JSON answer, or one line naming the new revision."""
    if client.json:
        print_json(data)
    else:
        tail = f": {summary}" if summary else ""
        click.echo(f"{what}{tail} (revision {data.get('revision', '?')})")


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
