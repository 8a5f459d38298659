"""Error lines and exit codes: one ``error: ...`` line and exit 1 for a refusal or an
unreachable server, exit 2 for usage errors, never a traceback."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from httpdns.cli import client as client_mod
from httpdns.cli.errors import api_error
from tests.servers import Node, free_port

from .conftest import SERVICE, FakeServer, fails, invoke, run, state

REFUSED = "the token was refused: check --token or HTTPDNS_ADMIN_TOKEN"
MISSING = "no token given: use --token or HTTPDNS_ADMIN_TOKEN"


@pytest.mark.parametrize(
    ("status", "body", "token_given", "line"),
    [
        (
            409,
            b'{"error":"conflict","detail":"expected revision 4, the registry is at 5"}',
            True,
            "conflict: expected revision 4, the registry is at 5 "
            "(the registry changed meanwhile; run the command again)",
        ),
        (401, b'{"error":"unauthorized","detail":"no"}', True, f"unauthorized: no ({REFUSED})"),
        (401, b'{"error":"unauthorized","detail":"no"}', False, f"unauthorized: no ({MISSING})"),
        (400, b'{"error":"invalid","detail":"ttl: too big"}', True, "invalid: ttl: too big"),
        (409, b'{"error":"in_use","detail":"still used"}', True, "in_use: still used"),
        (403, b'{"code":"InvalidSignature"}', False, "InvalidSignature"),
        (502, b"<html>\nbad gateway</html>", False, "http 502: Error"),
        (503, b"try later\n", False, "http 503: try later"),
        (500, b"", False, "http 500: Error"),
    ],
)
def test_api_error_line(status: int, body: bytes, token_given: bool, line: str) -> None:
    error = api_error(status, "Error", body, token_given=token_given)
    assert error.format_message() == line
    assert error.exit_code == 1


def test_conflict_is_exit_1_and_one_line(server: FakeServer) -> None:
    server.routes[("PUT", "/api/v1/datacenters/idc")] = (
        409,
        {"error": "conflict", "detail": "expected revision 4, the registry is at 5"},
    )
    result = run("dc", "set", "idc", "--writable")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: conflict: expected revision 4, the registry is at 5 "
        "(the registry changed meanwhile; run the command again)\n"
    )


def test_refused_and_missing_token_differ(server: FakeServer) -> None:
    server.routes[("GET", "/api/v1/state")] = (401, {"error": "unauthorized", "detail": "no"})
    refused = run("state")
    assert refused.exit_code == 1
    assert refused.stderr == f"error: unauthorized: no ({REFUSED})\n"
    missing = invoke("--server", "http://node:8053", "state")
    assert missing.exit_code == 1
    assert missing.stderr == f"error: unauthorized: no ({MISSING})\n"
    assert "authorization" not in server.sent[-1].headers


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (
            urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")),
            "error: cannot reach http://node:8053: connection refused "
            "(is `httpdns serve` running?)\n",
        ),
        (
            TimeoutError("timed out"),
            "error: cannot reach http://node:8053: timed out after 10.0s\n",
        ),
        (
            urllib.error.URLError(OSError(-2, "Name or service not known")),
            "error: cannot reach http://node:8053: Name or service not known\n",
        ),
    ],
)
def test_unreachable(monkeypatch: pytest.MonkeyPatch, exc: Exception, message: str) -> None:
    def fail(request: urllib.request.Request, timeout: float) -> client_mod.Response:
        raise exc

    monkeypatch.setattr(client_mod, "_transport", fail)
    result = run("state")
    assert result.exit_code == 1
    assert result.stderr == message


@pytest.mark.parametrize(
    "args",
    [
        ["nosuchcommand"],
        ["traffic", "set", "www.example.com", "idc=abc"],
        ["traffic", "set", "www.example.com"],
        ["service", "set", "www.example.com", "idc"],
        ["service", "set", "www.example.com", "idc=1", "--traffic", "idc=2"],
        ["dc", "set", "x", "--kind", "moon"],
        ["query", "www.example.com", "--ip", "not-an-ip"],
        ["query", "www.example.com", "--dialect", "carrier-pigeon"],
        ["query", "www.example.com", "--dialect", "aliyun", "--account", "a/b"],
        ["release", "set", "www.example.com"],
        ["traffic", "shift", "--from", "idc", "--to", "cloud", "--percent", "101"],
        ["state", "--server", "ftp://x"],
        ["state", "--timeout", "soon"],
        ["serve", "--json"],
    ],
)
def test_usage_errors_exit_2_without_a_write(server: FakeServer, args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert server.writes == []


# -- against a real node -----------------------------------------------------------------------


def test_wrong_and_missing_token(registry: Node) -> None:
    err = fails(registry, "state", token="wrong")
    assert err.count("\n") == 1
    assert err.startswith("error: unauthorized: ")
    assert err.endswith(f"({REFUSED})\n")
    err = fails(registry, "dc", "drain", "idc", token=None)
    assert err.count("\n") == 1
    assert err.startswith("error: unauthorized: ")
    assert err.endswith(f"({MISSING})\n")
    assert state(registry)["datacenters"]["idc"]["drained"] is False


def test_server_validation_error(registry: Node) -> None:
    err = fails(registry, "region", "set", "south", "10.0.0.0/33")
    assert err.count("\n") == 1
    assert err.startswith("error: invalid: ")
    assert "10.0.0.0/33" in err
    err = fails(registry, "endpoint", "set", SERVICE, "bad", "--dc", "idc", "--address", "nope")
    assert err.startswith("error: invalid: ")


def test_not_found(registry: Node) -> None:
    assert fails(registry, "dc", "drain", "mars").startswith("error: not_found: ")
    assert fails(registry, "explain", "nope.example.com", "--ip", "10.0.0.1").startswith(
        "error: not_found: "
    )
    assert fails(registry, "query", SERVICE, "--dialect", "aliyun", "--account", "1").startswith(
        "error: not_found: "
    )


def test_usage_errors_change_nothing(registry: Node) -> None:
    before = state(registry)["revision"]
    err = fails(registry, "traffic", "set", SERVICE, "idc=seventy", code=2)
    assert "is not an integer" in err
    fails(registry, "service", "set", "new.example.com", "--ttl", "5", code=2)
    fails(registry, "dc", "set", "x", "--kind", "moon", code=2)
    assert state(registry)["revision"] == before


def test_connection_refused(cli_node: Node) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    err = fails(cli_node, "state", server=url)
    assert err == f"error: cannot reach {url}: connection refused (is `httpdns serve` running?)\n"
    assert fails(cli_node, "query", SERVICE, server=url).startswith("error: cannot reach")
