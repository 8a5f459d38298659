"""``audit``: who changed what, and when."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click
from rich.table import Table

from .client import Client
from .options import ClientCommand, pass_client
from .render import console, fmt_release, fmt_time, fmt_traffic, print_json


def summarize_change(change: Mapping[str, Any]) -> str:
    """One short line for an audit change: ``put datacenter idc (drained)``."""
    op, kind, key = change.get("op"), change.get("kind"), change.get("key")
    text = f"{op} {kind} {key}"
    value = change.get("value")
    if op != "put" or not isinstance(value, Mapping):
        return text
    detail = ""
    if kind == "datacenter":
        detail = f"{value.get('kind')}{', drained' if value.get('drained') else ''}"
    elif kind == "region":
        detail = " ".join(value.get("cidrs") or [])
    elif kind == "service":
        detail = fmt_traffic(value.get("traffic") or {}, "; ")
    elif kind == "endpoint":
        health = "healthy" if value.get("healthy") else "unhealthy"
        detail = f"{value.get('address')} {value.get('dc')} {value.get('version')} {health}"
    elif kind == "release":
        detail = fmt_release(value)
    return f"{text} ({detail})" if detail else text


@click.command(cls=ClientCommand)
@click.option("--since", type=click.IntRange(min=0), help="Only changes after this revision.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many entries.")
@pass_client
def audit(client: Client, since: int | None, limit: int | None) -> None:
    """Show the audit log: revision, time, actor and changes."""
    data = client.api("GET", "/audit", params={"since": since, "limit": limit})
    if client.json:
        print_json(data)
        return
    table = Table(title=f"audit (revision {data.get('revision')})", title_justify="left")
    for col in ("revision", "time", "actor", "changes"):
        table.add_column(col, no_wrap=col != "changes")
    for entry in data.get("entries") or []:
        changes = "\n".join(summarize_change(c) for c in entry.get("changes") or [])
        table.add_row(
            str(entry.get("revision")), fmt_time(entry.get("time")), entry.get("actor"), changes
        )
    console().print(table)
