"""``dc``: create, change, drain, undrain and delete datacenters."""

from __future__ import annotations

import click

from .client import Client, record, segment
from .options import ClientGroup, labels_param, pass_client, write_options
from .render import done, yes


@click.group(cls=ClientGroup)
def dc() -> None:
    """Datacenters: set, drain, undrain, delete."""


@write_options()
@dc.command("set")
@click.argument("name")
@click.option("--kind", type=click.Choice(["idc", "cloud"]), help="Own datacenter or cloud.")
@click.option(
    "--writable/--read-only", default=None, help="Whether services may write to primary data here."
)
@click.option(
    "--labels",
    "--label",
    "labels",
    multiple=True,
    callback=labels_param,
    help="k=v labels (repeat, or comma-separate); replaces the current ones.",
)
@pass_client
def dc_set(
    client: Client,
    name: str,
    kind: str | None,
    writable: bool | None,
    labels: dict[str, str] | None,
) -> None:
    """Create or change datacenter NAME; options not given keep their current values."""
    snapshot = client.state()
    current = record(snapshot, "datacenters", name) or {}
    body = {
        "kind": kind or current.get("kind", "idc"),
        "writable": current.get("writable", True) if writable is None else writable,
        "drained": current.get("drained", False),
        "labels": current.get("labels", {}) if labels is None else labels,
    }
    data = client.api(
        "PUT", f"/datacenters/{segment(name)}", body, if_match=snapshot.get("revision")
    )
    got = data.get("datacenter") or body
    done(
        client,
        f"datacenter {name}",
        data,
        f"kind={got.get('kind')} writable={yes(got.get('writable'))} "
        f"drained={yes(got.get('drained'))}",
    )


def _drain(client: Client, name: str, drained: bool) -> None:
    verb = "drain" if drained else "undrain"
    data = client.api("POST", f"/datacenters/{segment(name)}/{verb}")
    done(client, f"datacenter {name}", data, "drained" if drained else "undrained")


@write_options()
@dc.command("drain")
@click.argument("name")
@pass_client
def dc_drain(client: Client, name: str) -> None:
    """Stop sending new traffic to datacenter NAME."""
    _drain(client, name, True)


@write_options()
@dc.command("undrain")
@click.argument("name")
@pass_client
def dc_undrain(client: Client, name: str) -> None:
    """Send traffic to datacenter NAME again."""
    _drain(client, name, False)


@write_options()
@dc.command("delete")
@click.argument("name")
@pass_client
def dc_delete(client: Client, name: str) -> None:
    """Delete datacenter NAME (refused while endpoints or traffic tables use it)."""
    data = client.api("DELETE", f"/datacenters/{segment(name)}")
    done(client, f"datacenter {name}", data, "deleted")
