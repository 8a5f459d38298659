"""Real third-party clients against ``httpdns serve --https``: dnspython's DoH client
and curl's ``--doh-url``, over TLS with a certificate made here with trustme."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import trustme

from .conftest import (
    ADMIN,
    OPENER,
    ServerProcess,
    clean_env,
    free_port,
    http_json,
    start_server,
    stop_server,
)

APP = "app.example.org"
TRADE = "trade.demo.example"
TRADE_IDC = {f"192.0.2.{10 + i}" for i in range(3)}


@dataclass
class TlsServer:
    server: ServerProcess
    https_port: int
    ca_file: Path

    @property
    def doh_ip(self) -> str:
        return f"https://127.0.0.1:{self.https_port}/dns-query"

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    @property
    def doh_name(self) -> str:
        return f"https://localhost:{self.https_port}/dns-query"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    tmp = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca_file = tmp / "ca.pem"
    cert_file = tmp / "cert.pem"
    key_file = tmp / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_file))
    https_port = free_port()
    server = start_server(
        tmp,
        "--https",
        f"127.0.0.1:{https_port}",
        "--tls-cert",
        str(cert_file),
        "--tls-key",
        str(key_file),
        "--store",
        f"sqlite:///{tmp}/registry.db",
        "--demo",
        "--admin-token",
        "T",
        "--zone",
        "demo.example",
        "--zone",
        "example.org",
    )
    try:
        # a service whose only endpoint is this server itself (for curl's --doh-url)
        status, body = http_json(
            f"{server.base}/api/v1/services/{APP}",
            "PUT",
            {"access": "ro", "ttl": 5, "traffic": {"default": {"idc": 100}}},
            ADMIN,
        )
        assert status == 201, body
        status, body = http_json(
            f"{server.base}/api/v1/services/{APP}/endpoints/self",
            "PUT",
            {"dc": "idc", "address": "127.0.0.1", "port": server.http_port},
            ADMIN,
        )
        assert status == 201, body
        yield TlsServer(server, https_port, ca_file)
    finally:
        stop_server(server)


def test_dnspython_doh_get_and_post(tls: TlsServer) -> None:
    for post in (False, True):
        q = dns.message.make_query(TRADE, "A")
        r = dns.query.https(q, tls.doh_ip, post=post, verify=tls.context(), timeout=10)
        assert r.id == q.id
        assert r.rcode() == dns.rcode.NOERROR
        addrs = {rd.address for rrset in r.answer for rd in rrset}
        assert addrs and addrs <= TRADE_IDC, addrs  # rw service: never the read-only cloud
        assert all(rrset.ttl == 30 for rrset in r.answer)

        q = dns.message.make_query(APP, "A")
        r = dns.query.https(q, tls.doh_ip, post=post, verify=tls.context(), timeout=10)
        assert [rd.address for rrset in r.answer for rd in rrset] == ["127.0.0.1"]

        q = dns.message.make_query("missing.example.org", "A")
        r = dns.query.https(q, tls.doh_ip, post=post, verify=tls.context(), timeout=10)
        assert r.rcode() == dns.rcode.NXDOMAIN
        assert [rrset.rdtype for rrset in r.authority] == [dns.rdatatype.SOA]


def test_tls_certificate_is_really_checked(tls: TlsServer) -> None:
    # without our CA the handshake must fail: the listener really speaks TLS with that cert
    untrusted = _opener(ssl.create_default_context())
    with pytest.raises(OSError):
        untrusted.open(f"https://127.0.0.1:{tls.https_port}/healthz", timeout=5)
    trusted = _opener(tls.context())
    with trusted.open(f"https://localhost:{tls.https_port}/healthz", timeout=5) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "ok"


def _opener(ctx: ssl.SSLContext) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)
    )


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """dnspython's DoH client honours proxy variables; every server here is local."""
    for key in list(os.environ):
        if key.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(key)


def _curl() -> str:
    exe = shutil.which("curl")
    if exe is None:
        pytest.skip("curl is not installed (scripts/install installs it)")
    return exe


def _run_curl(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in clean_env().items() if "proxy" not in k.lower()}
    return subprocess.run(
        [_curl(), "-sS", "--max-time", "15", "--noproxy", "*", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )


def test_curl_resolves_through_our_doh(tls: TlsServer) -> None:
    url = f"http://{APP}:{tls.server.http_port}/healthz"
    out = _run_curl("--doh-url", tls.doh_name, "--cacert", str(tls.ca_file), url)
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["status"] == "ok"
    assert body["revision"] >= 3
    # and a name we do not serve cannot be resolved through us
    bad = _run_curl(
        "--doh-url",
        tls.doh_name,
        "--cacert",
        str(tls.ca_file),
        f"http://missing.example.org:{tls.server.http_port}/healthz",
    )
    assert bad.returncode == 6, (bad.returncode, bad.stderr)  # CURLE_COULDNT_RESOLVE_HOST


def test_curl_refuses_doh_without_our_ca(tls: TlsServer) -> None:
    url = f"http://{APP}:{tls.server.http_port}/healthz"
    out = _run_curl("--doh-url", tls.doh_name, url)
    assert out.returncode != 0


def test_curl_https_query_dialects(tls: TlsServer) -> None:
    base = f"https://localhost:{tls.https_port}"
    out = _run_curl("--cacert", str(tls.ca_file), f"{base}/d?dn={TRADE}&ttl=1")
    assert out.returncode == 0, out.stderr
    addrs, _, ttl = out.stdout.partition(",")
    assert set(addrs.split(";")) <= TRADE_IDC and ttl == "30"
    out = _run_curl("--cacert", str(tls.ca_file), f"{base}/resolve?name={APP}")
    assert out.returncode == 0, out.stderr
    assert [a["data"] for a in json.loads(out.stdout)["Answer"]] == ["127.0.0.1"]


def test_http_listener_still_serves(tls: TlsServer) -> None:
    with OPENER.open(f"{tls.server.base}/d?dn={APP}", timeout=5) as resp:
        assert resp.read() == b"127.0.0.1"
