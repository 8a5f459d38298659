"""``zone``: set (read-modify-write of the SOA values), delete, list, and bad input."""

from __future__ import annotations

import json

from .conftest import STATE, FakeServer, run

ZONE = {
    "name": "example.org",
    "nameservers": {"ns1.example.org": ["192.0.2.53"], "ns.example.net": []},
    "soa": {"mname": None, "rname": "ops.example.org", "refresh": 3600, "retry": 600,
            "expire": 86400, "minimum": 60},
}  # fmt: skip


def test_zone_set_sends_nameservers_in_order(server: FakeServer) -> None:
    result = run("zone", "set", "example.org", "--ns", "ns2.example.org=192.0.2.2,2001:db8::2",
                 "--ns", "ns1.example.net", "--minimum", "120")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("zone example.org: nameservers ")
    [put] = server.writes
    assert (put.method, put.path) == ("PUT", "/api/v1/zones/example.org")
    assert list(put.body["nameservers"].items()) == [
        ("ns2.example.org", ["192.0.2.2", "2001:db8::2"]),
        ("ns1.example.net", []),
    ]
    assert put.body["soa"] == {"minimum": 120}
    assert put.headers["if-match"] == "4"


def test_zone_set_keeps_what_is_not_given(server: FakeServer) -> None:
    server.routes[("GET", "/api/v1/state")] = (200, {**STATE, "zones": {"example.org": ZONE}})
    assert run("zone", "set", "example.org", "--retry", "300").exit_code == 0
    [put] = server.writes
    assert put.body["nameservers"] == ZONE["nameservers"]
    assert put.body["soa"] == {"rname": "ops.example.org", "refresh": 3600, "retry": 300,
                               "expire": 86400, "minimum": 60}  # fmt: skip


def test_a_new_zone_needs_nameservers(server: FakeServer) -> None:
    result = run("zone", "set", "new.example")
    assert result.exit_code == 2
    assert "give its nameservers with --ns" in result.output
    assert server.writes == []


def test_a_nameserver_given_twice_is_a_usage_error(server: FakeServer) -> None:
    result = run("zone", "set", "x.example", "--ns", "a.x.example=192.0.2.1", "--ns", "a.x.example")
    assert result.exit_code == 2 and "given twice" in result.output
    assert server.writes == []


def test_zone_delete_and_list(server: FakeServer) -> None:
    assert run("zone", "delete", "example.org").stdout == "zone example.org: deleted (revision 5)\n"
    assert server.writes[0].method == "DELETE"
    assert server.writes[0].path == "/api/v1/zones/example.org"
    server.routes[("GET", "/api/v1/state")] = (200, {**STATE, "zones": {"example.org": ZONE}})
    listed = run("zone", "list")
    assert listed.exit_code == 0
    assert "example.org" in listed.stdout and "ns1.example.org 192.0.2.53" in listed.stdout
    assert "ops.example.org" in listed.stdout
    data = json.loads(run("zone", "list", "--json").stdout)
    assert data == {"revision": 4, "zones": {"example.org": ZONE}}
