"""``registry``: store maintenance (re-seeding a store that lost data)."""

from __future__ import annotations

import click

from .client import Client
from .options import ClientGroup, pass_client, server_param
from .render import done


@click.group("registry", cls=ClientGroup)
def registry_group() -> None:
    """Store maintenance."""


@registry_group.command("restore")
@click.option(
    "--from-node",
    "node_url",
    required=True,
    callback=server_param,
    help="A node whose snapshot re-seeds the store (it pushes its own copy).",
)
@pass_client
def registry_restore(client: Client, node_url: str) -> None:
    """Re-seed a store that lost data (e.g. a Redis that came back empty) or is damaged
    (its records do not match their digest) from a node.

    Refused when the store is not behind the node's snapshot and its content is intact.
    """
    client.server = node_url
    data = client.api("POST", "/registry/restore")
    done(client, "registry", data, f"restored from {node_url}")
