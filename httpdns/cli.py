"""``httpdns``: the operations CLI.

Every command but ``serve`` is a thin client of a running node: the admin API
(``/api/v1``, bearer token) for the registry, the query API for ``query``. The
CLI speaks HTTP with ``urllib`` only, so it starts fast and needs no event loop.

Exit codes: 0 success; 1 the server refused or failed (one ``error: CODE: DETAIL``
line on stderr) or could not be reached; 2 a usage error, either click's own or a
value the CLI checks locally (a traffic pair that is not ``NAME=INT``).

Edits that change part of a record (``dc drain``, ``service set --ttl``, ``traffic
set``) read the state, change the record and write it back with ``If-Match`` set
to the revision read, so a concurrent edit fails with a conflict instead of being
overwritten.
"""

from __future__ import annotations

import base64
import datetime
import getpass
import ipaddress
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.client import HTTPException
from typing import IO, Any, TypeVar

import click
import dnslib
from rich.console import Console
from rich.table import Table

from .config import DEFAULT_SERVER


class _Group(click.Group):
    """The top-level group; ``serve`` (aiohttp, the whole server) is imported only when run,
    so the client commands start fast."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), "serve"])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "serve":
            from .serve import serve

            return serve
        return super().get_command(ctx, cmd_name)


_HINTS = {
    "unauthorized": "pass --token or set HTTPDNS_ADMIN_TOKEN",
    "conflict": "the registry changed meanwhile; run the command again",
}
_QTYPES = {"A": 1, "AAAA": 28}
_F = TypeVar("_F", bound=Callable[..., Any])
DnsRecord = tuple[str, int | None, str, str]
"""One answer record: name, TTL (None when the dialect gives none), type, data."""


# -- errors -------------------------------------------------------------------------------------


class CliError(click.ClickException):
    """A failure reported as one ``error: ...`` line on stderr, exit status 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        """Print ``error: MESSAGE`` on stderr (click calls this before exiting)."""
        click.echo(f"error: {self.format_message()}", file=file or sys.stderr)


class ApiError(CliError):
    """The server answered with an HTTP error status."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        super().__init__(format_api_error(status, code, detail))


class UnreachableError(CliError):
    """The server could not be reached at all."""


def format_api_error(status: int, code: str, detail: str) -> str:
    """The one-line message for an HTTP error, with a hint for 401 and a revision conflict."""
    message = f"{code}: {detail}" if detail else code
    hint = _HINTS["unauthorized"] if status == 401 else _HINTS.get(code)
    return f"{message} ({hint})" if hint else message


def api_error(status: int, reason: str, body: bytes) -> ApiError:
    """Build the error for an HTTP error response, JSON ``{"error","detail"}`` or not."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return ApiError(status, data["error"], str(data.get("detail") or ""))
    if isinstance(data, dict) and isinstance(data.get("code"), str):  # Aliyun-style errors
        return ApiError(status, data["code"], str(data.get("message") or ""))
    text = body.decode("utf-8", "replace").strip().splitlines()
    detail = text[0][:200] if text and not text[0].startswith("<") else reason  # not HTML
    return ApiError(status, f"http {status}", detail)


# -- local parsing ------------------------------------------------------------------------------


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


def _pairs_param(
    ctx: click.Context, param: click.Parameter, value: Sequence[str]
) -> dict[str, int]:
    try:
        return parse_pairs(value)
    except ValueError as e:
        raise click.BadParameter(str(e), ctx=ctx, param=param) from None


def _labels_param(
    ctx: click.Context, param: click.Parameter, value: Sequence[str]
) -> dict[str, str] | None:
    if not value:
        return None
    try:
        return parse_labels(value)
    except ValueError as e:
        raise click.BadParameter(str(e), ctx=ctx, param=param) from None


def _server_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    url = value.strip()
    url = url if "://" in url else f"http://{url}"
    try:
        parts = urllib.parse.urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError:
        ok = False
    if not ok:
        raise click.BadParameter(f"{value!r} is not an http(s)://HOST[:PORT] URL", ctx, param)
    return url.rstrip("/")


def _default_actor() -> str:
    user = os.environ.get("USER")
    if not user:
        try:
            user = getpass.getuser()
        except (OSError, KeyError):
            user = "unknown"
    return f"{user}@{socket.gethostname()}"


# -- HTTP ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP response as the CLI needs it; ``ms`` is the round trip time."""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes
    ms: float


def _transport(request: urllib.request.Request, timeout: float) -> Response:
    """Send ``request`` with urllib; HTTP error statuses are returned, not raised.

    Tests replace this module attribute with an in-memory transport.
    """
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            body = r.read()
            status, reason, headers = r.status, r.reason, dict(r.headers.items())
    except urllib.error.HTTPError as e:
        try:
            body = e.read()
        except (OSError, HTTPException):
            body = b""
        finally:
            e.close()
        status, reason, headers = e.code, str(e.reason), dict(e.headers.items())
    ms = (time.perf_counter() - start) * 1000
    return Response(status, reason, headers, body, ms)


def _console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 160  # piped: keep rows whole for grep rather than fit 80 columns
    return console


@dataclass(slots=True)
class Client:
    """The global options and the HTTP calls every command shares."""

    server: str = DEFAULT_SERVER
    token: str | None = None
    actor: str = "unknown"
    json: bool = False
    timeout: float = 10.0
    console: Console = field(default_factory=_console)

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Send one request; raise CliError if unreachable, ApiError on a status >= 400."""
        url = self.server + path
        query = {k: v for k, v in (params or {}).items() if v is not None}
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json")
        request.add_header("User-Agent", "httpdns-cli")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            response = _transport(request, self.timeout)
        except urllib.error.URLError as e:
            raise self._unreachable(e.reason) from None
        except (OSError, HTTPException) as e:
            raise self._unreachable(e) from None
        if response.status >= 400:
            raise api_error(response.status, response.reason, response.body)
        return response

    def _unreachable(self, reason: object) -> UnreachableError:
        if isinstance(reason, ConnectionRefusedError):
            return UnreachableError(
                f"cannot reach {self.server}: connection refused (is `httpdns serve` running?)"
            )
        if isinstance(reason, TimeoutError):
            return UnreachableError(f"cannot reach {self.server}: timed out after {self.timeout}s")
        text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
        return UnreachableError(f"cannot reach {self.server}: {text}")

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, Any] | None = None,
        if_match: int | None = None,
    ) -> dict[str, Any]:
        """Call the admin API at ``/api/v1`` + ``path`` and return the JSON object."""
        headers = {"X-Actor": self.actor}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if if_match is not None:
            headers["If-Match"] = str(if_match)
        response = self.send(method, "/api/v1" + path, params=params, body=body, headers=headers)
        return self.decode(response)

    def decode(self, response: Response) -> dict[str, Any]:
        """The JSON object of a successful response."""
        try:
            data = json.loads(response.body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise CliError(f"unexpected answer from {self.server}: not a JSON object")
        return data

    def state(self) -> dict[str, Any]:
        """The whole registry snapshot."""
        return self.api("GET", "/state")

    def print_json(self, data: Any) -> None:
        """Print ``data`` as indented JSON on stdout."""
        click.echo(json.dumps(data, indent=2))

    def done(self, what: str, data: dict[str, Any], summary: str = "") -> None:
        """Report a completed write: the JSON answer, or one line naming the new revision."""
        if self.json:
            self.print_json(data)
        else:
            tail = f": {summary}" if summary else ""
            click.echo(f"{what}{tail} (revision {data.get('revision', '?')})")


def _q(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def _record(state: Mapping[str, Any], section: str, name: str) -> dict[str, Any] | None:
    value = (state.get(section) or {}).get(name)
    return dict(value) if isinstance(value, Mapping) else None


def _fmt_table(table: Mapping[str, Any]) -> str:
    return " ".join(f"{dc}={w}" for dc, w in table.items()) or "-"


def _fmt_traffic(traffic: Mapping[str, Any], sep: str = "\n") -> str:
    return sep.join(f"{region}: {_fmt_table(t)}" for region, t in traffic.items()) or "-"


def _fmt_release(release: Mapping[str, Any] | None) -> str:
    if not release:
        return "-"
    text = str(release.get("stable") or "-")
    if release.get("canary"):
        text += f" + {release['canary']} @ {release.get('canary_percent', 0)}%"
    return text


def _yes(value: Any) -> str:
    return "yes" if value else "no"


# -- the group ----------------------------------------------------------------------------------


def _set_json(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(Client).json = True


def json_option(f: _F) -> _F:
    """Accept ``--json`` after the subcommand too (``httpdns state --json``)."""
    return click.option(
        "--json",
        is_flag=True,
        expose_value=False,
        callback=_set_json,
        help="Print machine-readable JSON.",
    )(f)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--server",
    envvar="HTTPDNS_SERVER",
    default=DEFAULT_SERVER,
    callback=_server_url,
    show_default=True,
    help="Base URL of an httpdns node (env HTTPDNS_SERVER).",
)
@click.option(
    "--token", envvar="HTTPDNS_ADMIN_TOKEN", help="Admin token (env HTTPDNS_ADMIN_TOKEN)."
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option(
    "--actor",
    envvar="HTTPDNS_ACTOR",
    help="Who makes the change, for the audit log (default $USER@hostname).",
)
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds per request.")
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
    """Operate an HTTP DNS steering system: registry, traffic, releases, queries."""
    ctx.obj = Client(
        server=server,
        token=token or None,
        actor=actor or _default_actor(),
        json=as_json,
        timeout=timeout,
    )


pass_client = click.make_pass_decorator(Client)


# -- state, health ------------------------------------------------------------------------------


@main.command()
@json_option
@pass_client
def state(client: Client) -> None:
    """Show datacenters, regions, services and endpoints."""
    data = client.state()
    if client.json:
        client.print_json(data)
        return
    out = client.console
    out.print(f"revision {data.get('revision')}")
    dcs = Table(title="datacenters", title_justify="left")
    for col in ("name", "kind", "writable", "drained", "labels"):
        dcs.add_column(col)
    for name, dc in sorted((data.get("datacenters") or {}).items()):
        labels = ",".join(f"{k}={v}" for k, v in (dc.get("labels") or {}).items())
        dcs.add_row(name, dc.get("kind"), _yes(dc.get("writable")), _yes(dc.get("drained")), labels)
    out.print(dcs)
    regions = Table(title="regions", title_justify="left")
    regions.add_column("name")
    regions.add_column("cidrs")
    for name, region in sorted((data.get("regions") or {}).items()):
        regions.add_row(name, " ".join(region.get("cidrs") or []))
    out.print(regions)
    services = Table(title="services", title_justify="left")
    cols = ("name", "access", "ttl", "answers", "all down", "traffic", "release", "healthy")
    for col in cols:
        services.add_column(col, no_wrap=col in ("name", "all down"))
    endpoints = Table(title="endpoints", title_justify="left")
    for col in ("service", "id", "dc", "address", "version", "weight", "healthy"):
        endpoints.add_column(col, no_wrap=col in ("service", "id", "address"))
    for name, svc in sorted((data.get("services") or {}).items()):
        eps = svc.get("endpoints") or {}
        healthy = sum(1 for e in eps.values() if e.get("healthy"))
        services.add_row(
            name,
            svc.get("access"),
            str(svc.get("ttl")),
            str(svc.get("answers")),
            svc.get("all_down"),
            _fmt_traffic(svc.get("traffic") or {}),
            _fmt_release(svc.get("release")),
            f"{healthy}/{len(eps)}",
        )
        for eid, ep in sorted(eps.items()):
            endpoints.add_row(
                name,
                eid,
                ep.get("dc"),
                f"{ep.get('address')}:{ep.get('port')}",
                ep.get("version"),
                str(ep.get("weight")),
                _yes(ep.get("healthy")),
            )
    out.print(services)
    out.print(endpoints)


@main.command()
@json_option
@pass_client
def health(client: Client) -> None:
    """Show the node's health: status, revision, store, staleness."""
    data = client.decode(client.send("GET", "/healthz"))
    if client.json:
        client.print_json(data)
        return
    click.echo(" ".join(f"{k}={v}" for k, v in data.items()))


# -- datacenters --------------------------------------------------------------------------------


@main.group()
def dc() -> None:
    """Datacenters: set, drain, undrain, delete."""


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
    callback=_labels_param,
    help="k=v labels (repeat, or comma-separate); replaces the current ones.",
)
@json_option
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
    current = _record(snapshot, "datacenters", name) or {}
    body = {
        "kind": kind or current.get("kind", "idc"),
        "writable": current.get("writable", True) if writable is None else writable,
        "drained": current.get("drained", False),
        "labels": current.get("labels", {}) if labels is None else labels,
    }
    data = client.api("PUT", f"/datacenters/{_q(name)}", body, if_match=snapshot.get("revision"))
    dc = data.get("datacenter") or body
    client.done(
        f"datacenter {name}",
        data,
        f"kind={dc.get('kind')} writable={_yes(dc.get('writable'))} "
        f"drained={_yes(dc.get('drained'))}",
    )


def _drain(client: Client, name: str, drained: bool) -> None:
    snapshot = client.state()
    current = _record(snapshot, "datacenters", name)
    if current is None:
        raise CliError(f"not_found: datacenter {name!r} does not exist")
    body: dict[str, Any] = {k: current[k] for k in ("kind", "writable", "labels") if k in current}
    body["drained"] = drained
    data = client.api("PUT", f"/datacenters/{_q(name)}", body, if_match=snapshot.get("revision"))
    client.done(f"datacenter {name}", data, "drained" if drained else "undrained")


@dc.command("drain")
@click.argument("name")
@json_option
@pass_client
def dc_drain(client: Client, name: str) -> None:
    """Stop sending new traffic to datacenter NAME."""
    _drain(client, name, True)


@dc.command("undrain")
@click.argument("name")
@json_option
@pass_client
def dc_undrain(client: Client, name: str) -> None:
    """Send traffic to datacenter NAME again."""
    _drain(client, name, False)


@dc.command("delete")
@click.argument("name")
@json_option
@pass_client
def dc_delete(client: Client, name: str) -> None:
    """Delete datacenter NAME (refused while endpoints or traffic tables use it)."""
    data = client.api("DELETE", f"/datacenters/{_q(name)}")
    client.done(f"datacenter {name}", data, "deleted")


# -- regions ------------------------------------------------------------------------------------


@main.group()
def region() -> None:
    """Regions: client networks that select a traffic table."""


@region.command("set")
@click.argument("name")
@click.argument("cidrs", nargs=-1, required=True)
@json_option
@pass_client
def region_set(client: Client, name: str, cidrs: tuple[str, ...]) -> None:
    """Set region NAME to the client networks CIDRS (IPv4 and IPv6)."""
    data = client.api("PUT", f"/regions/{_q(name)}", {"cidrs": list(cidrs)})
    got = data.get("region") or {"cidrs": cidrs}
    client.done(f"region {name}", data, " ".join(got.get("cidrs") or []))


@region.command("delete")
@click.argument("name")
@json_option
@pass_client
def region_delete(client: Client, name: str) -> None:
    """Delete region NAME (its clients fall back to the default table)."""
    data = client.api("DELETE", f"/regions/{_q(name)}")
    client.done(f"region {name}", data, "deleted")


# -- services -----------------------------------------------------------------------------------


@main.group()
def service() -> None:
    """Services: the names clients resolve, and how their traffic is split."""


@service.command("set")
@click.argument("name")
@click.argument("pairs", nargs=-1, metavar="[DC=WEIGHT]...", callback=_pairs_param)
@click.option("--access", type=click.Choice(["rw", "ro"]), help="rw: writable datacenters only.")
@click.option("--ttl", type=click.IntRange(min=0), help="Answer TTL in seconds.")
@click.option("--answers", type=click.IntRange(min=1), help="Addresses per answer.")
@click.option(
    "--all-down",
    type=click.Choice(["fail-open", "fail-closed"]),
    help="What to answer when no datacenter is eligible.",
)
@click.option(
    "--traffic",
    "traffic_opts",
    multiple=True,
    metavar="DC=WEIGHT",
    callback=_pairs_param,
    help="Default traffic table entry (repeat); same as the positional pairs.",
)
@json_option
@pass_client
def service_set(
    client: Client,
    name: str,
    pairs: dict[str, int],
    access: str | None,
    ttl: int | None,
    answers: int | None,
    all_down: str | None,
    traffic_opts: dict[str, int],
) -> None:
    """Create or change service NAME (an FQDN).

    Traffic pairs (idc=70 cloud=30) set the default table; other regions' tables
    are kept. A new service needs traffic; for an existing one, whatever is not
    given keeps its current value.
    """
    twice = sorted(set(pairs) & set(traffic_opts))
    if twice:
        raise click.UsageError(f"traffic for {twice[0]!r} is given twice")
    table = {**traffic_opts, **pairs}
    snapshot = client.state()
    current = _record(snapshot, "services", name)
    if current is None and not table:
        raise click.UsageError(f"service {name!r} is new: give its traffic, e.g. idc=70 cloud=30")
    current = current or {}
    traffic = dict(current.get("traffic") or {})
    if table:
        traffic["default"] = table
    body: dict[str, Any] = {"traffic": traffic}
    given = {"access": access, "ttl": ttl, "answers": answers, "all_down": all_down}
    for key, value in given.items():
        if value is not None:
            body[key] = value
        elif key in current:
            body[key] = current[key]
    data = client.api("PUT", f"/services/{_q(name)}", body, if_match=snapshot.get("revision"))
    svc = data.get("service") or body
    client.done(
        f"service {name}",
        data,
        f"access={svc.get('access')} ttl={svc.get('ttl')} answers={svc.get('answers')} "
        f"all_down={svc.get('all_down')} {_fmt_traffic(svc.get('traffic') or {}, '; ')}",
    )


@service.command("delete")
@click.argument("name")
@json_option
@pass_client
def service_delete(client: Client, name: str) -> None:
    """Delete service NAME with its endpoints and release."""
    data = client.api("DELETE", f"/services/{_q(name)}")
    client.done(f"service {name}", data, "deleted")


# -- traffic ------------------------------------------------------------------------------------


@main.group()
def traffic() -> None:
    """Traffic tables: set one region's split, or shift weight between datacenters."""


@traffic.command("set")
@click.argument("service_name", metavar="SERVICE")
@click.argument("pairs", nargs=-1, required=True, metavar="DC=WEIGHT...", callback=_pairs_param)
@click.option("--region", default="default", show_default=True, help="The table to set.")
@json_option
@pass_client
def traffic_set(client: Client, service_name: str, pairs: dict[str, int], region: str) -> None:
    """Set SERVICE's traffic table for one region, e.g. idc=60 cloud=40."""
    snapshot = client.state()
    current = _record(snapshot, "services", service_name)
    if current is None:
        raise CliError(f"not_found: service {service_name!r} does not exist")
    tables = dict(current.get("traffic") or {})
    tables[region] = pairs
    data = client.api(
        "PUT",
        f"/services/{_q(service_name)}/traffic",
        tables,
        if_match=snapshot.get("revision"),
    )
    got = (data.get("service") or {}).get("traffic") or tables
    client.done(f"service {service_name} traffic", data, _fmt_traffic(got, "; "))


@traffic.command("shift")
@click.option("--from", "from_dc", required=True, help="Datacenter that gives weight.")
@click.option("--to", "to_dc", required=True, help="Datacenter that receives it.")
@click.option(
    "--percent",
    type=click.FloatRange(0, 100, min_open=True),
    required=True,
    help="Share of the source's weight to move (0-100].",
)
@click.option(
    "--service",
    "services",
    multiple=True,
    help="Only this service (repeat); default every service that uses both.",
)
@json_option
@pass_client
def traffic_shift(
    client: Client, from_dc: str, to_dc: str, percent: float, services: tuple[str, ...]
) -> None:
    """Move traffic from one datacenter to another in every table (or --service)."""
    share: int | float = int(percent) if percent.is_integer() else percent
    body = {"from": from_dc, "to": to_dc, "percent": share, "services": list(services) or None}
    data = client.api("POST", "/traffic/shift", body)
    if client.json:
        client.print_json(data)
        return
    changed = data.get("services") or {}
    click.echo(f"shifted {share}% from {from_dc} to {to_dc} (revision {data.get('revision')})")
    for name, tables in sorted(changed.items()):
        click.echo(f"  {name}: {_fmt_traffic(tables or {}, '; ')}")
    if not changed:
        click.echo("  no service changed")


# -- endpoints, releases ------------------------------------------------------------------------


@main.group()
def endpoint() -> None:
    """Endpoints: the addresses that serve a service."""


@endpoint.command("set")
@click.argument("service_name", metavar="SERVICE")
@click.argument("endpoint_id", metavar="ID")
@click.option("--dc", help="Datacenter (required for a new endpoint).")
@click.option("--address", help="IPv4 or IPv6 address (required for a new endpoint).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port [80].")
@click.option("--version", "version_", help="Version it runs [v1].")
@click.option("--weight", type=click.IntRange(min=0), help="Weight within its datacenter [100].")
@click.option("--healthy/--unhealthy", default=None, help="Health [healthy].")
@json_option
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
    svc = _record(snapshot, "services", service_name) or {}
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
        f"/services/{_q(service_name)}/endpoints/{_q(endpoint_id)}",
        body,
        if_match=snapshot.get("revision"),
    )
    ep = data.get("endpoint") or body
    client.done(
        f"endpoint {service_name}/{endpoint_id}",
        data,
        f"{ep.get('address')}:{ep.get('port', 80)} dc={ep.get('dc')} "
        f"version={ep.get('version')} weight={ep.get('weight')} healthy={_yes(ep.get('healthy'))}",
    )


@endpoint.command("delete")
@click.argument("service_name", metavar="SERVICE")
@click.argument("endpoint_id", metavar="ID")
@json_option
@pass_client
def endpoint_delete(client: Client, service_name: str, endpoint_id: str) -> None:
    """Remove endpoint ID from SERVICE."""
    data = client.api("DELETE", f"/services/{_q(service_name)}/endpoints/{_q(endpoint_id)}")
    client.done(f"endpoint {service_name}/{endpoint_id}", data, "deleted")


@main.group()
def release() -> None:
    """Releases: the stable version and a canary share."""


@release.command("set")
@click.argument("service_name", metavar="SERVICE")
@click.option("--stable", help="Stable version (kept when not given).")
@click.option("--canary", help="Canary version.")
@click.option(
    "--percent", type=click.FloatRange(0, 100), help="Share of clients on the canary (0-100)."
)
@json_option
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
    svc = _record(snapshot, "services", service_name) or {}
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
        f"/services/{_q(service_name)}/release",
        body,
        if_match=snapshot.get("revision"),
    )
    client.done(f"release {service_name}", data, _fmt_release(data.get("release") or body))


# -- explain, audit -----------------------------------------------------------------------------


def _fmt_scalar(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return " ".join(f"{k}={_fmt_scalar(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(_fmt_scalar(v) for v in value) or "-"
    return "-" if value is None else str(value)


def render_explain(data: Mapping[str, Any]) -> list[str]:
    """The lines ``explain`` prints for a steering trace."""
    client = data.get("client") or {}
    lines = [
        f"{data.get('name')} {data.get('type')} for {client.get('ip')}"
        + (f" uid {client['uid']}" if client.get("uid") else "")
        + f"  (key {client.get('key')}, bucket {client.get('bucket')})"
        + f"  revision {data.get('revision')}",
        f"  region      {data.get('region')}",
    ]
    for step in data.get("trace") or []:
        kind = step.get("step")
        rest = {k: v for k, v in step.items() if k != "step"}
        if kind == "datacenter" and isinstance(rest.get("scores"), Mapping):
            scores = sorted(
                rest.pop("scores").items(),
                key=lambda kv: -(kv[1] if isinstance(kv[1], int | float) else float("-inf")),
            )
            rest["scores"] = " ".join(f"{dc}={_fmt_scalar(s)}" for dc, s in scores)
        if kind == "endpoints" and isinstance(rest.get("candidates"), Mapping):
            rest["candidates"] = _fmt_scalar(rest.pop("candidates"))
        lines.append(f"  {kind}")
        lines.extend(f"    {key:<14} {_fmt_scalar(value)}" for key, value in rest.items())
    lines.append(
        f"  chosen      datacenter {data.get('datacenter')}  version {data.get('version')}"
        f"  cohort {data.get('cohort')}  status {data.get('status')}"
    )
    lines.append(f"  answer      {_fmt_scalar(data.get('answer') or [])}  ttl {data.get('ttl')}")
    return lines


@main.command()
@click.argument("name")
@click.option("--ip", help="Client address (default: this host as the server sees it).")
@click.option("--uid", help="Device id; the client key instead of the address.")
@click.option("--type", "qtype", type=click.Choice(["A", "AAAA"], case_sensitive=False))
@json_option
@pass_client
def explain(client: Client, name: str, ip: str | None, uid: str | None, qtype: str | None) -> None:
    """Show how NAME would be answered for a client, step by step."""
    params = {"name": name, "ip": ip, "uid": uid, "type": qtype.upper() if qtype else None}
    data = client.api("GET", "/explain", params=params)
    if client.json:
        client.print_json(data)
        return
    for line in render_explain(data):
        click.echo(line)


def _fmt_time(value: Any) -> str:
    if isinstance(value, int | float):
        return datetime.datetime.fromtimestamp(value).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    return str(value or "-")


def summarize_change(change: Mapping[str, Any]) -> str:
    """One short line for an audit change: ``put datacenter idc (drained)``."""
    op, kind, key = change.get("op"), change.get("kind"), change.get("key")
    text = f"{op} {kind} {key}"
    value = change.get("value")
    if op != "put" or not isinstance(value, Mapping):
        return text
    detail = ""
    if kind == "datacenter":
        detail = f"{value.get('kind')}{', drained' if value.get('drained') else ''}"
    elif kind == "region":
        detail = " ".join(value.get("cidrs") or [])
    elif kind == "service":
        detail = _fmt_traffic(value.get("traffic") or {}, "; ")
    elif kind == "endpoint":
        health = "healthy" if value.get("healthy") else "unhealthy"
        detail = f"{value.get('address')} {value.get('dc')} {value.get('version')} {health}"
    elif kind == "release":
        detail = _fmt_release(value)
    return f"{text} ({detail})" if detail else text


@main.command()
@click.option("--since", type=click.IntRange(min=0), help="Only changes after this revision.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many entries.")
@json_option
@pass_client
def audit(client: Client, since: int | None, limit: int | None) -> None:
    """Show the audit log: revision, time, actor and changes."""
    data = client.api("GET", "/audit", params={"since": since, "limit": limit})
    if client.json:
        client.print_json(data)
        return
    table = Table(title=f"audit (revision {data.get('revision')})", title_justify="left")
    for col in ("revision", "time", "actor", "changes"):
        table.add_column(col, no_wrap=col != "changes")
    for entry in data.get("entries") or []:
        changes = "\n".join(summarize_change(c) for c in entry.get("changes") or [])
        table.add_row(
            str(entry.get("revision")), _fmt_time(entry.get("time")), entry.get("actor"), changes
        )
    client.console.print(table)


# -- query --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Answer:
    """The result of one ``query``: records as (name, ttl, type, data)."""

    records: list[DnsRecord]
    ttl: int | None
    status: str
    ms: float


def _dns_query(name: str, qtype: str, ip: str | None) -> bytes:
    q = dnslib.DNSRecord.question(name, qtype)
    q.header.id = 0  # RFC 8484 4.1: ID 0 keeps GET responses cacheable
    if ip:
        addr = ipaddress.ip_address(ip)
        family, prefix = (1, 32) if addr.version == 4 else (2, 128)
        ecs = family.to_bytes(2, "big") + bytes([prefix, 0]) + addr.packed
        q.add_ar(dnslib.EDNS0(udp_len=4096, opts=[dnslib.EDNSOption(8, ecs)]))
    return bytes(q.pack())


def _dns_answer(body: bytes) -> tuple[str, list[DnsRecord]]:
    try:
        reply = dnslib.DNSRecord.parse(body)
    except (dnslib.DNSError, ValueError, IndexError) as e:
        raise CliError(f"bad DNS answer: {e}") from None
    records: list[DnsRecord] = [
        (str(rr.rname), int(rr.ttl), str(dnslib.QTYPE.get(rr.rtype, rr.rtype)), str(rr.rdata))
        for rr in reply.rr
    ]
    return str(dnslib.RCODE.get(reply.header.rcode, reply.header.rcode)), records


def run_query(
    client: Client,
    name: str,
    dialect: str,
    qtype: str,
    ip: str | None,
    uid: str | None,
    account: str,
) -> Answer:
    """Ask the query API for ``name`` in one dialect and normalise the answer."""
    fqdn = name.rstrip(".") + "."
    if dialect == "d":
        params = {"dn": name, "ip": ip, "ttl": 1, "uid": uid}
        if qtype == "AAAA":
            params["type"] = "aaaa"
        r = client.send("GET", "/d", params=params)
        text = r.body.decode("utf-8", "replace").strip()
        addrs, _, ttl_text = text.partition(",")
        ttl = int(ttl_text) if ttl_text.strip().isdigit() else None
        ips = [a for a in addrs.split("|")[0].split(";") if a]
        return Answer([(fqdn, ttl, qtype, a) for a in ips], ttl, "NOERROR", r.ms)
    if dialect == "aliyun":
        params = {"host": name, "ip": ip, "query": "6" if qtype == "AAAA" else "4", "uid": uid}
        r = client.send("GET", f"/{_q(account)}/d", params=params)
        data = client.decode(r)
        ips = data.get("ipsv6" if qtype == "AAAA" else "ips") or []
        ttl = data.get("ttl")
        return Answer([(fqdn, ttl, qtype, str(a)) for a in ips], ttl, "NOERROR", r.ms)
    if dialect == "json":
        ecs = None
        if ip:
            ecs = f"{ip}/{32 if ipaddress.ip_address(ip).version == 4 else 128}"
        params = {"name": name, "type": qtype, "edns_client_subnet": ecs, "uid": uid}
        r = client.send("GET", "/resolve", params=params)
        data = client.decode(r)
        types = {v: k for k, v in _QTYPES.items()} | {5: "CNAME"}
        records = [
            (str(a.get("name")), a.get("TTL"), types.get(a.get("type"), str(a.get("type"))),
             str(a.get("data")))
            for a in data.get("Answer") or []
        ]  # fmt: skip
        ttls = [t for _, t, _, _ in records if isinstance(t, int)]
        status = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}.get(
            data.get("Status", 0), str(data.get("Status"))
        )
        return Answer(records, min(ttls) if ttls else None, status, r.ms)
    try:
        packed = _dns_query(name, qtype, ip)
    except (dnslib.DNSError, dnslib.DNSLabelError, UnicodeError, ValueError) as e:
        raise click.BadParameter(f"{name!r} is not a DNS name: {e}", param_hint="NAME") from None
    wire = base64.urlsafe_b64encode(packed).rstrip(b"=").decode()
    r = client.send(
        "GET",
        "/dns-query",
        params={"dns": wire, "uid": uid},
        headers={"Accept": "application/dns-message"},
    )
    status, records = _dns_answer(r.body)
    ttls = [t for _, t, _, _ in records if t is not None]
    return Answer(records, min(ttls) if ttls else None, status, r.ms)


@main.command()
@click.argument("name")
@click.option(
    "--dialect",
    type=click.Choice(["d", "aliyun", "json", "doh"]),
    default="d",
    show_default=True,
    help="d: /d text; aliyun: /{account}/d JSON; json: /resolve; doh: RFC 8484 /dns-query.",
)
@click.option("--ip", help="Client address to answer for (ECS for json and doh).")
@click.option("--uid", help="Device id (the client key instead of the address).")
@click.option(
    "--type",
    "qtype",
    type=click.Choice(["A", "AAAA"], case_sensitive=False),
    default="A",
    show_default=True,
)
@click.option("--account", default="100000", show_default=True, help="Aliyun-style account.")
@json_option
@pass_client
def query(
    client: Client,
    name: str,
    dialect: str,
    ip: str | None,
    uid: str | None,
    qtype: str,
    account: str,
) -> None:
    """Resolve NAME through the query API, like dig."""
    qtype = qtype.upper()
    if ip is not None:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise click.BadParameter(f"{ip!r} is not an IP address", param_hint="--ip") from None
    answer = run_query(client, name, dialect, qtype, ip, uid, account)
    addresses = [data for _, _, rtype, data in answer.records if rtype == qtype]
    if client.json:
        client.print_json(
            {
                "name": name,
                "type": qtype,
                "answers": addresses,
                "ttl": answer.ttl,
                "dialect": dialect,
                "ms": round(answer.ms, 2),
                "status": answer.status,
            }
        )
        return
    fqdn = name.rstrip(".") + "."
    click.echo(f";; {dialect} query to {client.server}, status: {answer.status}")
    click.echo(";; QUESTION SECTION:")
    click.echo(f";{fqdn:<31} IN  {qtype}")
    click.echo("")
    click.echo(f";; ANSWER SECTION: {len(answer.records)} record(s)")
    for rname, ttl, rtype, data in answer.records:
        shown = "-" if ttl is None else str(ttl)
        click.echo(f"{rname:<31} {shown:<7} IN  {rtype:<5} {data}")
    click.echo("")
    click.echo(f";; Query time: {answer.ms:.1f} msec")


# -- registry maintenance -----------------------------------------------------------------------


@main.group("registry")
def registry_group() -> None:
    """Store maintenance."""


@registry_group.command("restore")
@click.option(
    "--from-node",
    "node_url",
    required=True,
    callback=_server_url,
    help="A node whose snapshot re-seeds the store (it pushes its own copy).",
)
@json_option
@pass_client
def registry_restore(client: Client, node_url: str) -> None:
    """Re-seed a store that lost data (e.g. a Redis that came back empty) or is damaged
    (its records do not match their digest) from a node.

    Refused when the store is not behind the node's snapshot and its content is intact.
    """
    client.server = node_url
    data = client.api("POST", "/registry/restore")
    client.done("registry", data, f"restored from {node_url}")


# -- the fleet: nodes, wait (httpdns/fleet.py) ---------------------------------------------------


def _ago(seen: Any, now: float) -> str:
    return f"{max(0.0, now - seen):.1f}s ago" if isinstance(seen, int | float) else "-"


@main.command("nodes")
@json_option
@pass_client
def nodes_cmd(client: Client) -> None:
    """List the live nodes (their heartbeats): id, address, version, revision, status."""
    data = client.api("GET", "/nodes")
    if client.json:
        client.print_json(data)
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
    client.console.print(table)


@main.command("wait")
@click.argument("revision", type=click.IntRange(min=0), required=False)
@click.option(
    "--timeout", "wait_for", type=float, default=30.0, show_default=True, help="Seconds to wait."
)
@json_option
@pass_client
def wait_cmd(client: Client, revision: int | None, wait_for: float) -> None:
    """Wait until every live node has applied REVISION (default: the server's current one).

    Exit 0 when they all have; 1 naming the laggards when TIMEOUT passes first.
    """
    deadline = time.monotonic() + wait_for
    while True:
        data = client.api("GET", "/nodes")
        if revision is None:
            revision = int(data.get("revision") or 0)
        nodes = [n for n in data.get("nodes") or [] if isinstance(n, dict)]
        late = [
            n for n in nodes if not isinstance(n.get("revision"), int) or n["revision"] < revision
        ]
        if not late and nodes:
            break
        if time.monotonic() >= deadline:
            if not nodes:
                raise CliError(f"no live node reports a heartbeat (waited {wait_for:g}s)")
            names = ", ".join(f"{n.get('id')} at {n.get('revision')}" for n in late)
            raise CliError(
                f"{len(late)} of {len(nodes)} nodes have not applied revision {revision} "
                f"after {wait_for:g}s: {names}"
            )
        time.sleep(0.2)
    if client.json:
        client.print_json({"revision": revision, "nodes": len(nodes), "applied": len(nodes)})
    else:
        click.echo(f"all {len(nodes)} nodes have applied revision {revision}")


if __name__ == "__main__":
    main()
