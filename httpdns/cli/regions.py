"""``region``: the client networks that select a traffic table."""

from __future__ import annotations

import click

from .client import Client, segment
from .options import ClientGroup, pass_client, write_options
from .render import done


@click.group(cls=ClientGroup)
def region() -> None:
    """Regions: client networks that select a traffic table."""


@write_options()
@region.command("set")
@click.argument("name")
@click.argument("cidrs", nargs=-1, required=True)
@pass_client
def region_set(client: Client, name: str, cidrs: tuple[str, ...]) -> None:
    """Set region NAME to the client networks CIDRS (IPv4 and IPv6)."""
    data = client.api("PUT", f"/regions/{segment(name)}", {"cidrs": list(cidrs)})
    got = data.get("region") or {"cidrs": cidrs}
    done(client, f"region {name}", data, " ".join(got.get("cidrs") or []))


@write_options()
@region.command("delete")
@click.argument("name")
@pass_client
def region_delete(client: Client, name: str) -> None:
    """Delete region NAME (its clients fall back to the default table)."""
    data = client.api("DELETE", f"/regions/{segment(name)}")
    done(client, f"region {name}", data, "deleted")
