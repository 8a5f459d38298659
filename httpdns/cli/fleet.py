"""``nodes`` (the fleet: every live node's heartbeat) and ``wait`` (until every live node
has applied a revision, Route 53's PENDING → INSYNC); see httpdns/fleet.py."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.table import Table

from .client import Client
from .errors import CliError
from .options import ClientCommand, pass_client
from .render import console, print_json


class _WaitCommand(ClientCommand):
    """A client command whose ``--timeout`` is its own (the whole wait), not the global
    per-request one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params = [p for p in self.params if p.name != "timeout"]


def _ago(seen: Any, now: float) -> str:
    return f"{max(0.0, now - seen):.1f}s ago" if isinstance(seen, int | float) else "-"


def _late(nodes: list[dict[str, Any]], revision: int) -> list[dict[str, Any]]:
    return [n for n in nodes if not isinstance(n.get("revision"), int) or n["revision"] < revision]


@click.command("nodes", cls=ClientCommand)
@pass_client
def nodes(client: Client) -> None:
    """List the live nodes (their heartbeats): id, address, version, revision, status."""
    data = client.api("GET", "/nodes")
    if client.json:
        print_json(data)
        return
    now = time.time()
    table = Table(title=f"nodes (registry revision {data.get('revision')})", title_justify="left")
    for col in ("id", "address", "version", "revision", "status", "seen", "reasons"):
        table.add_column(col, no_wrap=col in ("id", "address"))
    for n in data.get("nodes") or []:
        table.add_row(
            str(n.get("id")),
            str(n.get("address") or "-"),
            str(n.get("version")),
            str(n.get("revision")),
            str(n.get("status")),
            _ago(n.get("seen"), now),
            "; ".join(n.get("reasons") or []),
        )
    console().print(table)


@click.command("wait", cls=_WaitCommand)
@click.argument("revision", type=click.IntRange(min=0), required=False)
@click.option(
    "--timeout", "wait_for", type=float, default=30.0, show_default=True,
    help="Seconds to wait for the whole fleet.",
)  # fmt: skip
@pass_client
def wait(client: Client, revision: int | None, wait_for: float) -> None:
    """Wait until every live node has applied REVISION (default: the server's current one).

    Exit 0 when they all have; 1 naming the laggards when the timeout passes first.
    """
    deadline = time.monotonic() + wait_for
    while True:
        data = client.api("GET", "/nodes")
        if revision is None:
            revision = int(data.get("revision") or 0)
        fleet = [n for n in data.get("nodes") or [] if isinstance(n, dict)]
        late = _late(fleet, revision)
        if fleet and not late:
            break
        if time.monotonic() >= deadline:
            if not fleet:
                raise CliError(f"no live node reports a heartbeat (waited {wait_for:g}s)")
            names = ", ".join(f"{n.get('id')} at {n.get('revision')}" for n in late)
            raise CliError(
                f"{len(late)} of {len(fleet)} nodes have not applied revision {revision} "
                f"after {wait_for:g}s: {names}"
            )
        time.sleep(0.2)
    if client.json:
        print_json({"revision": revision, "nodes": len(fleet), "applied": len(fleet)})
    else:
        click.echo(f"all {len(fleet)} nodes have applied revision {revision}")
