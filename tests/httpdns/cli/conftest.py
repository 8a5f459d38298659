"""Fixtures for the CLI tests.

Unit tests run the CLI in-process with click's runner; ``server`` replaces the HTTP
transport (``httpdns.cli.client._transport``) with an in-memory fake, so they see
exactly which requests each command sends. End-to-end tests run the CLI as a
subprocess against one real node (``httpdns serve``, SQLite in a temporary directory,
``tests.servers.Node``) shared by the package; ``registry`` builds its records through
the CLI. Tests that change records beyond that use their own names or undo what they did.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from click.testing import CliRunner, Result

from httpdns import cli
from httpdns.cli import client as client_mod
from tests.servers import Node

# -- unit: an in-memory server ----------------------------------------------------------------

STATE: dict[str, Any] = {
    "revision": 4,
    "datacenters": {
        "idc": {"name": "idc", "kind": "idc", "writable": True, "drained": False, "labels": {}},
        "cloud": {
            "name": "cloud",
            "kind": "cloud",
            "writable": False,
            "drained": False,
            "labels": {"provider": "x"},
        },
    },
    "regions": {"north": {"name": "north", "cidrs": ["10.0.0.0/8"]}},
    "services": {
        "www.example.com": {
            "name": "www.example.com",
            "access": "ro",
            "ttl": 30,
            "answers": 2,
            "all_down": "fail-closed",
            "traffic": {"default": {"idc": 70, "cloud": 30}, "north": {"idc": 100}},
            "release": {
                "service": "www.example.com",
                "stable": "v1",
                "canary": "v2",
                "canary_percent": 5.0,
            },
            "endpoints": {
                "web-1": {
                    "service": "www.example.com",
                    "id": "web-1",
                    "dc": "idc",
                    "address": "192.0.2.1",
                    "port": 8080,
                    "version": "v1",
                    "weight": 100,
                    "healthy": True,
                    "labels": {"rack": "a"},
                },
            },
        }
    },
}


@dataclass
class Sent:
    """One request the CLI made."""

    method: str
    url: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeServer:
    """Answers GET /api/v1/state with STATE, and everything else from ``routes``."""

    routes: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)

    def __call__(self, request: urllib.request.Request, timeout: float) -> client_mod.Response:
        url = urllib.parse.urlsplit(request.full_url)
        data = request.data
        body = json.loads(data) if isinstance(data, bytes) else None
        headers = {k.lower(): v for k, v in request.header_items()}
        query = dict(urllib.parse.parse_qsl(url.query))
        method = request.get_method()
        self.sent.append(Sent(method, request.full_url, url.path, query, headers, body))
        key = (method, url.path)
        if key in self.routes:
            status, payload = self.routes[key]
        elif key == ("GET", "/api/v1/state"):
            status, payload = 200, STATE
        else:
            status, payload = 200, {"revision": 5}
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return client_mod.Response(status, "OK" if status < 400 else "Error", {}, raw, 1.5)

    @property
    def writes(self) -> list[Sent]:
        return [s for s in self.sent if s.method != "GET"]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    """The in-memory server every request of the CLI goes to."""
    fake = FakeServer()
    monkeypatch.setattr(client_mod, "_transport", fake)
    return fake


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run the CLI in-process with exactly ``args`` (no HTTPDNS_* from the shell)."""
    clean = {"HTTPDNS_SERVER": None, "HTTPDNS_ADMIN_TOKEN": None, "HTTPDNS_ACTOR": None}
    return CliRunner().invoke(cli.main, list(args), env={**clean, "COLUMNS": "200", **(env or {})})


def run(*args: str) -> Result:
    """Run the CLI in-process with a server, token T and actor ann@box before ``args``."""
    return invoke("--server", "http://node:8053", "--token", "T", "--actor", "ann@box", *args)


# -- end to end: one real node for the package -----------------------------------------------

TOKEN = "functional-test-token"
ACTOR = "tester@ci"
SERVICE = "www.example.com"
V4 = {"192.0.2.1", "192.0.2.2", "198.51.100.1"}
V6 = {"2001:db8::1"}


@pytest.fixture(scope="package")
def cli_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A running ``httpdns serve`` (SQLite, admin token TOKEN) with an empty registry."""
    tmp = tmp_path_factory.mktemp("cli-node")
    node = Node(f"sqlite:///{tmp}/registry.db", tmp, token=TOKEN).start()
    try:
        yield node
    finally:
        node.stop()


def httpdns(
    node: Node,
    *args: str,
    token: str | None = TOKEN,
    server: str | None = None,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the CLI (``python -m httpdns.cli``) against ``node``; never a traceback.

    The server and the token come from the environment unless ``server``/``token`` are
    None or overridden; ``env`` adds more.
    """
    base = {k: v for k, v in os.environ.items() if not k.startswith("HTTPDNS_")}
    base.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", COLUMNS="200")
    base.update(HTTPDNS_SERVER=server or node.url, HTTPDNS_ACTOR=ACTOR)
    if token is not None:
        base["HTTPDNS_ADMIN_TOKEN"] = token
    base.update(env or {})
    result = subprocess.run(
        [sys.executable, "-m", "httpdns.cli", *args],
        env=base,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout
    return result


def ok(node: Node, *args: str, **kw: Any) -> str:
    """Run the CLI and expect success; return stdout."""
    result = httpdns(node, *args, **kw)
    assert result.returncode == 0, f"{args}: {result.stderr}"
    return result.stdout


def fails(node: Node, *args: str, code: int = 1, **kw: Any) -> str:
    """Run the CLI and expect exit ``code`` with nothing on stdout; return stderr."""
    result = httpdns(node, *args, **kw)
    assert result.returncode == code, f"{args}: rc={result.returncode} {result.stderr}"
    assert result.stdout == ""
    return result.stderr


def state(node: Node) -> dict[str, Any]:
    """The registry snapshot, through ``httpdns --json state``."""
    data: dict[str, Any] = json.loads(ok(node, "--json", "state"))
    return data


@pytest.fixture(scope="package")
def registry(cli_node: Node) -> Node:
    """``cli_node`` with datacenters idc and cloud, region north and SERVICE (four
    endpoints, stable v1), all written through the CLI."""
    ok(cli_node, "dc", "set", "idc", "--kind", "idc", "--writable")
    ok(cli_node, "dc", "set", "cloud", "--kind", "cloud", "--read-only", "--labels", "provider=x")
    ok(cli_node, "region", "set", "north", "10.0.0.0/8", "2001:db8:1::/48")
    ok(cli_node, "service", "set", SERVICE, "--ttl", "30", "--all-down", "fail-open", "idc=70",
       "cloud=30")  # fmt: skip
    ok(cli_node, "endpoint", "set", SERVICE, "web-1", "--dc", "idc", "--address", "192.0.2.1",
       "--port", "8080")  # fmt: skip
    ok(cli_node, "endpoint", "set", SERVICE, "web-2", "--dc", "idc", "--address", "192.0.2.2")
    ok(cli_node, "endpoint", "set", SERVICE, "web-3", "--dc", "cloud", "--address", "198.51.100.1")
    ok(cli_node, "endpoint", "set", SERVICE, "web-6", "--dc", "cloud", "--address", "2001:db8::1")
    ok(cli_node, "release", "set", SERVICE, "--stable", "v1")
    return cli_node
