"""DoH over HTTP/2 (issue 14) on a real ``httpdns serve --https`` node, with the clients
that failed before: BIND ``dig +https``, Knot ``kdig +https``, dnspython with
``http_version=H2`` (and H1 on the same listener), ``curl --http2``; plus the limits seen
from a raw ``h2`` client: SETTINGS, rapid reset (CVE-2023-44487), body size, stalls."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import orjson
import pytest
import trustme

from tests.servers import Node, free_port, need, seed_test_registry, wait_until

from .conftest import SHOP

ZONE = "example.org"


@dataclass
class H2Node:
    node: Node
    port: int
    ca: Path

    def url(self, path: str = "/dns-query") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def verify(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.set_alpn_protocols(["h2"])
        return ctx


ENGINES = {"native": "libnghttp2", "h2": "the h2 package"}


@pytest.fixture(scope="module", params=sorted(ENGINES))
def h2node(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[H2Node]:
    """A node with TLS, on each HTTP/2 engine (``httpdns.http2``: libnghttp2, the h2 package)."""
    engine: str = request.param
    tmp = tmp_path_factory.mktemp("h2")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca_file, cert_file, key_file = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_file))
    port = free_port()
    node = Node(
        f"sqlite:///{tmp}/registry.db",
        tmp,
        args=("--https", f"127.0.0.1:{port}", "--tls-cert", str(cert_file), "--tls-key",
              str(key_file), "--header-timeout", "2"),
        env={"HTTPDNS_H2_ENGINE": engine},
    )  # fmt: skip
    node.start()
    try:
        said = f"HTTP/2 on {ENGINES[engine]}"
        wait_until(lambda: said in node.log.read_text(), 10, f"{said!r} in the node's log")
        seed_test_registry(node.url)
        yield H2Node(node, port, ca_file)
    finally:
        node.stop()


def expected(h2node: H2Node, name: str, rdtype: str) -> set[str]:
    """The answer over HTTP/1.1 (urllib) for the same peer: the reference."""
    q = dns.message.make_query(name, rdtype)
    r = dns.query.https(
        q, h2node.url(), verify=h2node.verify(), http_version=dns.query.HTTPVersion.H1
    )
    return {rd.to_text() for rrset in r.answer for rd in rrset}


# -- the clients that failed ------------------------------------------------------------------


@pytest.mark.parametrize("rdtype", ["A", "AAAA"])
@pytest.mark.parametrize("post", [True, False])
def test_dnspython_over_h2_and_h1(h2node: H2Node, rdtype: str, post: bool) -> None:
    q = dns.message.make_query(SHOP, rdtype)
    answers = []
    for version in (dns.query.HTTPVersion.H2, dns.query.HTTPVersion.H1):
        r = dns.query.https(
            q, h2node.url(), verify=h2node.verify(), post=post, http_version=version
        )
        assert r.rcode() == dns.rcode.NOERROR
        answers.append({rd.to_text() for rrset in r.answer for rd in rrset})
    assert answers[0] and answers[0] == answers[1]


@pytest.mark.parametrize("version", [dns.query.HTTPVersion.H2, dns.query.HTTPVersion.H1])
def test_a_bad_client_subnet_over_doh_is_a_dns_formerr_not_an_http_error(
    h2node: H2Node, version: dns.query.HTTPVersion
) -> None:
    """RFC 8484 §4.2.1: a DNS error is a 200 carrying the DNS reply; RFC 7871 §6: FORMERR."""
    bad = dns.edns.GenericOption(dns.edns.ECS, b"\x00\x01\x28\x00" + bytes(5))  # /40 in IPv4
    q = dns.message.make_query(SHOP, "A", use_edns=0, options=[bad])
    r = dns.query.https(q, h2node.url(), verify=h2node.verify(), http_version=version)
    assert r.rcode() == dns.rcode.FORMERR and not r.answer


@pytest.mark.parametrize("mode", ["+https", "+https-get"])
def test_dig_over_https(h2node: H2Node, mode: str) -> None:
    out = subprocess.run(
        [need("dig"), "@127.0.0.1", "-p", str(h2node.port), mode, f"+tls-ca={h2node.ca}",
         "+tls-hostname=localhost", SHOP, "A", "+time=5", "+tries=1"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert "status: NOERROR" in out.stdout, out.stdout + out.stderr
    got = {line.split()[-1] for line in out.stdout.splitlines() if line.startswith(SHOP + ".")}
    assert got and got == expected(h2node, SHOP, "A")
    assert "(HTTPS" in out.stdout  # the transport dig says it used


@pytest.mark.parametrize("mode", ["+https", "+https-get"])
def test_kdig_over_https(h2node: H2Node, mode: str) -> None:
    out = subprocess.run(
        [need("kdig"), "@127.0.0.1", "-p", str(h2node.port), mode, f"+tls-ca={h2node.ca}",
         "+tls-hostname=localhost", SHOP, "AAAA", "+time=5", "+retry=0"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    text = out.stdout + out.stderr
    assert "status: NOERROR" in text, text
    got = {line.split()[-1] for line in out.stdout.splitlines() if line.startswith(SHOP + ".")}
    assert got and got == expected(h2node, SHOP, "AAAA")
    assert "HTTP session (HTTP/2-" in text


def _curl(h2node: H2Node, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [need("curl"), "-sS", "--http2", "--cacert", str(h2node.ca), "--noproxy", "*", *args],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_curl_http2_json_and_doh(h2node: H2Node) -> None:
    out = _curl(h2node, "-w", "\n%{http_version}", h2node.url(f"/resolve?name={SHOP}&type=A"))
    body, _, version = out.stdout.rpartition("\n")
    assert version == "2", out.stdout + out.stderr
    data = orjson.loads(body)
    assert {a["data"] for a in data["Answer"]} == expected(h2node, SHOP, "A")
    # curl resolving a name through our DoH endpoint, over HTTP/2
    probe = _curl(h2node, "-v", "--doh-url", h2node.url(), "-o", "/dev/null",
                  "--connect-timeout", "2", f"http://{SHOP}:9/")  # fmt: skip
    tried = set(re.findall(r"Trying ([0-9.]+):9\b", probe.stderr))
    assert tried and tried <= expected(h2node, SHOP, "A"), probe.stderr
    assert re.search(r"ALPN.*server accepted.*h2", probe.stderr), probe.stderr


def test_curl_http2_falls_back_to_http1_for_the_admin_api(h2node: H2Node) -> None:
    out = _curl(h2node, "-H", "Authorization: Bearer T", "-w", "\n%{http_version}",
                h2node.url("/api/v1/state"))  # fmt: skip
    body, _, version = out.stdout.rpartition("\n")
    assert version == "1.1", out.stdout + out.stderr
    assert orjson.loads(body)["revision"] >= 1


# -- limits, with a raw h2 client -------------------------------------------------------------


class RawH2:
    """A hand-driven HTTP/2 client connection (h2 in client mode over a TLS socket)."""

    def __init__(self, h2node: H2Node) -> None:
        raw = socket.create_connection(("127.0.0.1", h2node.port), timeout=5)
        self.sock = h2node.context().wrap_socket(raw, server_hostname="localhost")
        assert self.sock.selected_alpn_protocol() == "h2"
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.flush()

    def flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def events(self, until: type, timeout: float = 5.0) -> list[h2.events.Event]:
        """Read until an event of type ``until`` (or the connection closes)."""
        seen: list[h2.events.Event] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                break
            if not data:
                seen.append(h2.events.ConnectionTerminated())
                break
            seen += self.conn.receive_data(data)
            self.flush()
            if any(isinstance(e, until) for e in seen):
                break
        return seen

    def close(self) -> None:
        self.sock.close()


def _headers(path: str, method: str = "GET") -> list[tuple[str, str]]:
    return [(":method", method), (":scheme", "https"), (":authority", "localhost"), (":path", path)]


@pytest.fixture
def raw(h2node: H2Node) -> Iterator[RawH2]:
    client = RawH2(h2node)
    try:
        yield client
    finally:
        client.close()


def test_settings_advertise_the_limits(raw: RawH2) -> None:
    events = raw.events(h2.events.RemoteSettingsChanged)
    (changed,) = [e for e in events if isinstance(e, h2.events.RemoteSettingsChanged)]
    settings = {int(k): v.new_value for k, v in changed.changed_settings.items()}
    assert settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 100
    assert settings[h2.settings.SettingCodes.MAX_FRAME_SIZE] == 16384
    assert settings[h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE] > 0


def test_rapid_reset_gets_enhance_your_calm(raw: RawH2) -> None:
    raw.events(h2.events.RemoteSettingsChanged)
    for i in range(300):
        sid = 1 + 2 * i
        raw.conn.send_headers(
            sid, _headers("/dns-query?dns=AAABAAABAAAAAAAAB2V4YW1wbGUDb3JnAAABAAE")
        )
        raw.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
    raw.flush()
    events = raw.events(h2.events.ConnectionTerminated)
    ends = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert ends and ends[0].error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


def test_a_body_over_a_dns_message_is_413(raw: RawH2) -> None:
    raw.events(h2.events.RemoteSettingsChanged)
    headers = [*_headers("/dns-query", "POST"), ("content-type", "application/dns-message")]
    raw.conn.send_headers(1, headers)
    body = b"\0" * 70_000
    sent = 0
    responses: list[h2.events.Event] = []
    while sent < len(body) and not responses:
        room = min(raw.conn.local_flow_control_window(1), raw.conn.max_outbound_frame_size)
        if room <= 0:
            got = raw.events(h2.events.WindowUpdated, 2)
            responses = [e for e in got if isinstance(e, h2.events.ResponseReceived)]
            continue
        raw.conn.send_data(1, body[sent : sent + room])
        sent += room
        raw.flush()
    if not responses:
        got = raw.events(h2.events.ResponseReceived)
        responses = [e for e in got if isinstance(e, h2.events.ResponseReceived)]
    (resp,) = responses
    assert dict(resp.headers)[b":status"] == b"413"


def test_a_stalled_request_closes_the_connection(raw: RawH2) -> None:
    raw.events(h2.events.RemoteSettingsChanged)
    raw.conn.send_headers(
        1, [*_headers("/dns-query", "POST"), ("content-type", "application/dns-message")]
    )
    raw.flush()  # and never the body: the header timeout (2 s here) ends the connection
    started = time.monotonic()
    events = raw.events(h2.events.ConnectionTerminated, 8)
    assert any(isinstance(e, h2.events.ConnectionTerminated) for e in events)
    assert 1.5 <= time.monotonic() - started < 6


def test_many_streams_on_one_connection_answer_alike(raw: RawH2, h2node: H2Node) -> None:
    raw.events(h2.events.RemoteSettingsChanged)
    path = f"/resolve?name={SHOP}&type=A"
    for i in range(50):
        raw.conn.send_headers(1 + 2 * i, _headers(path), end_stream=True)
    raw.flush()
    bodies: dict[int, bytes] = {}
    ended: set[int] = set()
    deadline = time.monotonic() + 10
    while len(ended) < 50 and time.monotonic() < deadline:
        for e in raw.events(h2.events.StreamEnded, 2):
            if isinstance(e, h2.events.DataReceived):
                bodies[e.stream_id] = bodies.get(e.stream_id, b"") + (e.data or b"")
                raw.conn.acknowledge_received_data(e.flow_controlled_length or 0, e.stream_id)
            elif isinstance(e, h2.events.StreamEnded):
                ended.add(e.stream_id)
        raw.flush()
    assert len(ended) == 50
    want = expected(h2node, SHOP, "A")
    for body in bodies.values():
        assert {a["data"] for a in orjson.loads(body)["Answer"]} == want


def test_the_node_still_serves_http1_after_all_that(h2node: H2Node) -> None:
    wait_until(lambda: bool(expected(h2node, SHOP, "A")), 5, "an HTTP/1.1 answer")
