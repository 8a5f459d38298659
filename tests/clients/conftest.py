"""Fixtures for the client-library tests: a real ``httpdns serve --demo`` subprocess on a
free port over a SQLite file, which a test may stop and start again on the same port
and file; admin helpers to register services; ``clients/python`` on ``sys.path`` when
the client package is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
try:
    import httpdns_client  # noqa: F401
except ImportError:  # not pip-installed: use the source tree
    sys.path.insert(0, str(ROOT / "clients" / "python"))

TOKEN = "T"
ACCOUNT = "100000"
SECRET = "demo-secret"
QUOTES = "quotes.demo.example"  # ro, TTL 20, A and AAAA
TRADE = "trade.demo.example"  # rw, TTL 30, A only
SHORT = "short.demo.example"  # registered by the fixtures: TTL 1, one idc endpoint
SHORT_ADDRESS = "192.0.2.77"
QUOTES_V4 = {f"192.0.2.{20 + i}" for i in range(4)} | {f"198.51.100.{20 + i}" for i in range(4)}
QUOTES_V6 = {f"2001:db8::{20 + i:x}" for i in range(4)}
TRADE_V4 = {f"192.0.2.{10 + i}" for i in range(3)}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def httpdns_exe() -> list[str]:
    """How to run this checkout's ``httpdns`` CLI."""
    for candidate in (Path(sys.executable).parent / "httpdns", ROOT / ".venv" / "bin" / "httpdns"):
        if candidate.is_file():
            return [str(candidate)]
    found = shutil.which("httpdns")
    return [found] if found else [sys.executable, "-m", "httpdns.cli"]


def http_json(
    url: str, method: str = "GET", body: Any = None, timeout: float = 5.0
) -> tuple[int, Any]:
    """A small JSON request with the admin token: (status, decoded body or text)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


class DemoServer:
    """``httpdns serve --demo`` as a subprocess; ``stop()``/``start()`` keep the port and
    the SQLite file, so a restarted server has the same data."""

    def __init__(self, directory: Path, *extra_args: str) -> None:
        self.directory = directory
        self.extra_args = extra_args
        self.port = free_port()
        self.db = directory / "r.db"
        self.log = directory / f"serve-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        """The server's URL, bootstrapped by address."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start and wait (bounded) until ``/healthz`` answers."""
        cmd = [
            *httpdns_exe(), "serve", "--http", f"127.0.0.1:{self.port}",
            "--store", f"sqlite:///{self.db}", "--demo", "--admin-token", TOKEN,
            *self.extra_args,
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("HTTPDNS_")}
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT,
                env=env, cwd=self.directory,
            )  # fmt: skip
        deadline = time.monotonic() + 20.0
        last: object = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"httpdns serve exited: {self.log.read_text()}")
            try:
                status, body = http_json(self.base + "/healthz", timeout=1.0)
                if status == 200:
                    return
                last = (status, body)
            except OSError as exc:
                last = exc
            time.sleep(0.05)  # poll interval
        self.stop()
        raise AssertionError(f"httpdns serve not healthy: {last!r}: {self.log.read_text()}")

    def stop(self) -> None:
        """SIGTERM, bounded wait, SIGKILL."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        """An admin API call that must succeed."""
        status, data = http_json(f"{self.base}/api/v1{path}", method, body)
        assert status in (200, 201), (method, path, status, data)
        return data

    def register(self, name: str, address: str, ttl: int, port: int = 80) -> None:
        """A service answered from the demo ``idc`` with one endpoint."""
        self.admin("PUT", f"/services/{name}", {"traffic": {"default": {"idc": 100}}, "ttl": ttl})
        self.set_endpoint(name, address, port)

    def set_endpoint(self, name: str, address: str, port: int = 80) -> None:
        """Create or replace the endpoint ``e1`` of a service."""
        self.admin(
            "PUT", f"/services/{name}/endpoints/e1", {"dc": "idc", "address": address, "port": port}
        )


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    """One demo server shared by the tests that do not stop it (SHORT registered)."""
    server = DemoServer(tmp_path_factory.mktemp("httpdns-shared"))
    server.start()
    try:
        server.register(SHORT, SHORT_ADDRESS, ttl=1)
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[DemoServer]:
    """A demo server of the test's own, which it may stop and restart."""
    server = DemoServer(tmp_path)
    server.start()
    try:
        server.register(SHORT, SHORT_ADDRESS, ttl=1)
        yield server
    finally:
        server.stop()


def dead_server() -> str:
    """The URL of a port where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}"


def source_of(answer: Any) -> str | None:
    """An answer's source, or None for no answer."""
    return None if answer is None else str(answer.source)


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` (bounded) until true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# -- the DNSPod encrypted dialect -------------------------------------------------------------

DNSPOD_ID = "1001"  # both keys
DNSPOD_DES_ONLY = "1002"
DES_KEY = "dnspodpass"
AES_KEY = "0123456789abcdef"
DNSPOD_CONFIG = f"""
[dnspod."{DNSPOD_ID}"]
des_key = "{DES_KEY}"
aes_key = "{AES_KEY}"
[dnspod."{DNSPOD_DES_ONLY}"]
des_key = "another-des-key"
"""


def dnspod_config(directory: Path) -> Path:
    """A config file with the DNSPod accounts above."""
    path = directory / "httpdns.toml"
    path.write_text(DNSPOD_CONFIG)
    return path


@pytest.fixture(scope="session")
def dnspod_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    """A demo server that also knows the DNSPod accounts (SHORT registered)."""
    directory = tmp_path_factory.mktemp("httpdns-dnspod")
    server = DemoServer(directory, "--config", str(dnspod_config(directory)))
    server.start()
    try:
        server.register(SHORT, SHORT_ADDRESS, ttl=1)
        yield server
    finally:
        server.stop()


class HttpsServer:
    """A demo server with an HTTPS listener whose certificate (from a test CA) names both
    ``httpdns.test`` and ``127.0.0.1``."""

    def __init__(self, directory: Path) -> None:
        import trustme

        self.ca = trustme.CA()
        self.cert = self.ca.issue_cert("httpdns.test", "127.0.0.1")
        self.cert.private_key_and_cert_chain_pem.write_to_path(str(directory / "server.pem"))
        self.ca_file = directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        pem = str(directory / "server.pem")
        self.server = DemoServer(
            directory, "--https", f"127.0.0.1:{self.port}", "--tls-cert", pem, "--tls-key", pem
        )

    def pin(self) -> str:
        """The certificate key's pin, computed with ``cryptography`` (not the client)."""
        import base64
        import hashlib

        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        cert = x509.load_pem_x509_certificate(self.cert.cert_chain_pems[0].bytes())
        spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture(scope="session")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsServer]:
    """One HTTPS demo server for the pinning tests."""
    server = HttpsServer(tmp_path_factory.mktemp("httpdns-https"))
    server.server.start()
    try:
        yield server
    finally:
        server.server.stop()
