"""The ``httpdns`` CLI end to end: real subprocesses against a real node.

One node (``httpdns serve`` on a free port, SQLite in a temporary directory) serves
the whole module. ``registry`` builds the shared records through the CLI; tests
that change records beyond that use their own service names or undo what they did.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TOKEN = "functional-test-token"
ACTOR = "tester@ci"
SERVICE = "www.example.com"
V4 = {"192.0.2.1", "192.0.2.2", "198.51.100.1"}
V6 = {"2001:db8::1"}
START_TIMEOUT = 20.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HTTPDNS_")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@dataclass(frozen=True)
class Node:
    """A running ``httpdns serve``."""

    url: str
    log: Path


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("node")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp / "serve.log"
    args = [
        sys.executable, "-m", "httpdns.cli", "serve",
        "--http", f"127.0.0.1:{port}",
        "--store", f"sqlite:///{tmp}/registry.db",
        "--admin-token", TOKEN,
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=tmp, env=_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"httpdns serve exited with {proc.returncode}:\n{log.read_text()}")
            if _healthy(url):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"httpdns serve not healthy in {START_TIMEOUT}s:\n{log.read_text()}")
            time.sleep(0.1)
        yield Node(url, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def httpdns(
    node: Node, *args: str, token: str | None = TOKEN, server: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI against ``node``; never a traceback, whatever the outcome."""
    env = _env(HTTPDNS_SERVER=server or node.url, HTTPDNS_ACTOR=ACTOR)
    if token is not None:
        env["HTTPDNS_ADMIN_TOKEN"] = token
    result = subprocess.run(
        [sys.executable, "-m", "httpdns.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout
    return result


def ok(node: Node, *args: str) -> str:
    """Run the CLI and expect success; return stdout."""
    result = httpdns(node, *args)
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


@pytest.fixture(scope="module")
def registry(node: Node) -> Node:
    ok(node, "dc", "set", "idc", "--kind", "idc", "--writable")
    ok(node, "dc", "set", "cloud", "--kind", "cloud", "--read-only", "--labels", "provider=x")
    ok(node, "region", "set", "north", "10.0.0.0/8", "2001:db8:1::/48")
    ok(node, "service", "set", SERVICE, "--ttl", "30", "--all-down", "fail-open", "idc=70",
       "cloud=30")  # fmt: skip
    ok(node, "endpoint", "set", SERVICE, "web-1", "--dc", "idc", "--address", "192.0.2.1",
       "--port", "8080")  # fmt: skip
    ok(node, "endpoint", "set", SERVICE, "web-2", "--dc", "idc", "--address", "192.0.2.2")
    ok(node, "endpoint", "set", SERVICE, "web-3", "--dc", "cloud", "--address", "198.51.100.1")
    ok(node, "endpoint", "set", SERVICE, "web-6", "--dc", "cloud", "--address", "2001:db8::1")
    ok(node, "release", "set", SERVICE, "--stable", "v1")
    return node


# -- building and reading the registry ---------------------------------------------------------


def test_state_json(registry: Node) -> None:
    data = state(registry)
    assert data["revision"] >= 9
    assert data["datacenters"]["idc"] == {
        "name": "idc",
        "kind": "idc",
        "writable": True,
        "drained": False,
        "labels": {},
    }
    assert data["datacenters"]["cloud"]["writable"] is False
    assert data["datacenters"]["cloud"]["labels"] == {"provider": "x"}
    assert data["regions"]["north"]["cidrs"] == ["10.0.0.0/8", "2001:db8:1::/48"]
    svc = data["services"][SERVICE]
    assert svc["ttl"] == 30
    assert svc["access"] == "ro"
    assert svc["all_down"] == "fail-open"
    assert svc["traffic"]["default"] == {"idc": 70, "cloud": 30}
    assert svc["release"]["stable"] == "v1"
    assert svc["endpoints"]["web-1"]["port"] == 8080
    assert {e["address"] for e in svc["endpoints"].values()} == V4 | V6


def test_state_tables(registry: Node) -> None:
    out = ok(registry, "state")
    for word in ("datacenters", "regions", "services", "endpoints", SERVICE, "north", "4/4"):
        assert word in out


def test_set_keeps_what_is_not_given(registry: Node) -> None:
    ok(registry, "endpoint", "set", SERVICE, "web-2", "--weight", "50")
    ep = state(registry)["services"][SERVICE]["endpoints"]["web-2"]
    assert (ep["dc"], ep["address"], ep["weight"], ep["healthy"]) == ("idc", "192.0.2.2", 50, True)
    ok(registry, "endpoint", "set", SERVICE, "web-2", "--weight", "100")


def test_traffic_set_changes_state(registry: Node) -> None:
    name = "traffic.example.com"
    ok(registry, "service", "set", name, "--traffic", "idc=70", "--traffic", "cloud=30")
    ok(registry, "traffic", "set", name, "--region", "north", "idc=60", "cloud=40")
    ok(registry, "traffic", "set", name, "idc=10", "cloud=90")
    assert state(registry)["services"][name]["traffic"] == {
        "default": {"idc": 10, "cloud": 90},
        "north": {"idc": 60, "cloud": 40},
    }
    ok(registry, "service", "set", name, "--ttl", "5")
    svc = state(registry)["services"][name]
    assert svc["ttl"] == 5
    assert svc["traffic"]["north"] == {"idc": 60, "cloud": 40}


def test_traffic_shift_changes_state(registry: Node) -> None:
    name = "shift.example.com"
    ok(registry, "service", "set", name, "idc=70", "cloud=30")
    shift = ["traffic", "shift", "--from", "idc", "--to", "cloud", "--percent", "20"]
    out = json.loads(ok(registry, "--json", *shift, "--service", name))
    assert list(out["services"]) == [name]
    after = state(registry)["services"][name]["traffic"]
    assert after == out["services"][name]
    assert after["default"]["idc"] < 70
    assert after["default"]["cloud"] > 30
    assert state(registry)["services"][SERVICE]["traffic"]["default"] == {"idc": 70, "cloud": 30}


def test_drain_and_undrain(registry: Node) -> None:
    try:
        assert "drained" in ok(registry, "dc", "drain", "idc")
        data = state(registry)
        assert data["datacenters"]["idc"]["drained"] is True
        assert data["datacenters"]["idc"]["kind"] == "idc"
        out = json.loads(ok(registry, "--json", "query", SERVICE, "--ip", "192.0.2.77"))
        assert set(out["answers"]) <= {"198.51.100.1"}
    finally:
        ok(registry, "dc", "undrain", "idc")
    assert state(registry)["datacenters"]["idc"]["drained"] is False


def test_explain(registry: Node) -> None:
    data = json.loads(ok(registry, "--json", "explain", SERVICE, "--ip", "10.1.2.3"))
    assert data["name"] == SERVICE
    assert data["region"] == "north"
    assert data["answer"]
    assert set(data["answer"]) <= V4
    assert {step["step"] for step in data["trace"]} >= {"table", "datacenter", "endpoints"}
    out = ok(registry, "explain", SERVICE, "--ip", "10.1.2.3")
    assert "region      north" in out
    assert data["answer"][0] in out


def test_audit_lists_changes_with_actor(registry: Node) -> None:
    data = json.loads(ok(registry, "--json", "audit"))
    entries = data["entries"]
    assert entries
    assert {e["actor"] for e in entries} == {ACTOR}
    changes = [(c["op"], c["kind"], c["key"]) for e in entries for c in e["changes"]]
    assert ("put", "datacenter", "idc") in changes
    assert ("put", "endpoint", f"{SERVICE}/web-1") in changes
    assert ("put", "release", SERVICE) in changes
    since = entries[-1]["revision"] - 1
    tail = json.loads(ok(registry, "--json", "audit", "--since", str(since)))["entries"]
    assert [e["revision"] for e in tail] == [entries[-1]["revision"]]
    out = ok(registry, "audit", "--limit", "3")
    assert ACTOR in out
    assert "put datacenter idc" in out


@pytest.mark.parametrize("dialect", ["d", "aliyun", "json", "doh"])
def test_query_dialects(registry: Node, dialect: str) -> None:
    out = json.loads(ok(registry, "--json", "query", SERVICE, "--dialect", dialect))
    assert out["dialect"] == dialect
    assert out["name"] == SERVICE
    assert out["type"] == "A"
    assert out["answers"]
    assert set(out["answers"]) <= V4
    assert out["ttl"] == 30
    assert out["ms"] >= 0
    north = json.loads(
        ok(registry, "--json", "query", SERVICE, "--dialect", dialect, "--ip", "10.9.9.9")
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


def test_query_needs_no_token(registry: Node) -> None:
    result = httpdns(registry, "--json", "query", SERVICE, token=None)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["answers"]


# -- deleting -------------------------------------------------------------------------------


def test_deletes(registry: Node) -> None:
    ok(registry, "dc", "set", "spare", "--kind", "cloud")
    ok(registry, "region", "set", "south", "172.16.0.0/12")
    ok(registry, "service", "set", "gone.example.com", "spare=1")
    ok(
        registry,
        "endpoint",
        "set",
        "gone.example.com",
        "e1",
        "--dc",
        "spare",
        "--address",
        "1.1.1.1",
    )
    assert "in_use" in fails(registry, "dc", "delete", "spare")
    ok(registry, "endpoint", "delete", "gone.example.com", "e1")
    assert state(registry)["services"]["gone.example.com"]["endpoints"] == {}
    ok(registry, "service", "delete", "gone.example.com")
    ok(registry, "dc", "delete", "spare")
    ok(registry, "region", "delete", "south")
    data = state(registry)
    assert "gone.example.com" not in data["services"]
    assert "spare" not in data["datacenters"]
    assert "south" not in data["regions"]


# -- failures -------------------------------------------------------------------------------


def test_wrong_token(registry: Node) -> None:
    err = fails(registry, "state", token="wrong")
    assert err.count("\n") == 1
    assert err.startswith("error: unauthorized: ")
    assert "--token" in err
    assert "HTTPDNS_ADMIN_TOKEN" in err
    assert fails(registry, "dc", "drain", "idc", token=None).startswith("error: ")


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


def test_usage_errors_exit_2(registry: Node) -> None:
    before = state(registry)["revision"]
    err = fails(registry, "traffic", "set", SERVICE, "idc=seventy", code=2)
    assert "is not an integer" in err
    fails(registry, "service", "set", "new.example.com", "--ttl", "5", code=2)
    fails(registry, "dc", "set", "x", "--kind", "moon", code=2)
    assert state(registry)["revision"] == before


def test_connection_refused(node: Node) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    err = fails(node, "state", server=url)
    assert err == (f"error: cannot reach {url}: connection refused (is `httpdns serve` running?)\n")
    assert fails(node, "query", SERVICE, server=url).startswith("error: cannot reach")


def test_version_and_health(node: Node) -> None:
    assert ok(node, "--version").startswith("httpdns, version ")
    health = json.loads(ok(node, "--json", "health"))
    assert health["status"] == "ok"
