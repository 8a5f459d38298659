"""The CLI without a server: parsing, error lines, exit codes, request shapes.

An in-memory transport stands in for the network (``httpdns.cli._transport``), so
these tests see exactly which requests each command sends.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import dnslib
import pytest
from click.testing import CliRunner, Result

from httpdns import cli

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
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeServer:
    """Answers GET /api/v1/state with STATE, and everything else from ``routes``."""

    routes: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)

    def __call__(self, request: urllib.request.Request, timeout: float) -> cli.Response:
        url = urllib.parse.urlsplit(request.full_url)
        data = request.data
        body = json.loads(data) if isinstance(data, bytes) else None
        headers = {k.lower(): v for k, v in request.header_items()}
        query = dict(urllib.parse.parse_qsl(url.query))
        self.sent.append(Sent(request.get_method(), url.path, query, headers, body))
        key = (request.get_method(), url.path)
        if key in self.routes:
            status, payload = self.routes[key]
        elif key == ("GET", "/api/v1/state"):
            status, payload = 200, STATE
        else:
            status, payload = 200, {"revision": 5}
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return cli.Response(status, "OK" if status < 400 else "Error", {}, raw, 1.5)

    @property
    def writes(self) -> list[Sent]:
        return [s for s in self.sent if s.method != "GET"]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    fake = FakeServer()
    monkeypatch.setattr(cli, "_transport", fake)
    return fake


def run(*args: str) -> Result:
    return CliRunner().invoke(
        cli.main, ["--server", "http://node:8053", "--token", "T", "--actor", "ann@box", *args]
    )


# -- pure parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["idc=60", "cloud=40"], {"idc": 60, "cloud": 40}),
        ([" idc = 0 "], {"idc": 0}),
        ([], {}),
    ],
)
def test_parse_pairs(values: list[str], expected: dict[str, int]) -> None:
    assert cli.parse_pairs(values) == expected


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
        cli.parse_pairs([value])


def test_parse_pairs_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="given twice"):
        cli.parse_pairs(["idc=1", "idc=2"])


def test_parse_labels() -> None:
    assert cli.parse_labels(["a=1,b=2", "c="]) == {"a": "1", "b": "2", "c": ""}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        cli.parse_labels(["nolabel"])


@pytest.mark.parametrize(
    ("status", "body", "line"),
    [
        (
            409,
            b'{"error":"conflict","detail":"expected revision 4, the registry is at 5"}',
            "conflict: expected revision 4, the registry is at 5 "
            "(the registry changed meanwhile; run the command again)",
        ),
        (
            401,
            b'{"error":"unauthorized","detail":"missing or wrong token"}',
            "unauthorized: missing or wrong token (pass --token or set HTTPDNS_ADMIN_TOKEN)",
        ),
        (400, b'{"error":"invalid","detail":"ttl: too big"}', "invalid: ttl: too big"),
        (409, b'{"error":"in_use","detail":"still used"}', "in_use: still used"),
        (403, b'{"code":"InvalidSignature"}', "InvalidSignature"),
        (502, b"<html>\nbad gateway</html>", "http 502: Error"),
        (503, b"try later\n", "http 503: try later"),
        (500, b"", "http 500: Error"),
    ],
)
def test_api_error_line(status: int, body: bytes, line: str) -> None:
    assert cli.api_error(status, "Error", body).format_message() == line


# -- exit codes -----------------------------------------------------------------------------


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
        ["release", "set", "www.example.com"],
        ["traffic", "shift", "--from", "idc", "--to", "cloud", "--percent", "101"],
    ],
)
def test_usage_errors_exit_2_without_a_request(server: FakeServer, args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert [s for s in server.sent if s.method != "GET"] == []


def test_conflict_is_exit_1_and_one_line(server: FakeServer) -> None:
    server.routes[("PUT", "/api/v1/datacenters/idc")] = (
        409,
        {"error": "conflict", "detail": "expected revision 4, the registry is at 5"},
    )
    result = run("dc", "drain", "idc")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: conflict: expected revision 4, the registry is at 5 "
        "(the registry changed meanwhile; run the command again)\n"
    )


def test_unauthorized_hints_at_the_token(server: FakeServer) -> None:
    server.routes[("GET", "/api/v1/state")] = (401, {"error": "unauthorized", "detail": "no"})
    result = run("state")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: unauthorized: no")
    assert "HTTPDNS_ADMIN_TOKEN" in result.stderr


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
    def fail(request: urllib.request.Request, timeout: float) -> cli.Response:
        raise exc

    monkeypatch.setattr(cli, "_transport", fail)
    result = run("state")
    assert result.exit_code == 1
    assert result.stderr == message


@pytest.mark.parametrize("url", ["ftp://x", "http://", "http://[bad", "::1", "h:99999"])
def test_bad_server_url_is_a_usage_error(server: FakeServer, url: str) -> None:
    result = CliRunner().invoke(cli.main, ["--server", url, "state"])
    assert result.exit_code == 2
    assert "is not an http(s)://HOST[:PORT] URL" in result.stderr
    assert server.sent == []


def test_server_url_without_scheme(server: FakeServer) -> None:
    result = CliRunner().invoke(cli.main, ["--server", "node:9000/", "health"])
    assert result.exit_code == 0, result.output
    assert server.sent[0].path == "/healthz"


# -- request shapes -------------------------------------------------------------------------


def test_drain_is_a_read_modify_write(server: FakeServer) -> None:
    result = run("dc", "drain", "cloud")
    assert result.exit_code == 0, result.output
    assert "revision 5" in result.stdout
    [put] = server.writes
    assert put.method == "PUT"
    assert put.path == "/api/v1/datacenters/cloud"
    assert put.body == {
        "kind": "cloud",
        "writable": False,
        "drained": True,
        "labels": {"provider": "x"},
    }
    assert put.headers["if-match"] == "4"
    assert put.headers["authorization"] == "Bearer T"
    assert put.headers["x-actor"] == "ann@box"


def test_drain_unknown_datacenter(server: FakeServer) -> None:
    result = run("dc", "drain", "mars")
    assert result.exit_code == 1
    assert result.stderr == "error: not_found: datacenter 'mars' does not exist\n"


def test_dc_set_keeps_drained_and_labels(server: FakeServer) -> None:
    assert run("dc", "set", "cloud", "--writable").exit_code == 0
    assert server.writes[0].body == {
        "kind": "cloud",
        "writable": True,
        "drained": False,
        "labels": {"provider": "x"},
    }
    assert (
        run("dc", "set", "new", "--kind", "cloud", "--labels", "a=1", "--label", "b=2").exit_code
        == 0
    )
    assert server.writes[1].body == {
        "kind": "cloud",
        "writable": True,
        "drained": False,
        "labels": {"a": "1", "b": "2"},
    }


def test_service_set_existing_keeps_fields(server: FakeServer) -> None:
    result = run("service", "set", "www.example.com", "--ttl", "10")
    assert result.exit_code == 0, result.output
    [put] = server.writes
    assert put.path == "/api/v1/services/www.example.com"
    assert put.headers["if-match"] == "4"
    assert put.body == {
        "access": "ro",
        "ttl": 10,
        "answers": 2,
        "all_down": "fail-closed",
        "traffic": {"default": {"idc": 70, "cloud": 30}, "north": {"idc": 100}},
    }


def test_service_set_traffic_replaces_default_only(server: FakeServer) -> None:
    result = run("service", "set", "www.example.com", "--traffic", "idc=50", "cloud=50")
    assert result.exit_code == 0, result.output
    assert server.writes[0].body["traffic"] == {
        "default": {"idc": 50, "cloud": 50},
        "north": {"idc": 100},
    }


def test_new_service_needs_traffic(server: FakeServer) -> None:
    result = run("service", "set", "api.example.com", "--ttl", "5")
    assert result.exit_code == 2
    assert "give its traffic" in result.stderr
    assert server.writes == []
    result = run("service", "set", "api.example.com", "--access", "rw", "idc=1")
    assert result.exit_code == 0
    assert server.writes[0].body == {"traffic": {"default": {"idc": 1}}, "access": "rw"}


def test_traffic_set_region(server: FakeServer) -> None:
    result = run("traffic", "set", "www.example.com", "--region", "north", "idc=60", "cloud=40")
    assert result.exit_code == 0, result.output
    [put] = server.writes
    assert put.path == "/api/v1/services/www.example.com/traffic"
    assert put.body == {"default": {"idc": 70, "cloud": 30}, "north": {"idc": 60, "cloud": 40}}
    assert put.headers["if-match"] == "4"


def test_traffic_set_unknown_service(server: FakeServer) -> None:
    result = run("traffic", "set", "nope.example.com", "idc=1")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: not_found: service")


def test_traffic_shift_body(server: FakeServer) -> None:
    server.routes[("POST", "/api/v1/traffic/shift")] = (
        200,
        {"revision": 6, "services": {"www.example.com": {"default": {"idc": 50, "cloud": 50}}}},
    )
    result = run("traffic", "shift", "--from", "idc", "--to", "cloud", "--percent", "20")
    assert result.exit_code == 0, result.output
    assert server.writes[0].body == {"from": "idc", "to": "cloud", "percent": 20, "services": None}
    assert "www.example.com: default: idc=50 cloud=50" in result.stdout
    run("traffic", "shift", "--from", "idc", "--to", "cloud", "--percent", "5", "--service", "a.b")
    assert server.writes[1].body["services"] == ["a.b"]


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


def test_json_after_the_subcommand(server: FakeServer) -> None:
    result = run("state", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == STATE


def test_state_tables(server: FakeServer) -> None:
    result = CliRunner().invoke(cli.main, ["state"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "www.example.com" in result.stdout
    assert "1/1" in result.stdout
    assert "v1 + v2 @ 5.0%" in result.stdout


def test_explain_renders_a_trace(server: FakeServer) -> None:
    server.routes[("GET", "/api/v1/explain")] = (
        200,
        {
            "revision": 4,
            "name": "www.example.com",
            "type": "A",
            "client": {"ip": "10.1.2.3", "uid": None, "key": "10.1.2.0/24", "bucket": 7},
            "region": "north",
            "answer": ["192.0.2.1"],
            "ttl": 30,
            "datacenter": "idc",
            "version": "v1",
            "cohort": "stable",
            "status": "ok",
            "trace": [
                {"step": "table", "region": "north", "table": "north", "weights": {"idc": 100}},
                {"step": "cohort", "canary_percent": 5.0, "in_canary": False},
                {
                    "step": "datacenter",
                    "eligible": ["idc"],
                    "scores": {"cloud": None, "idc": 1.23456},
                    "chosen": "idc",
                },
                {
                    "step": "endpoints",
                    "dc": "idc",
                    "candidates": {"web-1": 0.5},
                    "chosen": ["web-1"],
                },
            ],
        },
    )
    result = run("explain", "www.example.com", "--ip", "10.1.2.3", "--type", "a")
    assert result.exit_code == 0, result.output
    assert server.sent[0].query == {"name": "www.example.com", "ip": "10.1.2.3", "type": "A"}
    out = result.stdout
    assert "region      north" in out
    assert "scores         idc=1.235 cloud=-" in out
    assert "answer      192.0.2.1  ttl 30" in out


def test_audit_summaries() -> None:
    assert (
        cli.summarize_change(
            {
                "op": "put",
                "kind": "datacenter",
                "key": "idc",
                "value": {"kind": "idc", "drained": True},
            }
        )
        == "put datacenter idc (idc, drained)"
    )
    assert cli.summarize_change({"op": "delete", "kind": "region", "key": "x", "value": None}) == (
        "delete region x"
    )


def test_audit_query(server: FakeServer) -> None:
    server.routes[("GET", "/api/v1/audit")] = (
        200,
        {
            "revision": 4,
            "entries": [
                {
                    "revision": 4,
                    "actor": "ann@box",
                    "time": 1700000000.0,
                    "changes": [{"op": "delete", "kind": "region", "key": "x", "value": None}],
                }
            ],
        },
    )
    result = CliRunner().invoke(
        cli.main, ["audit", "--since", "2", "--limit", "5"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert server.sent[0].query == {"since": "2", "limit": "5"}
    assert "ann@box" in result.stdout
    assert "delete region x" in result.stdout


# -- query dialects -------------------------------------------------------------------------


def _doh_reply(request_query: dict[str, str]) -> bytes:
    wire = base64.urlsafe_b64decode(request_query["dns"] + "==")
    q = dnslib.DNSRecord.parse(wire)
    reply = q.reply()
    reply.add_answer(*dnslib.RR.fromZone("www.example.com. 30 IN A 192.0.2.1"))
    return bytes(reply.pack())


@pytest.mark.parametrize(
    ("dialect", "path", "payload"),
    [
        ("d", "/d", b"192.0.2.1;192.0.2.2,30"),
        (
            "aliyun",
            "/100000/d",
            {"host": "www.example.com", "ips": ["192.0.2.1", "192.0.2.2"], "ttl": 30},
        ),
        (
            "json",
            "/resolve",
            {
                "Status": 0,
                "Answer": [
                    {"name": "www.example.com.", "type": 1, "TTL": 30, "data": "192.0.2.1"},
                    {"name": "www.example.com.", "type": 1, "TTL": 30, "data": "192.0.2.2"},
                ],
            },
        ),
    ],
)
def test_query_dialects(server: FakeServer, dialect: str, path: str, payload: Any) -> None:
    server.routes[("GET", path)] = (200, payload)
    result = run("query", "www.example.com", "--dialect", dialect, "--ip", "10.1.2.3", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["answers"] == ["192.0.2.1", "192.0.2.2"]
    assert out["ttl"] == 30
    assert out["dialect"] == dialect
    assert out["name"] == "www.example.com"
    assert out["type"] == "A"
    assert "authorization" not in server.sent[0].headers


def test_query_empty_d_answer(server: FakeServer) -> None:
    server.routes[("GET", "/d")] = (200, b"")
    result = run("query", "nothing.example.com")
    assert result.exit_code == 0, result.output
    assert "0 record(s)" in result.stdout


def test_query_doh(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, str]] = []

    def doh(request: urllib.request.Request, timeout: float) -> cli.Response:
        url = urllib.parse.urlsplit(request.full_url)
        query = dict(urllib.parse.parse_qsl(url.query))
        seen.append(query)
        assert url.path == "/dns-query"
        assert "=" not in query["dns"]
        return cli.Response(200, "OK", {}, _doh_reply(query), 2.0)

    monkeypatch.setattr(cli, "_transport", doh)
    result = run("query", "www.example.com", "--dialect", "doh", "--ip", "10.1.2.3")
    assert result.exit_code == 0, result.output
    assert "www.example.com." in result.stdout
    assert "192.0.2.1" in result.stdout
    wire = base64.urlsafe_b64decode(seen[0]["dns"] + "==")
    q = dnslib.DNSRecord.parse(wire)
    assert q.header.id == 0
    [opt] = q.ar
    assert opt.rdata[0].code == 8  # ECS


def test_query_doh_garbage(monkeypatch: pytest.MonkeyPatch) -> None:
    def garbage(request: urllib.request.Request, timeout: float) -> cli.Response:
        return cli.Response(200, "OK", {}, b"\x00\x01", 1.0)

    monkeypatch.setattr(cli, "_transport", garbage)
    result = run("query", "www.example.com", "--dialect", "doh")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: bad DNS answer")


@pytest.mark.parametrize("name", ["a" * 70 + ".com", "a..b"])
def test_query_doh_bad_name_is_a_usage_error(server: FakeServer, name: str) -> None:
    result = run("query", name, "--dialect", "doh")
    assert result.exit_code == 2
    assert "is not a DNS name" in result.stderr
    assert server.sent == []
