"""``apply`` and ``export``: the registry as a TOML file.

The file holds ``[datacenters.NAME]``, ``[regions.NAME]`` and ``[services."NAME"]`` tables
in the admin API's body shapes, a service's ``traffic`` as ``[services."NAME".traffic]``
with one key per region, its endpoints as ``[services."NAME".endpoints.ID]`` and its
release as ``[services."NAME".release]``. ``apply`` makes the registry match the file as
one revision (nothing when it already does); ``export`` writes the current registry so.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from .client import Client
from .errors import CliError
from .options import ClientCommand, pass_client, write_options
from .render import done, fmt_diff, print_json

APPLY_TIMEOUT = 900.0  # seconds the node may take to answer an apply (a large one is slow)
_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


@write_options()
@click.command("apply", cls=ClientCommand)
@click.argument("path", metavar="FILE.toml", type=click.Path(dir_okay=False))
@click.option("--prune", is_flag=True, help="Delete the records the file does not name.")
@pass_client
def apply(client: Client, path: str, prune: bool) -> None:
    """Make the registry match FILE.toml as one revision and print the diff; a second
    apply of the same file changes nothing."""
    try:
        body = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CliError(f"{path}: {exc}") from None
    current = client.api("GET", "/registry")
    params = {"prune": "1"} if prune else None
    # a registry of 100,000 services takes the node a minute to validate and commit
    slow = dataclasses.replace(client, timeout=max(client.timeout, APPLY_TIMEOUT))
    data = slow.api("PUT", "/registry", body, params=params, if_match=current.get("revision"))
    changes = data.get("changes") or []
    if client.json:
        print_json(data)
        return
    if not changes:
        click.echo(
            f"no change: the registry already matches {path} (revision {data.get('revision')})"
        )
        return
    n = len(changes)
    done(client, f"apply {path}", data, f"{n} change{'s' if n != 1 else ''}")
    if not data.get("dry_run"):
        for change in changes:
            click.echo(f"  {fmt_diff(change)}")


@click.command("export", cls=ClientCommand)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file.")
@pass_client
def export(client: Client, output: str | None) -> None:
    """Write the registry as a TOML file that ``httpdns apply`` takes."""
    data = client.api("GET", "/registry")
    if client.json:
        print_json(data)
        return
    text = f"# httpdns registry at revision {data.get('revision')}\n" + to_toml(
        data.get("registry") or {}
    )
    if output:
        Path(output).write_text(text)
        click.echo(f"wrote {output} (revision {data.get('revision')})")
    else:
        click.echo(text, nl=False)


def _key(name: str) -> str:
    return name if _BARE.match(name) else json.dumps(name)


def _value(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def to_toml(doc: Mapping[str, Any], path: tuple[str, ...] = ()) -> str:
    """``doc`` as TOML: plain values first, then one ``[table]`` per nested mapping (small
    mappings such as labels and a region's weights stay inline)."""
    lines = []
    tables = []
    for key, value in doc.items():
        nested = isinstance(value, Mapping) and key not in ("labels",) and not _weights(value)
        if nested:
            tables.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    out = ""
    if lines and path:
        out += "\n[" + ".".join(_key(p) for p in path) + "]\n"
    out += "".join(line + "\n" for line in lines)
    for key, value in tables:
        sub = to_toml(value, (*path, key))
        if not sub.strip():
            sub = "\n[" + ".".join(_key(p) for p in (*path, key)) + "]\n"
        out += sub
    return out


def _weights(value: Mapping[str, Any]) -> bool:
    """A datacenter -> weight table (kept inline)."""
    return bool(value) and all(isinstance(v, int) and not isinstance(v, bool)
                               for v in value.values())  # fmt: skip
