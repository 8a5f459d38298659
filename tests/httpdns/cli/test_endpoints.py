"""``endpoint`` and ``release``: edits that keep what is not given."""

from __future__ import annotations

from typing import Any

import pytest

from tests.servers import Node

from .conftest import SERVICE, FakeServer, ok, run, state


def test_endpoint_set_existing_keeps_fields(server: FakeServer) -> None:
    result = run("endpoint", "set", "www.example.com", "web-1", "--unhealthy")
    assert result.exit_code == 0, result.output
    [put] = server.writes
    assert put.path == "/api/v1/services/www.example.com/endpoints/web-1"
    assert put.body == {
        "dc": "idc",
        "address": "192.0.2.1",
        "port": 8080,
        "version": "v1",
        "weight": 100,
        "healthy": False,
        "labels": {"rack": "a"},
    }


def test_endpoint_set_new_needs_dc_and_address(server: FakeServer) -> None:
    result = run("endpoint", "set", "www.example.com", "web-9", "--dc", "idc")
    assert result.exit_code == 2
    assert "--address" in result.stderr
    assert server.writes == []


def test_endpoint_version_is_not_the_cli_version(server: FakeServer) -> None:
    result = run("endpoint", "set", "www.example.com", "web-1", "--version", "v7")
    assert result.exit_code == 0, result.output
    assert server.writes[0].body["version"] == "v7"


@pytest.mark.parametrize(
    ("args", "body"),
    [
        (["--percent", "10"], {"stable": "v1", "canary": "v2", "canary_percent": 10.0}),
        (["--stable", "v2"], {"stable": "v2", "canary": None, "canary_percent": 0.0}),
        (["--canary", "v2"], {"stable": "v1", "canary": "v2", "canary_percent": 5.0}),
        (["--canary", "v3"], {"stable": "v1", "canary": "v3", "canary_percent": 0.0}),
        (
            ["--stable", "v1", "--canary", "v3", "--percent", "2.5"],
            {"stable": "v1", "canary": "v3", "canary_percent": 2.5},
        ),
    ],
)
def test_release_set(server: FakeServer, args: list[str], body: dict[str, Any]) -> None:
    result = run("release", "set", "www.example.com", *args)
    assert result.exit_code == 0, result.output
    assert server.writes[0].path == "/api/v1/services/www.example.com/release"
    assert server.writes[0].body == body


# -- against a real node -----------------------------------------------------------------------


def test_set_keeps_what_is_not_given(registry: Node) -> None:
    ok(registry, "endpoint", "set", SERVICE, "web-2", "--weight", "50")
    ep = state(registry)["services"][SERVICE]["endpoints"]["web-2"]
    assert (ep["dc"], ep["address"], ep["weight"], ep["healthy"]) == ("idc", "192.0.2.2", 50, True)
    ok(registry, "endpoint", "set", SERVICE, "web-2", "--weight", "100")
