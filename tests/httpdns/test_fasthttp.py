"""The fast HTTP query path (``httpdns.fasthttp``) of a real ``httpdns serve`` subprocess, over
raw sockets: keep-alive and pipelining, ``Connection: close`` and HTTP/1.0, the hand-off of a
connection to aiohttp (admin API, chunked bodies, anything unusual), the 431 for an over-long
head, the front cache (per target and peer, invalidated by changes), ``Date``, and HTTPS."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import socket
import ssl
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.edns
import dns.message
import dns.rcode
import pytest
import trustme

from httpdns.hashing import bucket
from httpdns.table import Client
from tests.servers import Node, admin_call, free_port, seed_test_registry, wait_until

from .conftest import PAY, SHOP

ACCOUNT = "100000"
SIGNED_ACCOUNT = "200000"
SIGNED_SECRET = "x"
MOVE = "move.example.org"  # idc 100 <-> cloud 100, for the cache invalidation tests
MOVE_ADDR = {"idc": "192.0.2.201", "cloud": "198.51.100.201"}
TIMEOUT = 5.0


@dataclass
class FastNode:
    node: Node
    https_port: int
    ca: Path

    @property
    def port(self) -> int:
        return self.node.port

    @property
    def base(self) -> str:
        return self.node.url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastNode]:
    tmp = tmp_path_factory.mktemp("fast")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca_file, cert_file, key_file = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_file))
    (tmp / "httpdns.toml").write_text(
        f'[accounts."{ACCOUNT}"]\n\n[accounts."{SIGNED_ACCOUNT}"]\nsecret = "{SIGNED_SECRET}"\n'
    )
    https_port = free_port()
    node = Node(
        f"sqlite:///{tmp}/registry.db",
        tmp,
        args=(
            "--https", f"127.0.0.1:{https_port}", "--tls-cert", str(cert_file),
            "--tls-key", str(key_file), "--zone", "example.org",
            "--config", str(tmp / "httpdns.toml"),
        ),
    )  # fmt: skip
    node.start()
    try:
        seed_test_registry(node.url)
        api = f"/api/v1/services/{MOVE}"
        body = {"access": "ro", "ttl": 20, "traffic": {"default": {"idc": 100}}}
        assert admin_call(node.url, "PUT", api, body)[0] == 201
        for dc, addr in MOVE_ADDR.items():
            ep = {"dc": dc, "address": addr, "port": 443, "version": "v1"}
            assert admin_call(node.url, "PUT", f"{api}/endpoints/{dc}", ep)[0] == 201
        yield FastNode(node, https_port, ca_file)
        # After every test of the module, whatever their order: the node is alive and its
        # log holds no bug (client errors are counted lines, never tracebacks).
        assert node.proc is not None and node.proc.poll() is None
        assert one(node.port, get("/healthz")).status == 200
        log = Path(node.log).read_text(errors="replace")
        assert "internal error" not in log and "Traceback" not in log, log[-3000:]
    finally:
        node.stop()


# -- a tiny HTTP/1.1 client over a raw socket -----------------------------------------------


@dataclass
class Response:
    status: int
    version: bytes
    headers: dict[str, str]
    body: bytes
    raw_head: bytes

    def json(self) -> object:
        return json.loads(self.body)


class Conn:
    """One raw connection: write bytes, read framed responses (Content-Length only)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        sock.settimeout(TIMEOUT)

    @classmethod
    def open(cls, port: int, source: str = "127.0.0.1") -> Conn:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(TIMEOUT)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        return cls(s)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"EOF; buffered {self.buf[:200]!r}")
        self.buf += chunk

    def response(self, skip_1xx: bool = True) -> Response:
        while True:
            while b"\r\n\r\n" not in self.buf:
                self._fill()
            head, _, rest = self.buf.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            version, status, *_ = lines[0].split(b" ", 2)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                k, _, v = line.partition(b":")
                headers[k.decode().strip().lower()] = v.decode().strip()
            size = int(headers.get("content-length", "0"))
            while len(rest) < size:
                self._fill()
                rest = self.buf.partition(b"\r\n\r\n")[2]
            self.buf = rest[size:]
            if skip_1xx and 100 <= int(status) < 200:
                continue
            return Response(int(status), version, headers, rest[:size], head)

    def at_eof(self, timeout: float = TIMEOUT) -> bool:
        """True when the server closed the connection (nothing more buffered)."""
        self.sock.settimeout(timeout)
        try:
            return self.buf == b"" and self.sock.recv(1) == b""
        except (TimeoutError, ssl.SSLError):
            return False
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def get(path: str, *headers: str, version: str = "1.1") -> bytes:
    lines = [f"GET {path} HTTP/{version}", "Host: test", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def post(path: str, body: bytes, ctype: str, *headers: str) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: test",
        f"Content-Type: {ctype}",
        f"Content-Length: {len(body)}",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def one(port: int, request: bytes, source: str = "127.0.0.1") -> Response:
    c = Conn.open(port, source)
    try:
        c.send(request)
        return c.response()
    finally:
        c.close()


def without_date(r: Response) -> bytes:
    head = b"\r\n".join(h for h in r.raw_head.split(b"\r\n") if not h.lower().startswith(b"date:"))
    return head + b"\r\n\r\n" + r.body


def doh_wire(name: str, qtype: str = "A", qid: int = 0) -> bytes:
    q = dns.message.make_query(name, qtype)
    q.id = qid
    return q.to_wire()


def b64(wire: bytes) -> str:
    return base64.urlsafe_b64encode(wire).rstrip(b"=").decode()


# -- keep-alive, pipelining, closing ---------------------------------------------------------


def test_pipelined_requests_are_answered_in_order(server: FastNode) -> None:
    paths = [
        f"/d?dn={SHOP}",
        f"/d?dn={PAY}&ttl=1",
        f"/resolve?name={SHOP}&type=AAAA",
        f"/{ACCOUNT}/d?host={PAY}",
        f"/dns-query?dns={b64(doh_wire(PAY, qid=7))}",
        "/healthz",
        f"/d?dn={SHOP}&type=aaaa",
    ]
    expected = [one(server.port, get(p)) for p in paths]
    c = Conn.open(server.port)
    try:
        c.send(b"".join(get(p) for p in paths))
        got = [c.response() for _ in paths]
        # still open: one more on the same connection
        c.send(get(f"/d?dn={PAY}"))
        assert c.response().body == expected[1].body.split(b",")[0]
    finally:
        c.close()
    for p, g, e in zip(paths, got, expected, strict=True):
        assert g.status == 200, (p, g)
        assert g.version == b"HTTP/1.1"
        if p != "/healthz":
            assert g.body == e.body, p
        assert g.headers["content-type"] == e.headers["content-type"]
        assert "connection" not in g.headers
    assert got[1].body.endswith(b",30")
    assert json.loads(got[3].body)["host"] == PAY
    assert dns.message.from_wire(got[4].body).id == 7


def test_pipelined_requests_split_at_every_byte(server: FastNode) -> None:
    stream = get(f"/d?dn={SHOP}") + post("/dns-query", doh_wire(SHOP), "application/dns-message")
    c = Conn.open(server.port)
    try:
        for i in range(len(stream)):
            c.send(stream[i : i + 1])
        first, second = c.response(), c.response()
    finally:
        c.close()
    assert first.status == second.status == 200
    addrs = [rd.address for rrset in dns.message.from_wire(second.body).answer for rd in rrset]
    assert ";".join(addrs).encode() == first.body


def test_connection_close_closes_after_the_response(server: FastNode) -> None:
    c = Conn.open(server.port)
    try:
        c.send(get(f"/d?dn={SHOP}") + get(f"/d?dn={PAY}", "Connection: close"))
        first, second = c.response(), c.response()
        assert first.status == second.status == 200
        assert "connection" not in first.headers
        assert second.headers.get("connection", "").lower() == "close"
        assert second.body == one(server.port, get(f"/d?dn={PAY}")).body
        assert c.at_eof()
    finally:
        c.close()


def test_requests_after_connection_close_are_ignored(server: FastNode) -> None:
    c = Conn.open(server.port)
    try:
        c.send(get(f"/d?dn={SHOP}", "Connection: close") + get(f"/d?dn={PAY}"))
        assert c.response().status == 200
        assert c.at_eof()
    finally:
        c.close()


def test_http10_closes_after_the_response(server: FastNode) -> None:
    c = Conn.open(server.port)
    try:
        c.send(get(f"/d?dn={SHOP}", version="1.0"))
        r = c.response()
        assert r.status == 200 and r.body
        assert r.headers.get("connection", "").lower() == "close"
        assert c.at_eof()
    finally:
        c.close()


def test_http10_keep_alive_is_announced(server: FastNode) -> None:
    c = Conn.open(server.port)
    try:
        c.send(get(f"/d?dn={SHOP}", "Connection: keep-alive", version="1.0"))
        r = c.response()
        assert r.status == 200
        assert r.headers.get("connection", "").lower() == "keep-alive"
    finally:
        c.close()


# -- hand-off to aiohttp ---------------------------------------------------------------------


def test_admin_request_after_a_query_on_the_same_connection(server: FastNode) -> None:
    d_body = one(server.port, get(f"/d?dn={SHOP}")).body
    c = Conn.open(server.port)
    try:
        c.send(get(f"/d?dn={SHOP}"))
        first = c.response()
        c.send(get("/api/v1/state", "Authorization: Bearer T"))
        state = c.response()
        c.send(get(f"/d?dn={SHOP}") + get("/api/v1/state") + get(f"/d?dn={PAY}"))
        after, unauthorized, last = c.response(), c.response(), c.response()
    finally:
        c.close()
    assert first.status == 200 and first.body == d_body
    assert state.status == 200 and state.headers["content-type"].startswith("application/json")
    body = state.json()
    assert isinstance(body, dict) and SHOP in body["services"] and body["revision"] > 0
    assert after.status == 200 and after.body == d_body
    assert unauthorized.status == 401
    assert last.status == 200 and last.body == one(server.port, get(f"/d?dn={PAY}")).body


def test_admin_write_then_query_on_one_connection(server: FastNode) -> None:
    """A PUT hands over; the query pipelined behind it sees the write."""
    name = "handoff.example.org"
    svc = json.dumps({"access": "ro", "ttl": 9, "traffic": {"default": {"idc": 100}}}).encode()
    ep = json.dumps({"dc": "idc", "address": "192.0.2.250", "port": 443}).encode()
    auth = "Authorization: Bearer T"
    c = Conn.open(server.port)
    try:
        c.send(
            post(f"/api/v1/services/{name}", svc, "application/json", auth).replace(
                b"POST", b"PUT", 1
            )
            + post(f"/api/v1/services/{name}/endpoints/e", ep, "application/json", auth).replace(
                b"POST", b"PUT", 1
            )
            + get(f"/d?dn={name}&ttl=1")
        )
        r1, r2, r3 = c.response(), c.response(), c.response()
    finally:
        c.close()
    assert (r1.status, r2.status, r3.status) == (201, 201, 200), (r1.body, r2.body)
    assert r3.body == b"192.0.2.250,9"
    assert admin_call(server.base, "DELETE", f"/api/v1/services/{name}")[0] == 200


def test_chunked_doh_post_is_handed_off_and_answered(server: FastNode) -> None:
    wire = doh_wire(SHOP, qid=0x2222)
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(part), part) for part in (wire[:5], wire[5:17], wire[17:])
    )
    head = (
        b"POST /dns-query HTTP/1.1\r\nHost: test\r\nContent-Type: application/dns-message\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    c = Conn.open(server.port)
    try:
        c.send(head + chunks + b"0\r\n\r\n" + get(f"/d?dn={SHOP}"))
        r, d = c.response(), c.response()
    finally:
        c.close()
    assert r.status == 200, r.body
    assert r.headers["content-type"] == "application/dns-message"
    assert r.headers["cache-control"] == "max-age=60"
    m = dns.message.from_wire(r.body)
    assert m.id == 0x2222 and m.rcode() == dns.rcode.NOERROR
    assert ";".join(rd.address for rrset in m.answer for rd in rrset).encode() == d.body


def test_fast_and_aiohttp_paths_give_the_same_answers(server: FastNode) -> None:
    """``Expect: 100-continue`` sends a request to aiohttp: both paths share the dialects."""
    t = int(time.time()) + 3600
    sig = hashlib.md5(f"{SHOP}-{SIGNED_SECRET}-{t}".encode()).hexdigest()
    paths = [
        f"/d?dn={SHOP}&ttl=1&clientip=1",
        f"/d?dn={SHOP}&type=addrs&ip=100.64.3.4",
        "/d?dn=nothing.example.org",
        f"/d?dn={PAY}&uid=device-1",
        f"/{ACCOUNT}/d?host={SHOP}&query=4,6",
        f"/{ACCOUNT}/resolve?host={SHOP},{PAY}",
        f"/{SIGNED_ACCOUNT}/sign_d?host={SHOP}&t={t}&s={sig}",
        f"/{SIGNED_ACCOUNT}/sign_d?host={SHOP}&t={t}&s=00",
        f"/{SIGNED_ACCOUNT}/d?host={SHOP}",
        "/999/d?host=x.example.org",
        f"/resolve?name={SHOP}&type=A&edns_client_subnet=100.64.0.0/24",
        f"/dns-query?dns={b64(doh_wire(SHOP, 'AAAA', qid=3))}",
        "/dns-query?dns=%%%",
        "/d?dn=bad..name",
        "/d",
    ]
    for p in paths:
        fast = one(server.port, get(p))
        slow = one(server.port, get(p, "Expect: 100-continue"))
        assert "server" not in fast.headers  # answered by FastHTTP
        assert "server" in slow.headers  # answered by aiohttp
        assert (fast.status, fast.headers["content-type"], fast.body) == (
            slow.status,
            slow.headers["content-type"],
            slow.body,
        ), p
        assert fast.status < 500, (p, fast.body)
        if fast.status != 200:
            assert fast.headers["content-type"] == "application/json"
            assert "error" in json.loads(fast.body)


# -- errors ----------------------------------------------------------------------------------


def test_an_over_long_head_gets_431_and_close(server: FastNode) -> None:
    c = Conn.open(server.port)
    try:
        c.send(b"GET /d?dn=" + b"a" * (97 * 1024))
        r = c.response()
        assert r.status == 431
        assert r.headers["content-type"] == "application/json"
        assert json.loads(r.body)["error"] == "header_too_large"
        assert c.at_eof()
    finally:
        c.close()
    assert one(server.port, get(f"/d?dn={SHOP}")).status == 200


def test_a_long_doh_get_below_the_limit_is_answered(server: FastNode) -> None:
    # a query padded with an EDNS padding option to ~40 KiB of base64
    q = dns.message.make_query(SHOP, "A", use_edns=0, pad=30000)
    wire = q.to_wire(max_size=65535)
    assert len(wire) >= 30000
    r = one(server.port, get(f"/dns-query?dns={b64(wire)}"))
    assert r.status == 200, r.body[:200]
    assert dns.message.from_wire(r.body).id == q.id


@pytest.mark.parametrize(
    "line",
    [b"BLAH", b"GET", b"GET /d?dn=x HTTP/1.1 extra", b"\x16\x03\x01\x02\x00\x01\x00"],
)
def test_a_garbage_request_line_gets_a_4xx(server: FastNode, line: bytes) -> None:
    c = Conn.open(server.port)
    try:
        c.send(line + b"\r\nHost: x\r\n\r\n")
        r = c.response()
        assert 400 <= r.status < 500, r
    finally:
        c.close()
    assert one(server.port, get(f"/d?dn={SHOP}")).status == 200


def test_a_garbage_request_line_gets_a_json_error(server: FastNode) -> None:
    r = one(server.port, b"BLAH\r\nHost: x\r\n\r\n")
    assert r.status == 400
    assert r.headers["content-type"] == "application/json"


def test_post_with_a_wrong_media_type_is_415_json(server: FastNode) -> None:
    r = one(server.port, post("/dns-query", doh_wire(SHOP), "application/json"))
    assert r.status == 415
    assert json.loads(r.body)["error"] == "unsupported_media_type"


# -- the front cache -------------------------------------------------------------------------


def move_to(server: FastNode, dc: str) -> None:
    status, body = admin_call(
        server.base, "PUT", f"/api/v1/services/{MOVE}/traffic", {"default": {dc: 100}}
    )
    assert status == 200, body


def test_same_request_same_bytes_and_a_change_is_seen_next(server: FastNode) -> None:
    paths = [
        f"/d?dn={MOVE}",
        f"/{ACCOUNT}/d?host={MOVE}",
        f"/resolve?name={MOVE}&type=A",
        f"/dns-query?dns={b64(doh_wire(MOVE, qid=9))}",
    ]
    move_to(server, "idc")
    c = Conn.open(server.port)
    try:
        for p in paths:
            c.send(get(p) + get(p))
            a, b = c.response(), c.response()
            assert without_date(a) == without_date(b), p
            assert MOVE_ADDR["idc"].encode() in a.body or p.startswith("/dns-query")
        move_to(server, "cloud")
        for p in paths:
            c.send(get(p))
            r = c.response()
            if p.startswith("/dns-query"):
                m = dns.message.from_wire(r.body)
                assert [rd.address for rrset in m.answer for rd in rrset] == [MOVE_ADDR["cloud"]]
            else:
                assert MOVE_ADDR["cloud"].encode() in r.body, (p, r.body)
                assert MOVE_ADDR["idc"].encode() not in r.body, (p, r.body)
    finally:
        c.close()
        move_to(server, "idc")


def test_a_new_service_replaces_a_cached_empty_answer(server: FastNode) -> None:
    name = "later.example.org"
    path = f"/d?dn={name}"
    c = Conn.open(server.port)
    try:
        c.send(get(path) + get(path))
        assert c.response().body == b"" and c.response().body == b""
        api = f"/api/v1/services/{name}"
        body = {"access": "ro", "ttl": 20, "traffic": {"default": {"idc": 100}}}
        assert admin_call(server.base, "PUT", api, body)[0] == 201
        ep = {"dc": "idc", "address": "192.0.2.66", "port": 443}
        assert admin_call(server.base, "PUT", f"{api}/endpoints/e", ep)[0] == 201
        c.send(get(path))
        assert c.response().body == b"192.0.2.66"
        assert admin_call(server.base, "DELETE", api)[0] == 200
        c.send(get(path))
        assert c.response().body == b""
    finally:
        c.close()


@pytest.mark.parametrize("path", [f"/d?dn={SHOP}&clientip=1", f"/{ACCOUNT}/d?host={SHOP}"])
def test_answers_carrying_the_caller_address_are_not_shared(server: FastNode, path: str) -> None:
    conns = {src: Conn.open(server.port, src) for src in ("127.0.0.2", "127.0.0.3")}
    try:
        for _ in range(3):
            for src, c in conns.items():
                c.send(get(path))
                r = c.response()
                assert r.status == 200
                if "clientip" in path:
                    assert r.body.endswith(b"|" + src.encode()), (src, r.body)
                else:
                    assert json.loads(r.body)["client_ip"] == src
        # a fresh connection from each address, too
        for src in conns:
            assert src.encode() in one(server.port, get(path), src).body
    finally:
        for c in conns.values():
            c.close()


def test_a_cached_signed_answer_expires_with_its_signature(server: FastNode) -> None:
    t = int(time.time()) + 2
    sig = hashlib.md5(f"{SHOP}-{SIGNED_SECRET}-{t}".encode()).hexdigest()
    path = f"/{SIGNED_ACCOUNT}/sign_d?" + urllib.parse.urlencode({"host": SHOP, "t": t, "s": sig})
    assert one(server.port, get(path)).status == 200
    wait_until(lambda: time.time() > t + 1.1, 10, "the signature to expire")
    # a slightly different target (not cached) is refused...
    assert one(server.port, get(path + "&x=1")).status == 403
    # ...and so must be the one answered before
    r = one(server.port, get(path))
    assert r.status == 403, r.body
    assert json.loads(r.body)["code"] == "SignatureExpired"


def uid_in_bucket_of(ip: str) -> str:
    """A device id whose steering bucket is the bucket of ``ip``'s /24 key."""
    target = bucket(Client.of(ip).key)
    return next(f"dev{i}" for i in range(1 << 22) if bucket(f"uid:dev{i}") == target)


def test_doh_ecs_scope_is_not_shared_between_uid_and_address_clients(server: FastNode) -> None:
    subnet = "10.77.88.0"
    uid = uid_in_bucket_of(subnet)
    q = dns.message.make_query(SHOP, "A", use_edns=0, options=[dns.edns.ECSOption(subnet, 24)])
    q.id = 0
    path = f"/dns-query?dns={b64(q.to_wire())}"

    def scope(r: Response) -> int:
        assert r.status == 200, r.body
        m = dns.message.from_wire(r.body)
        assert m.answer
        (ecs,) = (o for o in m.options if isinstance(o, dns.edns.ECSOption))
        return int(ecs.scopelen)

    assert scope(one(server.port, get(path + f"&uid={uid}"))) == 0  # keyed by the device id
    assert scope(one(server.port, get(path))) == 24  # keyed by the /24 of the subnet


def test_date_header_on_fresh_and_cached_answers(server: FastNode) -> None:
    c = Conn.open(server.port)
    try:
        c.send(get(f"/d?dn={SHOP}") + get(f"/d?dn={SHOP}") + get("/healthz"))
        for r in (c.response(), c.response(), c.response()):
            when = email.utils.parsedate_to_datetime(r.headers["date"])
            assert abs(when.timestamp() - time.time()) < 10
            assert r.headers["date"].endswith("GMT")
    finally:
        c.close()


# -- HTTPS -----------------------------------------------------------------------------------


def tls_conn(server: FastNode) -> Conn:
    ctx = ssl.create_default_context(cafile=str(server.ca))
    raw = socket.create_connection(("127.0.0.1", server.https_port), timeout=TIMEOUT)
    return Conn(ctx.wrap_socket(raw, server_hostname="127.0.0.1"))


def test_https_pipelining_hand_off_and_cache(server: FastNode) -> None:
    c = tls_conn(server)
    try:
        paths = [f"/d?dn={SHOP}", f"/d?dn={SHOP}", f"/dns-query?dns={b64(doh_wire(PAY, qid=5))}"]
        c.send(b"".join(get(p) for p in paths))
        rs = [c.response() for _ in paths]
        assert [r.status for r in rs] == [200, 200, 200]
        assert rs[0].body == rs[1].body == one(server.port, get(f"/d?dn={SHOP}")).body
        assert "server" not in rs[0].headers  # the fast path, over TLS
        assert dns.message.from_wire(rs[2].body).id == 5
        c.send(get("/api/v1/state", "Authorization: Bearer T") + get(f"/d?dn={PAY}"))
        state, d = c.response(), c.response()
        assert state.status == 200 and PAY in state.json()["services"]  # type: ignore[index]
        assert d.status == 200 and d.body == one(server.port, get(f"/d?dn={PAY}")).body
        c.send(get(f"/d?dn={SHOP}&clientip=1", "Connection: close"))
        r = c.response()
        assert r.body.endswith(b"|127.0.0.1")
        assert r.headers.get("connection", "").lower() == "close"
    finally:
        c.close()


def test_https_doh_post(server: FastNode) -> None:
    c = tls_conn(server)
    try:
        wire = doh_wire(SHOP, qid=0x0F0F)
        c.send(post("/dns-query", wire, "application/dns-message"))
        r = c.response()
    finally:
        c.close()
    assert r.status == 200
    m = dns.message.from_wire(r.body)
    assert m.id == 0x0F0F
    assert ";".join(rd.address for rrset in m.answer for rd in rrset).encode() == (
        one(server.port, get(f"/d?dn={SHOP}")).body
    )
