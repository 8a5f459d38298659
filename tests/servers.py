"""Real servers the integration tests start on free loopback ports: redis-server and
redis-sentinel processes, and httpdns nodes as subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prometheus_query(base: str, expr: str) -> list[dict[str, Any]]:
    """An instant query through a Prometheus server's HTTP API at ``base``: the result."""
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]  # type: ignore[no-any-return]


def prometheus_scalar(base: str, expr: str) -> float | None:
    """The first value of ``prometheus_query``, or None when the vector is empty."""
    result = prometheus_query(base, expr)
    return float(result[0]["value"][1]) if result else None


def wait_until(predicate: object, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate()`` until true, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def _redis_cmd(port: int, *args: str) -> bytes | None:
    """Send one command with the inline protocol; the raw reply or None if unreachable."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall((" ".join(args) + "\r\n").encode())
            return s.recv(65536)
    except OSError:
        return None


def need(tool: str) -> str:
    """The path of ``tool``; skip when it is truly absent (scripts/install installs it)."""
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (scripts/install installs it)")
    return path


class RedisServer:
    """One redis-server process on a free port, with no persistence unless asked."""

    def __init__(self, workdir: Path, port: int | None = None, args: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [
            need("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
            "--logfile", str(self.workdir / f"redis-{self.port}.log"), *self.args,
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: _redis_cmd(self.port, "PING") == b"+PONG\r\n", 10, "redis-server")
        return self

    def command(self, *args: str) -> bytes | None:
        return _redis_cmd(self.port, *args)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None


class Sentinel:
    """One redis-sentinel process watching ``master`` on a free port."""

    def __init__(self, workdir: Path, master_port: int, name: str = "mymaster") -> None:
        self.port = free_port()
        self.workdir = workdir
        self.conf = workdir / f"sentinel-{self.port}.conf"
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {workdir}\n"
            f"sentinel monitor {name} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {name} 1000\n"
            f"sentinel failover-timeout {name} 5000\n"
            f"sentinel parallel-syncs {name} 1\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Sentinel:
        self.proc = subprocess.Popen(
            [
                need("redis-sentinel"),
                str(self.conf),
                "--logfile",
                str(self.workdir / f"s-{self.port}.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: _redis_cmd(self.port, "PING") == b"+PONG\r\n", 10, "redis-sentinel")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def httpdns_command() -> list[str]:
    """How to run the ``httpdns`` CLI from the tests."""
    exe = Path(sys.executable).parent / "httpdns"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "httpdns.cli"]


class Node:
    """An ``httpdns serve`` subprocess on a free port."""

    def __init__(
        self,
        store: str,
        workdir: Path,
        token: str = "T",
        args: tuple[str, ...] = (),
        wrap: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.wrap = wrap  # a command to run the node under (e.g. prlimit ...)
        self.env = env or {}  # HTTPDNS_* variables for the node (others' are not passed)
        self.port = free_port()
        self.store = store
        self.workdir = workdir
        self.token = token
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"node-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> Node:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [*self.wrap, *httpdns_command(), "serve", "--http", f"127.0.0.1:{self.port}", "--store", self.store,
               "--admin-token", self.token, *self.args]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("HTTPDNS_")}
        env.update(self.env)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=self.workdir, env=env)
        if wait:
            wait_until(self.healthy, 20, f"httpdns node on {self.port} ({self.log})")
        return self

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"node exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}"
            )
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None


@contextlib.contextmanager
def seeded_node(tmp_path: Path, token: str = "T", args: tuple[str, ...] = ()) -> Iterator[Node]:
    """A node on a SQLite registry seeded with ``seed_test_registry``; on leaving, its log
    must hold no traceback."""
    n = Node(f"sqlite:///{tmp_path}/r.db", tmp_path, token=token, args=args).start()
    try:
        seed_test_registry(n.url, token)
        yield n
        log = n.log.read_text(errors="replace")
        assert "Traceback" not in log, log[-3000:]
    finally:
        n.stop()


# -- helpers for the fast data plane tests (DNS listener, fast HTTP, workers) -------------------


def free_udp_tcp_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 for both UDP and TCP."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free UDP+TCP port")


def admin_call(
    base: str,
    method: str,
    path: str,
    body: object = None,
    *,
    token: str = "T",
    timeout: float = 10.0,
) -> tuple[int, object]:
    """One admin API request with a bearer token: ``(status, decoded JSON or text)``."""
    import json
    import urllib.error

    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {token}"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
        exc.close()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def seed_test_registry(base: str, token: str = "T") -> int:
    """Write the registry of ``tests.httpdns.conftest.build_registry`` through the admin API
    of a running node at ``base`` (synchronously); returns the final revision."""
    from tests.httpdns import conftest as c

    api = "/api/v1"
    requests: list[tuple[str, object]] = [
        (f"{api}/datacenters/idc", {"kind": "idc", "writable": True}),
        (f"{api}/datacenters/cloud", {"kind": "cloud", "writable": False}),
        (f"{api}/regions/mobile", {"cidrs": c.MOBILE_CIDRS}),
        (
            f"{api}/services/{c.SHOP}",
            {
                "access": "ro",
                "ttl": c.SHOP_TTL,
                "answers": 2,
                "traffic": {
                    "default": {"idc": 50, "cloud": 50},
                    "mobile": {"idc": 0, "cloud": 100},
                },
            },
        ),
        (
            f"{api}/services/{c.PAY}",
            {"access": "rw", "ttl": c.PAY_TTL, "traffic": {"default": {"idc": 50, "cloud": 50}}},
        ),
    ]
    for dc, v4, v6 in (
        ("idc", c.SHOP_IDC_V4, c.SHOP_IDC_V6),
        ("cloud", c.SHOP_CLOUD_V4, c.SHOP_CLOUD_V6),
    ):
        for i, addr in enumerate([*v4, *v6]):
            body = {"dc": dc, "address": addr, "port": 443, "version": "v1"}
            requests.append((f"{api}/services/{c.SHOP}/endpoints/{dc}-{i}", body))
        body = {"dc": dc, "address": c.SHOP_CANARY_V4[dc], "port": 443, "version": "v2"}
        requests.append((f"{api}/services/{c.SHOP}/endpoints/{dc}-canary", body))
    for dc, v4 in (("idc", c.PAY_IDC_V4), ("cloud", c.PAY_CLOUD_V4)):
        for i, addr in enumerate(v4):
            body = {"dc": dc, "address": addr, "port": 443, "version": "v1"}
            requests.append((f"{api}/services/{c.PAY}/endpoints/{dc}-{i}", body))
    requests.append(
        (f"{api}/services/{c.SHOP}/release", {"stable": "v1", "canary": "v2", "canary_percent": 10})
    )
    requests.append((f"{api}/services/{c.PAY}/release", {"stable": "v1"}))
    revision = 0
    for path, payload in requests:
        status, data = admin_call(base, "PUT", path, payload, token=token)
        assert status in (200, 201), (path, status, data)
        revision = int(data["revision"])  # type: ignore[index]
    return revision
