"""``zone``: the DNS zones every node answers authoritatively (apex SOA and NS, glue)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click
from rich.table import Table

from .client import Client, record, segment
from .options import ClientGroup, pass_client
from .render import console, done, print_json

_SOA_TIMERS = ("refresh", "retry", "expire", "minimum")


def _nameservers(
    ctx: click.Context, param: click.Parameter, values: Sequence[str]
) -> dict[str, list[str]]:
    """``--ns NAME[=ADDR,ADDR...]`` values as {name: [addresses]}, in the order given."""
    out: dict[str, list[str]] = {}
    for value in values:
        name, _, addrs = value.partition("=")
        name = name.strip()
        if not name:
            raise click.BadParameter(f"{value!r}: expected NAME or NAME=ADDR[,ADDR...]")
        if name in out:
            raise click.BadParameter(f"nameserver {name!r} is given twice")
        out[name] = [a.strip() for a in addrs.split(",") if a.strip()]
    return out


@click.group(cls=ClientGroup)
def zone() -> None:
    """Zones: served by every node (apex SOA and NS, nameserver addresses)."""


@zone.command("set")
@click.argument("name")
@click.option(
    "--ns",
    "nameservers",
    multiple=True,
    callback=_nameservers,
    metavar="NAME[=ADDR,...]",
    help="A nameserver and its addresses (needed inside the zone); repeat, first = SOA mname.",
)
@click.option("--mname", help="SOA primary nameserver (default: the first --ns).")
@click.option("--rname", help="SOA contact mailbox as a name (default: hostmaster.ZONE).")
@click.option("--refresh", type=int, help="SOA refresh, seconds.")
@click.option("--retry", type=int, help="SOA retry, seconds.")
@click.option("--expire", type=int, help="SOA expire, seconds.")
@click.option("--minimum", type=int, help="SOA minimum: the negative-answer TTL, seconds.")
@pass_client
def zone_set(
    client: Client,
    name: str,
    nameservers: dict[str, list[str]],
    mname: str | None,
    rname: str | None,
    refresh: int | None,
    retry: int | None,
    expire: int | None,
    minimum: int | None,
) -> None:
    """Create or change zone NAME; options not given keep their current values."""
    snapshot = client.state()
    current = record(snapshot, "zones", name) or {}
    if not nameservers and not current:
        raise click.UsageError(f"zone {name!r} is new: give its nameservers with --ns")
    soa: dict[str, Any] = {k: v for k, v in (current.get("soa") or {}).items() if v is not None}
    given = {"mname": mname, "rname": rname, "refresh": refresh, "retry": retry}
    given |= {"expire": expire, "minimum": minimum}
    soa.update({k: v for k, v in given.items() if v is not None})
    body = {"nameservers": nameservers or current.get("nameservers"), "soa": soa}
    data = client.api("PUT", f"/zones/{segment(name)}", body, if_match=snapshot.get("revision"))
    got = data.get("zone") or body
    done(client, f"zone {name}", data, "nameservers " + " ".join(got.get("nameservers") or {}))


@zone.command("delete")
@click.argument("name")
@pass_client
def zone_delete(client: Client, name: str) -> None:
    """Stop serving zone NAME from the registry (static --zone flags stay)."""
    data = client.api("DELETE", f"/zones/{segment(name)}")
    done(client, f"zone {name}", data, "deleted")


@zone.command("list")
@pass_client
def zone_list(client: Client) -> None:
    """The registry's zones with their nameservers and SOA values."""
    snapshot = client.state()
    zones = snapshot.get("zones") or {}
    if client.json:
        print_json({"revision": snapshot.get("revision"), "zones": zones})
        return
    table = Table(title=f"zones (serial {snapshot.get('revision')})", title_justify="left")
    for col in ("zone", "nameservers", "mname", "rname", *_SOA_TIMERS):
        table.add_column(col, no_wrap=col in ("zone", "mname"))
    for name, z in sorted(zones.items()):
        soa = z.get("soa") or {}
        ns = z.get("nameservers") or {}
        table.add_row(
            name,
            "\n".join(f"{h} {' '.join(a)}".strip() for h, a in ns.items()),
            soa.get("mname") or next(iter(ns), ""),
            soa.get("rname") or f"hostmaster.{name}",
            *(str(soa.get(k)) for k in _SOA_TIMERS),
        )
    console().print(table)
