"""``audit``, ``history`` and ``revert``: who changed what and when, one service's
changes, and undoing back to a revision."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click
from rich.table import Table

from .client import Client
from .options import ClientCommand, pass_client, write_options
from .render import console, done, fmt_diff, fmt_release, fmt_time, fmt_traffic, print_json


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


def _entries(client: Client, data: Mapping[str, Any], title: str) -> None:
    if client.json:
        print_json(data)
        return
    table = Table(title=title, title_justify="left")
    for col in ("revision", "time", "actor", "changes"):
        table.add_column(col, no_wrap=col != "changes")
    for entry in data.get("entries") or []:
        changes = "\n".join(fmt_diff(c) for c in entry.get("changes") or [])
        table.add_row(
            str(entry.get("revision")), fmt_time(entry.get("time")), entry.get("actor"), changes
        )
    console().print(table)


@click.command(cls=ClientCommand)
@click.option(
    "--since", type=click.IntRange(min=0), help="Changes after this revision, oldest first."
)
@click.option("--limit", type=click.IntRange(1, 10000), help="At most this many entries [100].")
@pass_client
def audit(client: Client, since: int | None, limit: int | None) -> None:
    """Show the audit log, newest first: revision, time, actor and each change as
    before -> after. With --since, the changes after that revision, oldest first."""
    data = client.api("GET", "/audit", params={"since": since, "limit": limit})
    order = f"after revision {since}" if since is not None else "newest first"
    _entries(client, data, f"audit (revision {data.get('revision')}, {order})")


@click.command(cls=ClientCommand)
@click.argument("service_name", metavar="SERVICE")
@click.option("--limit", type=click.IntRange(1, 10000), help="At most this many entries [100].")
@pass_client
def history(client: Client, service_name: str, limit: int | None) -> None:
    """Show SERVICE's changes (traffic, release, endpoints), newest first."""
    data = client.api("GET", "/audit", params={"service": service_name, "limit": limit})
    _entries(client, data, f"history of {service_name} (revision {data.get('revision')})")


@write_options()
@click.command(cls=ClientCommand)
@click.argument("revision", type=click.IntRange(min=0))
@pass_client
def revert(client: Client, revision: int) -> None:
    """Restore datacenters, regions, services, endpoints and releases as they were at
    REVISION, as one new revision (the deployer's rollouts are left as they are)."""
    data = client.api("POST", "/registry/revert", {"to": revision})
    if not data.get("changes") and not data.get("dry_run") and not client.json:
        click.echo(f"nothing to revert: the records are as at revision {revision}")
        return
    n = len(data.get("changes") or [])
    summary = f"{n} record{'s' if n != 1 else ''} restored as at revision {revision}"
    done(client, "revert", data, summary)
    if not client.json and not data.get("dry_run"):
        for change in data.get("changes") or []:
            click.echo(f"  {fmt_diff(change)}")
