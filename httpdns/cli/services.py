"""``service``: the names clients resolve, their settings and default traffic table."""

from __future__ import annotations

from typing import Any

import click

from .client import Client, record, segment
from .options import ClientGroup, pairs_param, pass_client, write_options
from .render import done, fmt_traffic


@click.group(cls=ClientGroup)
def service() -> None:
    """Services: the names clients resolve, and how their traffic is split."""


@write_options()
@service.command("set")
@click.argument("name")
@click.argument("pairs", nargs=-1, metavar="[DC=WEIGHT]...", callback=pairs_param)
@click.option("--access", type=click.Choice(["rw", "ro"]), help="rw: writable datacenters only.")
@click.option("--ttl", type=click.IntRange(min=0), help="Answer TTL in seconds.")
@click.option("--answers", type=click.IntRange(min=1), help="Addresses per answer.")
@click.option(
    "--all-down",
    type=click.Choice(["fail-open", "fail-closed"]),
    help="What to answer when no datacenter is eligible.",
)
@click.option(
    "--traffic",
    "traffic_opts",
    multiple=True,
    metavar="DC=WEIGHT",
    callback=pairs_param,
    help="Default traffic table entry (repeat); same as the positional pairs.",
)
@pass_client
def service_set(
    client: Client,
    name: str,
    pairs: dict[str, int],
    access: str | None,
    ttl: int | None,
    answers: int | None,
    all_down: str | None,
    traffic_opts: dict[str, int],
) -> None:
    """Create or change service NAME (an FQDN).

    Traffic pairs (idc=70 cloud=30) set the default table; other regions' tables
    are kept. A new service needs traffic; for an existing one, whatever is not
    given keeps its current value.
    """
    twice = sorted(set(pairs) & set(traffic_opts))
    if twice:
        raise click.UsageError(f"traffic for {twice[0]!r} is given twice")
    table = {**traffic_opts, **pairs}
    snapshot = client.state()
    current = record(snapshot, "services", name)
    if current is None and not table:
        raise click.UsageError(f"service {name!r} is new: give its traffic, e.g. idc=70 cloud=30")
    current = current or {}
    traffic = dict(current.get("traffic") or {})
    if table:
        traffic["default"] = table
    body: dict[str, Any] = {"traffic": traffic}
    given = {"access": access, "ttl": ttl, "answers": answers, "all_down": all_down}
    for key, value in given.items():
        if value is not None:
            body[key] = value
        elif key in current:
            body[key] = current[key]
    data = client.api("PUT", f"/services/{segment(name)}", body, if_match=snapshot.get("revision"))
    svc = data.get("service") or body
    done(
        client,
        f"service {name}",
        data,
        f"access={svc.get('access')} ttl={svc.get('ttl')} answers={svc.get('answers')} "
        f"all_down={svc.get('all_down')} {fmt_traffic(svc.get('traffic') or {}, '; ')}",
    )


@write_options()
@service.command("delete")
@click.argument("name")
@pass_client
def service_delete(client: Client, name: str) -> None:
    """Delete service NAME with its endpoints and release."""
    data = client.api("DELETE", f"/services/{segment(name)}")
    done(client, f"service {name}", data, "deleted")
