"""``release``: a service's stable version and canary share."""

from __future__ import annotations

import click

from .client import Client, record, segment
from .options import ClientGroup, pass_client, write_options
from .render import done, fmt_release


@click.group(cls=ClientGroup)
def release() -> None:
    """Releases: the stable version and a canary share."""


@write_options(allow_empty=True)
@release.command("set")
@click.argument("service_name", metavar="SERVICE")
@click.option("--stable", help="Stable version (kept when not given).")
@click.option("--canary", help="Canary version.")
@click.option(
    "--percent", type=click.FloatRange(0, 100), help="Share of clients on the canary (0-100)."
)
@pass_client
def release_set(
    client: Client,
    service_name: str,
    stable: str | None,
    canary: str | None,
    percent: float | None,
) -> None:
    """Set SERVICE's release.

    --percent alone moves the current canary's share; --stable alone (a promotion)
    ends the canary.
    """
    if stable is None and canary is None and percent is None:
        raise click.UsageError("give --stable, --canary or --percent")
    snapshot = client.state()
    svc = record(snapshot, "services", service_name) or {}
    current = svc.get("release") or {}
    if canary is None and percent is not None:
        canary = current.get("canary")
        if canary is None:
            raise click.UsageError("--percent needs --canary (there is no canary yet)")
    if percent is None:
        same = canary is not None and canary == current.get("canary")
        percent = float(current.get("canary_percent", 0)) if same else 0.0
    body = {
        "stable": stable if stable is not None else current.get("stable"),
        "canary": canary,
        "canary_percent": percent,
    }
    data = client.api(
        "PUT",
        f"/services/{segment(service_name)}/release",
        body,
        if_match=snapshot.get("revision"),
    )
    done(client, f"release {service_name}", data, fmt_release(data.get("release") or body))
