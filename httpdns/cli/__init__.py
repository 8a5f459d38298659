"""``httpdns``: the operations CLI.

Every command but ``serve`` is a thin client of a running node: the admin API
(``/api/v1``, bearer token) for the registry, the query API for ``query``. The
CLI speaks HTTP with ``urllib`` only, so it starts fast and needs no event loop;
``serve`` (aiohttp, the whole node) is imported only when it runs.

The global options (``--server``, ``--token``, ``--json``, ``--actor``, ``--timeout``) are
accepted before or after the subcommand (see ``options``).

Exit codes: 0 success; 1 the server refused or failed (one ``error: CODE: DETAIL``
line on stderr) or could not be reached; 2 a usage error, either click's own or a
value the CLI checks locally (a traffic pair that is not ``NAME=INT``).

Edits that change part of a record (``dc drain``, ``service set --ttl``, ``traffic
set``) read the state, change the record and write it back with ``If-Match`` set
to the revision read, so a concurrent edit fails with a conflict instead of being
overwritten.

Modules: ``client`` (the admin-API HTTP client), ``errors``, ``options`` (global options
and parameter parsers), ``render`` (JSON, tables, short forms), then one module per
command group.
"""

from __future__ import annotations

import importlib
from typing import cast

import click

from ..config import DEFAULT_SERVER
from .audit import audit, history, revert
from .client import Client
from .datacenters import dc
from .declarative import apply, export
from .endpoints import endpoint
from .errors import ApiError, CliError, UnreachableError
from .explain import explain
from .fleet import nodes, wait
from .options import HELP, ClientCommand, ClientGroup, default_actor, server_param
from .regions import region
from .registry import registry_group
from .release import release
from .services import service
from .shares import shares
from .state import health, state
from .traffic import traffic
from .zones import zone

__all__ = ["ApiError", "CliError", "Client", "UnreachableError", "main"]


_LAZY = {
    "serve": ("httpdns.serve", "serve"),  # aiohttp and the whole node: ~0.5 s to import
    "query": ("httpdns.cli.query", "query"),  # httpdns_client loads asyncio, dnslib: ~60 ms
}
"""Commands imported only when they run (or ``--help`` lists them): module, attribute."""


class _MainGroup(click.Group):
    """The top-level group; the commands in ``_LAZY`` are imported on demand, so the
    other client commands start fast."""

    command_class = ClientCommand
    group_class = ClientGroup

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command, the lazy ones included."""
        return sorted([*super().list_commands(ctx), *_LAZY])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command ``cmd_name``, importing a lazy one now."""
        if cmd_name in _LAZY:
            module, attribute = _LAZY[cmd_name]
            return cast(click.Command, getattr(importlib.import_module(module), attribute))
        return super().get_command(ctx, cmd_name)


@click.group(cls=_MainGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--server",
    envvar="HTTPDNS_SERVER",
    default=DEFAULT_SERVER,
    callback=server_param,
    show_default=True,
    help=HELP["server"],
)
@click.option("--token", envvar="HTTPDNS_ADMIN_TOKEN", help=HELP["token"])
@click.option("--json", "as_json", is_flag=True, help=HELP["json"])
@click.option("--actor", envvar="HTTPDNS_ACTOR", help=HELP["actor"])
@click.option("--timeout", type=float, default=10.0, show_default=True, help=HELP["timeout"])
@click.version_option(package_name="httpdns", prog_name="httpdns")
@click.pass_context
def main(
    ctx: click.Context,
    server: str,
    token: str | None,
    as_json: bool,
    actor: str | None,
    timeout: float,
) -> None:
    """Operate an HTTP DNS steering system: registry, traffic, releases, queries.

    The global options may also follow the subcommand: httpdns state --json.
    """
    ctx.obj = Client(
        server=server,
        token=token or None,
        actor=actor or default_actor(),
        json=as_json,
        timeout=timeout,
    )


for _command in (
    state,
    health,
    dc,
    region,
    service,
    traffic,
    endpoint,
    release,
    explain,
    audit,
    history,
    revert,
    apply,
    export,
    registry_group,
    nodes,
    wait,
    shares,
    zone,
):
    main.add_command(_command)
