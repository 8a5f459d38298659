"""``endpoint``: the addresses that serve a service."""

from __future__ import annotations

from typing import Any

import click

from .client import Client, record, segment
from .options import ClientGroup, pass_client, write_options
from .render import done, yes


@click.group(cls=ClientGroup)
def endpoint() -> None:
    """Endpoints: the addresses that serve a service."""


@write_options()
@endpoint.command("set")
@click.argument("service_name", metavar="SERVICE")
@click.argument("endpoint_id", metavar="ID")
@click.option("--dc", help="Datacenter (required for a new endpoint).")
@click.option("--address", help="IPv4 or IPv6 address (required for a new endpoint).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port [80].")
@click.option("--version", "version_", help="Version it runs [v1].")
@click.option("--weight", type=click.IntRange(min=0), help="Weight within its datacenter [100].")
@click.option("--healthy/--unhealthy", default=None, help="Health [healthy].")
@pass_client
def endpoint_set(
    client: Client,
    service_name: str,
    endpoint_id: str,
    dc: str | None,
    address: str | None,
    port: int | None,
    version_: str | None,
    weight: int | None,
    healthy: bool | None,
) -> None:
    """Create or change endpoint ID of SERVICE; options not given keep their values."""
    snapshot = client.state()
    svc = record(snapshot, "services", service_name) or {}
    current = dict((svc.get("endpoints") or {}).get(endpoint_id) or {})
    given = {
        "dc": dc,
        "address": address,
        "port": port,
        "version": version_,
        "weight": weight,
        "healthy": healthy,
    }
    missing = [f"--{k}" for k in ("dc", "address") if given[k] is None and k not in current]
    if missing:
        raise click.UsageError(f"a new endpoint needs {' and '.join(missing)}")
    body: dict[str, Any] = {}
    for key, value in given.items():
        if value is not None:
            body[key] = value
        elif key in current:
            body[key] = current[key]
    if current.get("labels"):
        body["labels"] = current["labels"]
    data = client.api(
        "PUT",
        f"/services/{segment(service_name)}/endpoints/{segment(endpoint_id)}",
        body,
        if_match=snapshot.get("revision"),
    )
    ep = data.get("endpoint") or body
    done(
        client,
        f"endpoint {service_name}/{endpoint_id}",
        data,
        f"{ep.get('address')}:{ep.get('port', 80)} dc={ep.get('dc')} "
        f"version={ep.get('version')} weight={ep.get('weight')} healthy={yes(ep.get('healthy'))}",
    )


@write_options()
@endpoint.command("delete")
@click.argument("service_name", metavar="SERVICE")
@click.argument("endpoint_id", metavar="ID")
@pass_client
def endpoint_delete(client: Client, service_name: str, endpoint_id: str) -> None:
    """Remove endpoint ID from SERVICE."""
    data = client.api(
        "DELETE", f"/services/{segment(service_name)}/endpoints/{segment(endpoint_id)}"
    )
    done(client, f"endpoint {service_name}/{endpoint_id}", data, "deleted")
