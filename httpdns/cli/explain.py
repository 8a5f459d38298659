"""``explain``: the steering trace of one query, step by step."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from .client import Client
from .options import ClientCommand, pass_client
from .render import fmt_scalar, print_json


def _who(client: Mapping[str, Any]) -> str:
    # a trace for a device id has no address unless --ip was given too: name what there is
    parts = []
    if client.get("ip"):
        parts.append(str(client["ip"]))
    if client.get("uid") is not None:
        parts.append(f"uid {client['uid']}")
    return " ".join(parts) or "-"


def render_explain(data: Mapping[str, Any]) -> list[str]:
    """The lines ``explain`` prints for a steering trace (``-`` where a value is null)."""
    client = data.get("client") or {}
    lines = [
        f"{data.get('name')} {data.get('type')} for {_who(client)}"
        f"  (key {fmt_scalar(client.get('key'))}, bucket {fmt_scalar(client.get('bucket'))})"
        f"  revision {fmt_scalar(data.get('revision'))}",
        f"  region      {fmt_scalar(data.get('region'))}",
    ]
    for step in data.get("trace") or []:
        kind = step.get("step")
        rest = {k: v for k, v in step.items() if k != "step"}
        if kind == "datacenter" and isinstance(rest.get("scores"), Mapping):
            scores = sorted(
                rest.pop("scores").items(),
                key=lambda kv: -(kv[1] if isinstance(kv[1], int | float) else float("-inf")),
            )
            rest["scores"] = " ".join(f"{dc}={fmt_scalar(s)}" for dc, s in scores) or "-"
        if kind == "endpoints" and isinstance(rest.get("candidates"), Mapping):
            rest["candidates"] = fmt_scalar(rest.pop("candidates"))
        lines.append(f"  {kind}")
        lines.extend(f"    {key:<14} {fmt_scalar(value)}" for key, value in rest.items())
    lines.append(
        f"  chosen      datacenter {fmt_scalar(data.get('datacenter'))}"
        f"  version {fmt_scalar(data.get('version'))}"
        f"  cohort {fmt_scalar(data.get('cohort'))}  status {fmt_scalar(data.get('status'))}"
    )
    lines.append(
        f"  answer      {fmt_scalar(data.get('answer') or [])}  ttl {fmt_scalar(data.get('ttl'))}"
    )
    return lines


@click.command(cls=ClientCommand)
@click.argument("name")
@click.option("--ip", help="Client address (default: this host as the server sees it).")
@click.option("--uid", help="Device id; the client key instead of the address.")
@click.option("--type", "qtype", type=click.Choice(["A", "AAAA"], case_sensitive=False))
@pass_client
def explain(client: Client, name: str, ip: str | None, uid: str | None, qtype: str | None) -> None:
    """Show how NAME would be answered for a client, step by step."""
    params = {"name": name, "ip": ip, "uid": uid, "type": qtype.upper() if qtype else None}
    data = client.api("GET", "/explain", params=params)
    if client.json:
        print_json(data)
        return
    for line in render_explain(data):
        click.echo(line)
