"""``shares``: the answers the fleet gave for a service, per datacenter and version, next to
the configured split (``GET /api/v1/services/{name}/shares``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import click

from .client import Client
from .options import ClientCommand, pass_client
from .render import print_json


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}%"


def _rows(title: str, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [f"  {title:<12} {'answers':>9} {'observed':>9} {'configured':>10} {'delta':>8}"]
    for r in rows:
        delta = "-" if r.get("delta") is None else f"{r['delta']:+.2f}"
        lines.append(
            f"  {r['name']:<12} {r['answers']:>9g} {_pct(r.get('percent')):>9} "
            f"{_pct(r.get('configured')):>10} {delta:>8}"
        )
    return lines


def render_shares(data: Mapping[str, Any]) -> list[str]:
    """The lines ``shares`` prints."""
    lines = [
        f"{data.get('service')}: {data.get('answers', 0):g} answers in the last "
        f"{data.get('window_seconds') or 0:g}s (window {data.get('window')}s) from "
        f"{data.get('nodes', 0)} node(s) ({data.get('source')}), revision {data.get('revision')}"
    ]
    if not data.get("answers"):
        lines.append("  no answers counted in this window: nothing to compare yet")
    lines += _rows("datacenter", data.get("datacenters") or [])
    lines += _rows("version", data.get("versions") or [])
    return lines


@click.command(cls=ClientCommand)
@click.argument("service")
@click.option("--window", default="60s", show_default=True, help="How far back: 10s, 60s or 5m.")
@pass_client
def shares(client: Client, service: str, window: str) -> None:
    """Show what SERVICE's clients were told, per datacenter and version, vs configured."""
    data = client.api("GET", f"/services/{service}/shares", params={"window": window})
    if client.json:
        print_json(data)
        return
    for line in render_shares(data):
        click.echo(line)
