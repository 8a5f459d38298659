"""``traffic``: set one region's table of a service, or shift weight between datacenters."""

from __future__ import annotations

import click

from .client import Client, record, segment
from .errors import CliError
from .options import ClientGroup, pairs_param, pass_client
from .render import done, fmt_traffic, print_json


@click.group(cls=ClientGroup)
def traffic() -> None:
    """Traffic tables: set one region's split, or shift weight between datacenters."""


@traffic.command("set")
@click.argument("service_name", metavar="SERVICE")
@click.argument("pairs", nargs=-1, required=True, metavar="DC=WEIGHT...", callback=pairs_param)
@click.option("--region", default="default", show_default=True, help="The table to set.")
@pass_client
def traffic_set(client: Client, service_name: str, pairs: dict[str, int], region: str) -> None:
    """Set SERVICE's traffic table for one region, e.g. idc=60 cloud=40."""
    snapshot = client.state()
    current = record(snapshot, "services", service_name)
    if current is None:
        raise CliError(f"not_found: service {service_name!r} does not exist")
    tables = dict(current.get("traffic") or {})
    tables[region] = pairs
    data = client.api(
        "PUT",
        f"/services/{segment(service_name)}/traffic",
        tables,
        if_match=snapshot.get("revision"),
    )
    got = (data.get("service") or {}).get("traffic") or tables
    done(client, f"service {service_name} traffic", data, fmt_traffic(got, "; "))


@traffic.command("shift")
@click.option("--from", "from_dc", required=True, help="Datacenter that gives weight.")
@click.option("--to", "to_dc", required=True, help="Datacenter that receives it.")
@click.option(
    "--percent",
    type=click.FloatRange(0, 100, min_open=True),
    required=True,
    help="Share of the source's weight to move (0-100].",
)
@click.option(
    "--service",
    "services",
    multiple=True,
    help="Only this service (repeat); default every service that uses both.",
)
@pass_client
def traffic_shift(
    client: Client, from_dc: str, to_dc: str, percent: float, services: tuple[str, ...]
) -> None:
    """Move traffic from one datacenter to another in every table (or --service)."""
    share: int | float = int(percent) if percent.is_integer() else percent
    body = {"from": from_dc, "to": to_dc, "percent": share, "services": list(services) or None}
    data = client.api("POST", "/traffic/shift", body)
    if client.json:
        print_json(data)
        return
    changed = data.get("services") or {}
    click.echo(f"shifted {share}% from {from_dc} to {to_dc} (revision {data.get('revision')})")
    for name, tables in sorted(changed.items()):
        click.echo(f"  {name}: {fmt_traffic(tables or {}, '; ')}")
    if not changed:
        click.echo("  no service changed")
