"""``state`` (the whole registry as tables) and ``health`` (the node's /healthz)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click
from rich.table import Table

from .client import Client
from .options import ClientCommand, pass_client
from .render import console, fmt_empty, fmt_release, fmt_traffic, print_json, yes


def state_tables(data: Mapping[str, Any]) -> list[Table]:
    """The tables ``state`` prints: datacenters, regions, services, endpoints."""
    dcs = Table(title="datacenters", title_justify="left")
    for col in ("name", "kind", "writable", "drained", "labels"):
        dcs.add_column(col)
    for name, dc in sorted((data.get("datacenters") or {}).items()):
        labels = ",".join(f"{k}={v}" for k, v in (dc.get("labels") or {}).items())
        dcs.add_row(name, dc.get("kind"), yes(dc.get("writable")), yes(dc.get("drained")), labels)
    regions = Table(title="regions", title_justify="left")
    regions.add_column("name")
    regions.add_column("cidrs")
    for name, region in sorted((data.get("regions") or {}).items()):
        regions.add_row(name, " ".join(region.get("cidrs") or []))
    services = Table(title="services", title_justify="left")
    cols = ("name", "access", "ttl", "answers", "all down", "traffic", "release", "healthy")
    for col in cols:
        services.add_column(col, no_wrap=col in ("name", "all down"))
    endpoints = Table(title="endpoints", title_justify="left")
    for col in ("service", "id", "dc", "address", "version", "weight", "healthy"):
        endpoints.add_column(col, no_wrap=col in ("service", "id", "address"))
    for name, svc in sorted((data.get("services") or {}).items()):
        eps = svc.get("endpoints") or {}
        healthy = sum(1 for e in eps.values() if e.get("healthy"))
        services.add_row(
            name,
            svc.get("access"),
            str(svc.get("ttl")),
            str(svc.get("answers")),
            svc.get("all_down"),
            fmt_traffic(svc.get("traffic") or {}),
            fmt_release(svc.get("release")),
            f"{healthy}/{len(eps)}",
        )
        for eid, ep in sorted(eps.items()):
            endpoints.add_row(
                name,
                eid,
                ep.get("dc"),
                f"{ep.get('address')}:{ep.get('port')}",
                ep.get("version"),
                str(ep.get("weight")),
                yes(ep.get("healthy")),
            )
    return [dcs, regions, services, endpoints]


@click.command(cls=ClientCommand)
@pass_client
def state(client: Client) -> None:
    """Show datacenters, regions, services and endpoints."""
    data = client.state()
    if client.json:
        print_json(data)
        return
    out = console()
    out.print(f"revision {data.get('revision')}")
    for table in state_tables(data):
        out.print(table)


@click.command(cls=ClientCommand)
@pass_client
def health(client: Client) -> None:
    """Show the node's health: status, revision, store, staleness."""
    data = client.decode(client.send("GET", "/healthz"))
    if client.json:
        print_json(data)
        return
    empty = data.get("empty") or {}
    click.echo(" ".join(f"{k}={v}" for k, v in data.items() if k != "empty"))
    if empty:
        click.echo(f"answering empty: {fmt_empty(empty)}")
