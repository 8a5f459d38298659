"""Parameters: the global options (accepted before or after any subcommand) and the
parsers of ``NAME=INT`` pairs, labels and server URLs.

The group reads ``--server``, ``--token``, ``--json``, ``--actor`` and ``--timeout`` (with
their environment variables and defaults) into the ``Client``. Every command and
subgroup built with ``ClientCommand``/``ClientGroup`` accepts the same options again,
without defaults or environment: a value given there overrides the group's, one not
given changes nothing. So ``httpdns --json state`` and ``httpdns state --json`` are the
same command.
"""

from __future__ import annotations

import getpass
import os
import socket
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click

from .client import Client

pass_client = click.make_pass_decorator(Client, ensure=True)

HELP = {
    "server": "Base URL of an httpdns node (env HTTPDNS_SERVER).",
    "token": "Admin token (env HTTPDNS_ADMIN_TOKEN).",
    "json": "Print machine-readable JSON.",
    "actor": "Who makes the change, for the audit log (default $USER@hostname).",
    "timeout": "Seconds per request.",
}
"""The help of each global option, the same before and after the subcommand."""


# -- value parsers ------------------------------------------------------------------------------


def parse_pairs(values: Iterable[str], what: str = "traffic pair") -> dict[str, int]:
    """Parse ``NAME=INT`` pairs (``idc=60``) into a dict; raise ValueError naming the bad one."""
    out: dict[str, int] = {}
    for value in values:
        name, sep, number = value.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"{what} {value!r} is not NAME=INT (e.g. idc=60)")
        try:
            weight = int(number.strip())
        except ValueError:
            raise ValueError(f"{what} {value!r}: {number!r} is not an integer") from None
        if weight < 0:
            raise ValueError(f"{what} {value!r}: the weight must be >= 0")
        if name in out:
            raise ValueError(f"{what} {value!r}: {name!r} is given twice")
        out[name] = weight
    return out


def parse_labels(values: Iterable[str]) -> dict[str, str]:
    """Parse ``k=v`` labels; each value may hold several, comma-separated."""
    out: dict[str, str] = {}
    for value in values:
        for item in value.split(","):
            if not item.strip():
                continue
            key, sep, val = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"label {item!r} is not KEY=VALUE")
            out[key.strip()] = val.strip()
    return out


def parse_server(value: str) -> str:
    """Normalise a server URL (``http://`` when no scheme, no trailing slash); ValueError
    unless it is ``http(s)://HOST[:PORT][/path]``."""
    url = value.strip()
    url = url if "://" in url else f"http://{url}"
    try:
        parts = urllib.parse.urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{value!r} is not an http(s)://HOST[:PORT] URL")
    return url.rstrip("/")


def default_actor() -> str:
    """``$USER@hostname``, the audit log's author when ``--actor`` is not given."""
    user = os.environ.get("USER")
    if not user:
        try:
            user = getpass.getuser()
        except (OSError, KeyError):
            user = "unknown"
    return f"{user}@{socket.gethostname()}"


# -- click callbacks ----------------------------------------------------------------------------


def pairs_param(ctx: click.Context, param: click.Parameter, value: Sequence[str]) -> dict[str, int]:
    """Click callback: ``NAME=INT`` arguments as a dict (a bad one is a usage error)."""
    try:
        return parse_pairs(value)
    except ValueError as e:
        raise click.BadParameter(str(e), ctx=ctx, param=param) from None


def labels_param(
    ctx: click.Context, param: click.Parameter, value: Sequence[str]
) -> dict[str, str] | None:
    """Click callback: ``k=v`` labels as a dict, None when none were given."""
    if not value:
        return None
    try:
        return parse_labels(value)
    except ValueError as e:
        raise click.BadParameter(str(e), ctx=ctx, param=param) from None


def server_param(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback: a normalised server URL (a bad one is a usage error)."""
    if value is None:
        return None
    try:
        return parse_server(value)
    except ValueError as e:
        raise click.BadParameter(str(e), ctx, param) from None


# -- global options after the subcommand --------------------------------------------------------


def _setter(attr: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is None or value is False or ctx.resilient_parsing:
            return  # not given here: keep what the group (or its environment) set
        if attr == "server":
            value = server_param(ctx, param, value)
        elif attr == "token":
            value = value or None
        setattr(ctx.ensure_object(Client), attr, value)

    return callback


def global_params() -> list[click.Parameter]:
    """Fresh copies of the global options for one subcommand: no default, no environment
    variable, and a callback that stores a given value in the ``Client``."""
    return [
        click.Option(["--server"], metavar="URL", help=HELP["server"], callback=_setter("server"),
                     expose_value=False),
        click.Option(["--token"], metavar="TOKEN", help=HELP["token"], callback=_setter("token"),
                     expose_value=False),
        click.Option(["--json"], is_flag=True, default=False, help=HELP["json"],
                     callback=_setter("json"), expose_value=False),
        click.Option(["--actor"], metavar="NAME", help=HELP["actor"], callback=_setter("actor"),
                     expose_value=False),
        click.Option(["--timeout"], type=float, metavar="SECONDS", help=HELP["timeout"],
                     callback=_setter("timeout"), expose_value=False),
    ]  # fmt: skip


_GLOBAL_NAMES = frozenset(HELP)


def _format_options(
    command: click.Command, ctx: click.Context, formatter: click.HelpFormatter
) -> None:
    """The command's own options first, then the global ones under their own heading."""
    own: list[tuple[str, str]] = []
    shared: list[tuple[str, str]] = []
    for param in command.get_params(ctx):
        if not isinstance(param, click.Option):
            continue  # arguments are named in the usage line, as click does
        record = param.get_help_record(ctx)
        if record is not None:
            (shared if param.name in _GLOBAL_NAMES else own).append(record)
    for title, rows in (("Options", own), ("Global options", shared)):
        if rows:
            with formatter.section(title):
                formatter.write_dl(rows)


class ClientCommand(click.Command):
    """A client command: it also accepts the global options after its name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(global_params())

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Own options, then the global ones."""
        _format_options(self, ctx, formatter)


class ClientGroup(click.Group):
    """A group of client commands (``dc``, ``traffic``...): it and its commands accept the
    global options too."""

    command_class = ClientCommand
    group_class = type  # subgroups are ClientGroups as well

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(global_params())

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Own options, then the global ones, then the commands."""
        _format_options(self, ctx, formatter)
        self.format_commands(ctx, formatter)


# -- write flags --------------------------------------------------------------------------------

WRITE_HELP = {
    "dry_run": "Show what would change (effective split, share of clients moved); write nothing.",
    "force": "Do it even if some service would answer nobody in a region.",
    "allow_empty": "Allow a stable or canary version that has no endpoints.",
}


def _flag_setter(attr: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value and not ctx.resilient_parsing:
            setattr(ctx.ensure_object(Client), attr, True)

    return callback


def write_options(*, allow_empty: bool = False) -> Callable[[click.Command], click.Command]:
    """Decorator for a write command: ``--dry-run`` and ``--force`` (and ``--allow-empty``),
    stored in the ``Client`` so that its write carries them."""
    names = ["dry_run", "force", *(["allow_empty"] if allow_empty else [])]

    def decorate(command: click.Command) -> click.Command:
        for name in names:
            flag = "--" + name.replace("_", "-")
            command.params.append(
                click.Option([flag], is_flag=True, default=False, help=WRITE_HELP[name],
                             callback=_flag_setter(name), expose_value=False)
            )  # fmt: skip
        return command

    return decorate
