"""Fixtures for the functional tests of the HTTP DNS server.

``client`` is the real aiohttp application (``make_app``) over an in-memory
SQLite store, served by aiohttp's test server on 127.0.0.1; ``served`` is the
same with the test registry (``build_registry``) written through the admin API.
The helpers at the bottom start ``httpdns serve`` as a subprocess for the
end-to-end tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from httpdns import config as config_mod
from httpdns.config import Account, Config
from httpdns.node import Node
from httpdns.web import make_app
from registry.store import open_store

TOKEN = "T"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
ZONE = "example.org"
ACCOUNT = "100000"
SECRET = "s3cret"
SIGNED_ACCOUNT = "200000"
SIGNED_SECRET = "x"

# The test registry (see build_registry).
SHOP = "shop.example.org"  # ro, idc 50 / cloud 50, A and AAAA in both, canary v2 at 10 %
PAY = "pay.example.org"  # rw, idc 50 / cloud 50 but cloud is read-only
SHOP_TTL = 60
PAY_TTL = 30
SHOP_IDC_V4 = [f"192.0.2.{i}" for i in (1, 2, 3)]
SHOP_CLOUD_V4 = [f"198.51.100.{i}" for i in (1, 2, 3)]
SHOP_IDC_V6 = [f"2001:db8:1::{i}" for i in (1, 2, 3)]
SHOP_CLOUD_V6 = [f"2001:db8:2::{i}" for i in (1, 2, 3)]
SHOP_CANARY_V4 = {"idc": "192.0.2.9", "cloud": "198.51.100.9"}
PAY_IDC_V4 = ["192.0.2.101", "192.0.2.102"]
PAY_CLOUD_V4 = ["198.51.100.101", "198.51.100.102"]
MOBILE_CIDRS = ["100.64.0.0/10", "2001:db8:64::/48"]

ClientFactory = Callable[..., Awaitable[TestClient]]


def make_config(**overrides: Any) -> Config:
    """The fixture config: token T, zone example.org, 127.0.0.1 trusted, two accounts."""
    flags: dict[str, Any] = {
        "admin_token": TOKEN,
        "zones": [ZONE],
        "trusted_proxies": ["127.0.0.1/32"],
    }
    flags.update(overrides)
    cfg = config_mod.load(None, env={}, **flags)
    return dataclasses.replace(
        cfg,
        accounts={
            ACCOUNT: Account(ACCOUNT, SECRET),
            SIGNED_ACCOUNT: Account(SIGNED_ACCOUNT, SIGNED_SECRET, require_signature=True),
        },
    )


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    """A node over a fresh in-memory store; stopped and closed at teardown."""
    store = await open_store("sqlite://:memory:")
    n = await Node.start(store)
    try:
        yield n
    finally:
        await n.stop()
        await store.close()


@pytest.fixture
def config() -> Config:
    return make_config()


@pytest.fixture
async def client(aiohttp_client: ClientFactory, node: Node, config: Config) -> TestClient:
    """The whole app with an empty registry."""
    return await aiohttp_client(make_app(node, config))


@pytest.fixture
async def served(client: TestClient) -> TestClient:
    """The whole app with the test registry written through the admin API."""
    await build_registry(client)
    return client


async def admin(
    client: TestClient,
    method: str,
    path: str,
    body: Any = None,
    *,
    expect: int | Sequence[int] | None = (200, 201),
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One admin request (token T); checks the status when ``expect`` is given."""
    hdrs = dict(ADMIN)
    hdrs.update(headers or {})
    kwargs: dict[str, Any] = {"headers": hdrs}
    if body is not None:
        kwargs["data"] = json.dumps(body)
        hdrs["Content-Type"] = "application/json"
    resp = await client.request(method, path, **kwargs)
    data = await resp.json(content_type=None)
    if expect is not None:
        allowed = (expect,) if isinstance(expect, int) else tuple(expect)
        assert resp.status in allowed, (method, path, resp.status, data)
    data["_status"] = resp.status
    return data


async def build_registry(client: TestClient) -> int:
    """Write the test registry through the admin API; returns the final revision."""
    api = "/api/v1"
    await admin(client, "PUT", f"{api}/datacenters/idc", {"kind": "idc", "writable": True})
    await admin(
        client,
        "PUT",
        f"{api}/datacenters/cloud",
        {"kind": "cloud", "writable": False, "labels": {"provider": "public"}},
    )
    await admin(client, "PUT", f"{api}/regions/mobile", {"cidrs": MOBILE_CIDRS})
    await admin(
        client,
        "PUT",
        f"{api}/services/{SHOP}",
        {
            "access": "ro",
            "ttl": SHOP_TTL,
            "answers": 2,
            "traffic": {"default": {"idc": 50, "cloud": 50}, "mobile": {"idc": 0, "cloud": 100}},
        },
    )
    await admin(
        client,
        "PUT",
        f"{api}/services/{PAY}",
        {"access": "rw", "ttl": PAY_TTL, "traffic": {"default": {"idc": 50, "cloud": 50}}},
    )
    endpoints: list[tuple[str, str, str, str, str]] = []
    for dc, v4, v6 in (
        ("idc", SHOP_IDC_V4, SHOP_IDC_V6),
        ("cloud", SHOP_CLOUD_V4, SHOP_CLOUD_V6),
    ):
        for i, addr in enumerate(v4):
            endpoints.append((SHOP, f"{dc}-v4-{i}", dc, addr, "v1"))
        for i, addr in enumerate(v6):
            endpoints.append((SHOP, f"{dc}-v6-{i}", dc, addr, "v1"))
        endpoints.append((SHOP, f"{dc}-canary", dc, SHOP_CANARY_V4[dc], "v2"))
    for dc, v4 in (("idc", PAY_IDC_V4), ("cloud", PAY_CLOUD_V4)):
        for i, addr in enumerate(v4):
            endpoints.append((PAY, f"{dc}-{i}", dc, addr, "v1"))
    for svc, eid, dc, addr, version in endpoints:
        await admin(
            client,
            "PUT",
            f"{api}/services/{svc}/endpoints/{eid}",
            {"dc": dc, "address": addr, "port": 443, "version": version},
            expect=201,
        )
    await admin(
        client,
        "PUT",
        f"{api}/services/{SHOP}/release",
        {"stable": "v1", "canary": "v2", "canary_percent": 10},
    )
    last = await admin(client, "PUT", f"{api}/services/{PAY}/release", {"stable": "v1"})
    return int(last["revision"])


def dc_of(address: str) -> str:
    """Which datacenter of the test registry an answered address belongs to."""
    if address.startswith(("192.0.2.", "2001:db8:1::")):
        return "idc"
    if address.startswith(("198.51.100.", "2001:db8:2::")):
        return "cloud"
    raise AssertionError(f"{address} is not an address of the test registry")


# -- subprocess servers ------------------------------------------------------------------------


def httpdns_command() -> list[str]:
    """How to run the ``httpdns`` CLI of this checkout."""
    exe = shutil.which("httpdns")
    if exe is None:
        venv = Path(sys.executable).parent / "httpdns"
        exe = str(venv) if venv.is_file() else None
    if exe is None:
        venv = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "httpdns"
        exe = str(venv) if venv.is_file() else None
    return [exe] if exe else [sys.executable, "-m", "httpdns.cli"]


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env() -> dict[str, str]:
    """The environment without any HTTPDNS_* settings of the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HTTPDNS_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclasses.dataclass
class ServerProcess:
    """A running ``httpdns serve`` subprocess."""

    proc: subprocess.Popen[bytes]
    http_port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


# never through a proxy from the environment: every server here is on 127.0.0.1
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_json(
    url: str,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, Any]:
    """A small urllib JSON request: (status, decoded body or raw text)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with OPENER.open(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_healthy(server: ServerProcess, deadline_s: float = 20.0) -> dict[str, Any]:
    """Poll /healthz until it answers (bounded); fail early if the process exits."""
    deadline = time.monotonic() + deadline_s
    last: object = None
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise AssertionError(
                f"httpdns serve exited with {server.proc.returncode}: {server.stderr()}"
            )
        try:
            status, body = http_json(server.base + "/healthz", timeout=1.0)
            if status == 200 and isinstance(body, dict):
                return body
            last = (status, body)
        except OSError as exc:
            last = exc
        time.sleep(0.05)  # poll interval, not synchronisation
    raise AssertionError(f"httpdns serve did not become healthy: {last!r}; {server.stderr()}")


def start_server(
    tmp_path: Path, *args: str, http_port: int | None = None, wait: bool = True
) -> ServerProcess:
    """Start ``httpdns serve --http 127.0.0.1:PORT ARGS`` with stderr in a log file."""
    port = http_port or free_port()
    log = tmp_path / f"serve-{port}.log"
    cmd = [*httpdns_command(), "serve", "--http", f"127.0.0.1:{port}", *args]
    with log.open("wb") as err:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=subprocess.STDOUT,
            env=clean_env(),
            cwd=tmp_path,
        )
    server = ServerProcess(proc, port, log)
    if wait:
        try:
            wait_healthy(server)
        except BaseException:
            stop_server(server)
            raise
    return server


def stop_server(server: ServerProcess, timeout: float = 10.0) -> int | None:
    """SIGTERM, bounded wait, then SIGKILL; returns the exit status."""
    proc = server.proc
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


@contextlib.contextmanager
def running_server(tmp_path: Path, *args: str, **kwargs: Any) -> Iterator[ServerProcess]:
    server = start_server(tmp_path, *args, **kwargs)
    try:
        yield server
    finally:
        stop_server(server)
