"""``traffic``: set one region's table of a service, or shift weight between datacenters."""

from __future__ import annotations

import click

from .client import Client, record, segment
from .errors import CliError
from .options import ClientGroup, pairs_param, pass_client, write_options
from .render import done, dry_run_report, fmt_table, fmt_traffic, notes, print_json


@click.group(cls=ClientGroup)
def traffic() -> None:
    """Traffic tables: set one region's split, or shift weight between datacenters."""


@write_options()
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


@write_options()
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
    moves = data.get("moves") or []
    moved = sum(int(m.get("moved", 0)) for m in moves)
    if data.get("dry_run"):
        click.echo(f"dry run at revision {data.get('revision')}, nothing written:")
    click.echo(
        f"shift {share}% of {from_dc}'s weight to {to_dc}: {moved} weight moved in "
        f"{len(moves)} table{'s' if len(moves) != 1 else ''}"
        + ("" if data.get("dry_run") else f" (revision {data.get('revision')})")
    )
    for m in moves:
        note = f"; {m['note']}" if m.get("note") else ""
        click.echo(
            f"  {m.get('service')} [{m.get('region')}]: {fmt_table(m.get('before') or {})} -> "
            f"{fmt_table(m.get('after') or {})} (moved {m.get('moved')} of {from_dc}{note})"
        )
    for skip in data.get("skipped") or []:
        where = f" [{skip['region']}]" if skip.get("region") else ""
        click.echo(f"  skipped {skip.get('service')}{where}: {skip.get('reason')}")
    if data.get("dry_run"):
        dry_run_report({**data, "changes": []})
    notes(data)


BAR = 40  # characters of a full bar


@traffic.command("show")
@click.argument("services", nargs=-1, metavar="[SERVICE]...")
@pass_client
def traffic_show(client: Client, services: tuple[str, ...]) -> None:
    """Show the effective split of each SERVICE (default: all) per region as bars,
    measured by steering a sample of client buckets: what clients get, after drains,
    read-only datacenters and failover, not the configured weights."""
    names = list(services) or sorted(client.state().get("services") or {})
    results = {n: client.api("GET", f"/services/{segment(n)}/split") for n in names}
    if client.json:
        print_json(results)
        return
    for name, data in results.items():
        click.echo(f"{name} (sample of {data.get('sample')} client buckets)")
        for region, families in (data.get("regions") or {}).items():
            for family, split in families.items():
                click.echo(f"  {region} {family}")
                for dc, share in split.items():
                    bar = "#" * round(float(share) * BAR)
                    click.echo(f"    {dc:<10} {bar:<{BAR}} {float(share) * 100:5.1f}%")
