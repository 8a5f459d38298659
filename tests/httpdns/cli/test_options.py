"""Global options before or after the subcommand, and the parameter parsers."""

from __future__ import annotations

import json

import click
import pytest

from httpdns import cli
from httpdns.cli import client as client_mod
from httpdns.cli.options import parse_labels, parse_pairs, parse_server
from tests.servers import Node

from .conftest import SERVICE, STATE, TOKEN, FakeServer, httpdns, invoke, ok, state

# -- parsers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["idc=60", "cloud=40"], {"idc": 60, "cloud": 40}),
        ([" idc = 0 "], {"idc": 0}),
        ([], {}),
    ],
)
def test_parse_pairs(values: list[str], expected: dict[str, int]) -> None:
    assert parse_pairs(values) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("idc", "is not NAME=INT"),
        ("=60", "is not NAME=INT"),
        ("idc=sixty", "is not an integer"),
        ("idc=6.5", "is not an integer"),
        ("idc=-1", "must be >= 0"),
    ],
)
def test_parse_pairs_rejects(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_pairs([value])


def test_parse_pairs_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="given twice"):
        parse_pairs(["idc=1", "idc=2"])


def test_parse_labels() -> None:
    assert parse_labels(["a=1,b=2", "c="]) == {"a": "1", "b": "2", "c": ""}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_labels(["nolabel"])


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("node:9000/", "http://node:9000"),
        ("https://h.example/base/", "https://h.example/base"),
        (" http://[::1]:8053 ", "http://[::1]:8053"),
    ],
)
def test_parse_server(url: str, expected: str) -> None:
    assert parse_server(url) == expected


@pytest.mark.parametrize("url", ["ftp://x", "http://", "http://[bad", "::1", "h:99999"])
def test_bad_server_url_is_a_usage_error(server: FakeServer, url: str) -> None:
    for args in (["--server", url, "state"], ["state", "--server", url]):
        result = invoke(*args)
        assert result.exit_code == 2
        assert "is not an http(s)://HOST[:PORT] URL" in result.stderr
    assert server.sent == []


def test_server_url_without_scheme(server: FakeServer) -> None:
    result = invoke("--server", "node:9000/", "health")
    assert result.exit_code == 0, result.output
    assert server.sent[0].url == "http://node:9000/healthz"


# -- global options anywhere -------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--server", "http://a:1", "--token", "T", "--actor", "ann@box", "--json", "state"],
        ["state", "--server", "http://a:1", "--token", "T", "--actor", "ann@box", "--json"],
        ["--json", "state", "--server", "http://a:1", "--token", "T", "--actor", "ann@box"],
        ["--server", "http://b:2", "--token", "X", "state", "--server", "http://a:1",
         "--token", "T", "--json", "--actor", "ann@box"],
    ],
)  # fmt: skip
def test_global_options_before_or_after_the_subcommand(server: FakeServer, args: list[str]) -> None:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == STATE
    [sent] = server.sent
    assert sent.url == "http://a:1/api/v1/state"
    assert sent.headers["authorization"] == "Bearer T"
    assert sent.headers["x-actor"] == "ann@box"


def test_options_after_a_nested_subcommand(server: FakeServer) -> None:
    result = invoke(
        "traffic", "set", SERVICE, "idc=1", "--token", "T", "--server", "http://a:1", "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"revision": 5}
    [put] = server.writes
    assert put.url == f"http://a:1/api/v1/services/{SERVICE}/traffic"
    assert put.headers["authorization"] == "Bearer T"
    result = invoke("--server", "http://a:1", "traffic", "--token", "U", "set", SERVICE, "idc=2")
    assert result.exit_code == 0, result.output
    assert server.writes[1].headers["authorization"] == "Bearer U"


def test_a_flag_after_the_subcommand_beats_the_environment(server: FakeServer) -> None:
    env = {"HTTPDNS_SERVER": "http://env:1", "HTTPDNS_ADMIN_TOKEN": "E"}
    assert invoke("health", env=env).exit_code == 0
    assert server.sent[-1].url == "http://env:1/healthz"
    assert invoke("health", "--server", "http://flag:2", env=env).exit_code == 0
    assert server.sent[-1].url == "http://flag:2/healthz"
    assert invoke("state", "--token", "F", env=env).exit_code == 0
    assert server.sent[-1].headers["authorization"] == "Bearer F"
    assert invoke("state", env=env).exit_code == 0
    assert server.sent[-1].headers["authorization"] == "Bearer E"


def test_timeout_after_the_subcommand(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(request: object, timeout: float) -> client_mod.Response:
        raise TimeoutError("timed out")

    monkeypatch.setattr(client_mod, "_transport", slow)
    result = invoke("--server", "http://n:1", "health", "--timeout", "0.5")
    assert result.stderr == "error: cannot reach http://n:1: timed out after 0.5s\n"


def _commands(group: click.Group, ctx: click.Context) -> list[click.Command]:
    out: list[click.Command] = []
    for name in group.list_commands(ctx):
        if name == "serve":
            continue  # the server has its own options
        command = group.get_command(ctx, name)
        assert command is not None
        out.append(command)
        if isinstance(command, click.Group):
            out.extend(_commands(command, ctx))
    return out


def test_every_client_command_takes_the_global_options() -> None:
    ctx = click.Context(cli.main)
    commands = _commands(cli.main, ctx)
    assert len(commands) >= 24
    for command in commands:
        names = {opt for p in command.params for opt in getattr(p, "opts", [])}
        assert {"--server", "--token", "--json", "--actor", "--timeout"} <= names, command.name


def test_help_lists_global_options_apart() -> None:
    result = invoke("dc", "drain", "--help")
    assert result.exit_code == 0
    own, _, shared = result.stdout.partition("Global options:")
    assert "--server URL" in shared
    assert "--token TOKEN" in shared
    assert "--server" not in own


# -- against a real node -----------------------------------------------------------------------


def test_options_after_the_subcommand_on_a_real_node(registry: Node) -> None:
    wrong = "http://127.0.0.1:9"  # the environment points elsewhere: the flags must win
    out = ok(
        registry, "state", "--json", "--server", registry.url, "--token", TOKEN,
        server=wrong, token=None,
    )  # fmt: skip
    assert json.loads(out) == state(registry)
    name = "global-options.example.com"
    ok(registry, "service", "set", name, "idc=1", "--token", TOKEN, token=None)
    result = httpdns(
        registry, "traffic", "set", name, "idc=2", "cloud=3", "--token", TOKEN, "--json",
        "--actor", "late@ci", token=None,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    written = json.loads(result.stdout)
    assert written["service"]["traffic"]["default"] == {"idc": 2, "cloud": 3}
    entries = json.loads(ok(registry, "audit", "--json", "--since", str(written["revision"] - 1)))
    assert [e["actor"] for e in entries["entries"]] == ["late@ci"]
    ok(registry, "service", "delete", name)
