"""``traffic``: set one region's table of a service, or shift weight between datacenters
(``--ttl-first``: lower the TTL around the move, see ``ttlfirst``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from . import ttlfirst
from .client import Client, record, segment
from .errors import CliError
from .options import ClientGroup, pairs_param, pass_client, write_options
from .render import done, dry_run_report, fmt_table, fmt_traffic, notes, print_json


@click.group(cls=ClientGroup)
def traffic() -> None:
    """Traffic tables: set one region's split, or shift weight between datacenters."""


def ttl_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--ttl-first`` and ``--ttl-floor``."""
    command = click.option(
        "--ttl-floor", type=click.IntRange(min=0), default=ttlfirst.DEFAULT_FLOOR,
        show_default=True, help="The TTL (seconds) --ttl-first lowers to.",
    )(command)  # fmt: skip
    return click.option(
        "--ttl-first", is_flag=True,
        help="Lower the TTL to the floor, wait one old TTL, make the change, wait one floor "
        "TTL, restore the TTL: clients converge in seconds.",
    )(command)  # fmt: skip


@write_options()
@traffic.command("set")
@click.argument("service_name", metavar="SERVICE")
@click.argument("pairs", nargs=-1, required=True, metavar="DC=WEIGHT...", callback=pairs_param)
@click.option("--region", default="default", show_default=True, help="The table to set.")
@ttl_options
@pass_client
def traffic_set(
    client: Client, service_name: str, pairs: dict[str, int], region: str, ttl_first: bool,
    ttl_floor: int,
) -> None:  # fmt: skip
    """Set SERVICE's traffic table for one region, e.g. idc=60 cloud=40."""
    if ttl_first:
        what = f"set the {region} traffic of {service_name} to {fmt_table(pairs)}"
        ttlfirst.run(client, [service_name], ttl_floor, what,
                     lambda: _set(client, service_name, pairs, region))  # fmt: skip
    else:
        _set(client, service_name, pairs, region)


def _set(client: Client, service_name: str, pairs: dict[str, int], region: str) -> None:
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
@ttl_options
@pass_client
def traffic_shift(
    client: Client, from_dc: str, to_dc: str, percent: float, services: tuple[str, ...],
    ttl_first: bool, ttl_floor: int,
) -> None:  # fmt: skip
    """Move traffic from one datacenter to another in every table (or --service)."""
    share: int | float = int(percent) if percent.is_integer() else percent
    body = {"from": from_dc, "to": to_dc, "percent": share, "services": list(services) or None}
    if not ttl_first:
        _shift(client, body)
        return
    # the services the shift moves, from a dry run of it: only their TTLs are lowered
    was, client.dry_run = client.dry_run, True
    try:
        trial = client.api("POST", "/traffic/shift", body)
    finally:
        client.dry_run = was
    moved = sorted({str(m["service"]) for m in trial.get("moves") or [] if m.get("moved")})
    what = f"shift {share}% of {from_dc}'s weight to {to_dc}"
    ttlfirst.run(client, moved, ttl_floor, what, lambda: _shift(client, body))


def _shift(client: Client, body: dict[str, Any]) -> None:
    from_dc, to_dc, share = body["from"], body["to"], body["percent"]
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


@traffic.command("restore-ttl")
@pass_client
def traffic_restore_ttl(client: Client) -> None:
    """Restore the TTLs an interrupted --ttl-first run left at its floor (from its note)."""
    noted = ttlfirst.read_notes().get(client.server, {})
    if not noted:
        click.echo(f"no TTL to restore for {client.server} ({ttlfirst.note_path()})")
        return
    lowered = [ttlfirst.Lowering(name, int(n["ttl"]), int(n["floor"]))
               for name, n in sorted(noted.items())]  # fmt: skip
    ttlfirst.restore(client, lowered, click.echo)


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
