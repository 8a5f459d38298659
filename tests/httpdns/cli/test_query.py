"""``query``: every dialect, read with the Python client library's parsers (DoH with
dnslib)."""

from __future__ import annotations

import base64
import json
import urllib.parse
import urllib.request
from typing import Any

import dnslib
import pytest

from httpdns.cli import client as client_mod
from tests.servers import Node

from .conftest import SERVICE, V4, FakeServer, httpdns, ok, run


def _doh_reply(request_query: dict[str, str]) -> bytes:
    wire = base64.urlsafe_b64decode(request_query["dns"] + "==")
    q = dnslib.DNSRecord.parse(wire)
    reply = q.reply()
    reply.add_answer(*dnslib.RR.fromZone("www.example.com. 30 IN A 192.0.2.1"))
    return bytes(reply.pack())


@pytest.mark.parametrize(
    ("dialect", "path", "payload", "client_param"),
    [
        ("d", "/d", b"192.0.2.1;192.0.2.2,30", {"ip": "10.1.2.3"}),
        (
            "aliyun",
            "/100000/d",
            {"host": "www.example.com", "ips": ["192.0.2.1", "192.0.2.2"], "ttl": 30},
            {"ip": "10.1.2.3"},
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
            {"edns_client_subnet": "10.1.2.3/32"},
        ),
    ],
)
def test_query_dialects(
    server: FakeServer, dialect: str, path: str, payload: Any, client_param: dict[str, str]
) -> None:
    server.routes[("GET", path)] = (200, payload)
    result = run("query", "www.example.com", "--dialect", dialect, "--ip", "10.1.2.3", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["answers"] == ["192.0.2.1", "192.0.2.2"]
    assert out["ttl"] == 30
    assert isinstance(out["ttl"], int)
    assert out["status"] == "NOERROR"
    assert out["dialect"] == dialect
    assert out["name"] == "www.example.com"
    assert out["type"] == "A"
    [sent] = server.sent
    assert sent.path == path
    assert client_param.items() <= sent.query.items()
    assert "authorization" not in sent.headers


def test_query_paths_are_the_client_librarys(server: FakeServer) -> None:
    server.routes[("GET", "/d")] = (200, b"2001:db8::1,30")
    assert run("query", "www.example.com", "--type", "aaaa", "--uid", "u 1").exit_code == 0
    assert server.sent[0].query == {
        "dn": "www.example.com",
        "type": "aaaa",
        "ttl": "1",
        "uid": "u 1",
    }
    server.routes[("GET", "/7/d")] = (200, {"host": "www.example.com", "ipsv6": [], "ttl": 30})
    result = run(
        "query", "www.example.com", "--dialect", "aliyun", "--account", "7", "--type", "AAAA"
    )
    assert result.exit_code == 0, result.output
    assert server.sent[1].query == {"host": "www.example.com", "query": "6"}
    assert "ANSWER SECTION: 0 record(s)" in result.stdout


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (
            {"Status": 3, "Authority": [{"type": 6, "TTL": 30, "data": "a. b. 1 2 3 4 30"}]},
            "NXDOMAIN",
        ),
        ({"Status": 5}, "REFUSED"),
        ({"Status": 2}, "SERVFAIL"),
    ],
)
def test_query_json_status(server: FakeServer, body: dict[str, Any], status: str) -> None:
    server.routes[("GET", "/resolve")] = (200, body)
    result = run("query", "nope.example.com", "--dialect", "json", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["status"], out["answers"], out["ttl"]) == (status, [], None)


def test_query_empty_d_answer(server: FakeServer) -> None:
    server.routes[("GET", "/d")] = (200, b"")
    result = run("query", "nothing.example.com")
    assert result.exit_code == 0, result.output
    assert "0 record(s)" in result.stdout
    out = json.loads(run("query", "nothing.example.com", "--json").stdout)
    assert (out["answers"], out["ttl"]) == ([], None)


@pytest.mark.parametrize(
    ("dialect", "path", "body"),
    [
        ("d", "/d", b"not-an-ip,30"),
        ("aliyun", "/100000/d", b"[1, 2]"),
        ("json", "/resolve", b"<html>"),
        ("json", "/resolve", b'{"Status": 0, "Answer": [{"type": 1, "TTL": 3, "data": "x"}]}'),
    ],
)
def test_query_unreadable_answer(server: FakeServer, dialect: str, path: str, body: bytes) -> None:
    server.routes[("GET", path)] = (200, body)
    result = run("query", "www.example.com", "--dialect", dialect)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: bad answer from http://node:8053: ")
    assert result.stderr.count("\n") == 1


def test_query_doh(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, str]] = []

    def doh(request: urllib.request.Request, timeout: float) -> client_mod.Response:
        url = urllib.parse.urlsplit(request.full_url)
        query = dict(urllib.parse.parse_qsl(url.query))
        seen.append(query)
        assert url.path == "/dns-query"
        assert "=" not in query["dns"]
        return client_mod.Response(200, "OK", {}, _doh_reply(query), 2.0)

    monkeypatch.setattr(client_mod, "_transport", doh)
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
    def garbage(request: urllib.request.Request, timeout: float) -> client_mod.Response:
        return client_mod.Response(200, "OK", {}, b"\x00\x01", 1.0)

    monkeypatch.setattr(client_mod, "_transport", garbage)
    result = run("query", "www.example.com", "--dialect", "doh")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: bad DNS answer")


@pytest.mark.parametrize("name", ["a" * 70 + ".com", "a..b"])
def test_query_doh_bad_name_is_a_usage_error(server: FakeServer, name: str) -> None:
    result = run("query", name, "--dialect", "doh")
    assert result.exit_code == 2
    assert "is not a DNS name" in result.stderr
    assert server.sent == []


# -- against a real node -----------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["d", "aliyun", "json", "doh"])
def test_query_dialects_on_a_node(registry: Node, dialect: str) -> None:
    out = json.loads(ok(registry, "--json", "query", SERVICE, "--dialect", dialect))
    assert out["dialect"] == dialect
    assert out["name"] == SERVICE
    assert out["type"] == "A"
    assert out["answers"]
    assert set(out["answers"]) <= V4
    assert out["ttl"] == 30
    assert out["ms"] >= 0
    assert out["status"] == "NOERROR"
    north = json.loads(
        ok(registry, "query", SERVICE, "--dialect", dialect, "--ip", "10.9.9.9", "--json")
    )
    assert set(north["answers"]) <= V4
    v6 = json.loads(
        ok(registry, "--json", "query", SERVICE, "--dialect", dialect, "--type", "AAAA")
    )
    assert v6["answers"] == ["2001:db8::1"]
    text = ok(registry, "query", SERVICE, "--dialect", dialect)
    assert "ANSWER SECTION" in text
    assert out["answers"][0] in text
    assert "Query time" in text


@pytest.mark.parametrize(
    ("dialect", "status"), [("json", "REFUSED"), ("doh", "REFUSED"), ("d", "NOERROR")]
)
def test_query_a_name_not_served(registry: Node, dialect: str, status: str) -> None:
    out = json.loads(ok(registry, "query", "nope.invalid", "--dialect", dialect, "--json"))
    assert (out["status"], out["answers"], out["ttl"]) == (status, [], None)


def test_query_needs_no_token(registry: Node) -> None:
    result = httpdns(registry, "--json", "query", SERVICE, token=None)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["answers"]
