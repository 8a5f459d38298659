"""The fast path's lane for AES-encrypted ``/d`` (``httpdns.dialects.dnspod_lane``): its
answers equal the dialect function's (the full path) byte for byte but for the
ciphertext, its cache of plaintext answers is bounded, keyed per account and per
decrypted request, follows registry changes and holds no key material, and everything
it does not serve (DES, plain, malformed) is left to the full path."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from httpdns.dialects import Context, Query, Reply, resolve_d
from httpdns.dialects.dnspod_crypto import codec, decrypt_hex, encrypt_hex, unpad
from httpdns.dialects.dnspod_lane import Lane
from httpdns.fasthttp import FastServer
from httpdns.routes import QUERY_ROUTES, Route
from registry.changes import Change
from registry.model import Endpoint

from .test_dnspod_crypto import (
    ACCOUNTS,
    AES256_KEY,
    AES_ID,
    AES_KEY,
    BOTH_ID,
    CONTEXT,
    DES_ID,
    DES_KEY,
    NAME,
    V4,
    _table,
)

PEER = "203.0.113.9"
AES = codec("aes", AES_KEY.encode())
AES256 = codec("aes", AES256_KEY.encode())


def _server(ctx: Context = CONTEXT, lanes: bool = True) -> tuple[FastServer, Route]:
    server = FastServer(ctx, QUERY_ROUTES, asyncio.Protocol)
    if not lanes:
        server.lanes = {}
    found = server.router.match(b"GET", b"/d")
    assert found is not None
    return server, found[0]


def _lane(server: FastServer) -> Lane:
    return server.lanes[resolve_d]


def _target(account: str = AES_ID, **params: str) -> bytes:
    c = AES256 if account == BOTH_ID else AES
    sent = {k: encrypt_hex(c, v) if k in ("dn", "ip") else v for k, v in params.items()}
    query = "&".join(f"{k}={v}" for k, v in {**sent, "id": account, "alg": "aes"}.items())
    return f"/d?{query}".encode()


def _get(server: FastServer, route: Route, target: bytes) -> tuple[bytes, bytes]:
    """(status line and headers, body) of one request; it is never kept by the front caches."""
    head, tail, kept = server.respond(route, None, b"GET", target, b"", b"", PEER)
    assert kept is None
    headers, _, body = (head + tail).partition(b"\r\n\r\n")
    return headers, body


def _plain(**params: str) -> bytes:
    reply = resolve_d(Query(params=params, peer=PEER), CONTEXT)
    assert reply.status == 200
    return reply.body


@pytest.mark.parametrize(
    "params",
    [
        {"dn": NAME},
        {"dn": NAME, "ttl": "1"},
        {"dn": NAME, "ttl": "1", "type": "aaaa"},
        {"dn": NAME, "ttl": "1", "type": "addrs", "clientip": "1"},
        {"dn": NAME, "ip": "198.51.100.7", "ttl": "1", "query": "1"},
        {"dn": NAME.upper() + ".", "ip": "2001:db8:9::1", "ttl": "1"},
    ],
)
def test_lane_answers_equal_the_full_path(params: dict[str, str]) -> None:
    fast, route = _server()
    full, _ = _server(lanes=False)
    target = _target(**params)
    head, body = _get(fast, route, target)
    assert len(_lane(fast).cache) == 1  # the lane answered
    full_head, full_body = _get(full, route, target)
    assert head == full_head  # status, Content-Type, Content-Length, CORS, no-store
    assert b"Cache-Control: no-store" in head
    assert decrypt_hex(AES, body.decode()) == decrypt_hex(AES, full_body.decode())
    assert decrypt_hex(AES, body.decode()).encode() == _plain(**params)
    assert fast.cache.get((target, PEER, None)) is None  # never in the front cache


def test_lane_keeps_one_plaintext_answer_per_decrypted_request() -> None:
    server, route = _server()
    lane = _lane(server)
    calls: list[Query] = []

    def plain(q: Query, ctx: Context) -> Reply:
        calls.append(q)
        return resolve_d(q, ctx)

    lane.plain = plain
    bodies = set()
    for _ in range(5):  # a fresh IV each time, as clients send them
        head, body = _get(server, route, _target(dn=NAME, ttl="1"))
        assert head.startswith(b"HTTP/1.1 200 ")
        assert decrypt_hex(AES, body.decode()).encode() == _plain(dn=NAME, ttl="1")
        bodies.add(body)
    assert len(bodies) == 5  # a fresh ciphertext for every reply
    assert len(calls) == 1 and len(lane.cache) == 1  # answered once, then from the cache
    _get(server, route, _target(dn=NAME, ttl="1", type="aaaa"))
    assert len(calls) == 2 and len(lane.cache) == 2
    assert server.last == ("dnspod", "NOERROR", (lane.cache.items()[1][1][2].answers))  # a miss
    assert server.stats.misses.get("dnspod") == 2  # each computed answer counted once
    _get(server, route, _target(dn=NAME, ttl="1"))
    cell = lane.cache.items()[0][1][2]
    assert cell.n == 5  # and every hit in the metrics cell its entry holds
    assert server.last is cell


def test_lane_cache_is_bounded_by_entries_and_bytes() -> None:
    server, route = _server()
    lane = Lane(server, route, resolve_d, max_entries=3, max_bytes=10_000)
    server.lanes[resolve_d] = lane
    for i in range(6):
        _get(server, route, _target(dn=NAME, ip=f"198.51.100.{i}"))
    assert len(lane.cache) == 3
    ips = [unpad(key[2], 16).decode() for key, _ in lane.cache.items()]  # kept padded
    assert ips == ["198.51.100.3", "198.51.100.4", "198.51.100.5"]  # the oldest went first
    small = Lane(server, route, resolve_d, max_entries=1000, max_bytes=1000)
    server.lanes[resolve_d] = small
    for i in range(20):
        _get(server, route, _target(dn=NAME, ip=f"198.51.100.{i}", uid="u" * 100))
    assert 0 < len(small.cache) < 10 and small.cache.bytes <= 1000


def test_lane_cache_is_keyed_per_account_and_holds_no_key_material() -> None:
    server, route = _server()
    lane = _lane(server)
    sent = [_target(AES_ID, dn=NAME, ttl="1"), _target(BOTH_ID, dn=NAME, ttl="1")]
    for target in sent:
        assert _get(server, route, target)[0].startswith(b"HTTP/1.1 200 ")
    assert {key[0].decode() for key, _ in lane.cache.items()} == {AES_ID, BOTH_ID}
    text = repr(lane.cache.items())
    for secret in (AES_KEY, AES256_KEY, AES_KEY.encode().hex(), AES256_KEY.encode().hex()):
        assert secret not in text
    for target in sent:  # nor the ciphertexts: they never repeat
        assert target.decode().split("dn=")[1].split("&")[0] not in text


def test_lane_answers_follow_registry_changes() -> None:
    table = _table()
    server, route = _server(Context(table, CONTEXT.config))

    def answer() -> set[str]:
        _, body = _get(server, route, _target(dn=NAME))
        return set(decrypt_hex(AES, body.decode()).split(";"))

    assert answer() <= set(V4)
    moved = [
        Change.put(Endpoint.from_dict(NAME, f"e{i}", {"dc": "idc", "address": f"192.0.2.{50 + i}",
                                                      "port": 443, "version": "v1"}))
        for i in range(len(V4))
    ]  # fmt: skip
    snapshot = table.snapshot
    new, _ = snapshot.apply(moved, snapshot.revision + 1)
    table.update(new, frozenset({NAME}))
    assert answer() <= {"192.0.2.50", "192.0.2.51", "192.0.2.52"}


@pytest.mark.parametrize(
    "target",
    [
        b"/d?dn=" + encrypt_hex(codec("des", DES_KEY.encode()), NAME).encode() + b"&id=" + DES_ID.encode(),
        b"/d?dn=" + NAME.encode(),
        b"/d?dn=" + NAME.encode() + b"&alg=aes",
        b"/d?dn=00&id=" + AES_ID.encode() + b"&alg=aes",  # bad ciphertext
        b"/d?dn=00&id=9999&alg=aes",  # unknown account
        b"/d?dn=00&id=" + DES_ID.encode() + b"&alg=aes",  # no AES key
        b"/d?dn=" + encrypt_hex(AES, "www.example.net").encode() + b"&id=" + AES_ID.encode()
        + b"&alg=aes",  # not served here: an empty 200
        b"/d?dn=" + encrypt_hex(AES, NAME).encode() + b"&id=" + AES_ID.encode()
        + b"&alg=aes&type=mx",  # decrypted, then refused
        b"/d?dn=" + encrypt_hex(AES, NAME).encode() + b"&id=" + AES_ID.encode()
        + b"&alg=%61es",  # escapes: parse_qsl's business
        b"/d?dn=" + encrypt_hex(AES, NAME).encode() + b"&id=" + AES_ID.encode()
        + b"&alg=aes&d%6E=" + encrypt_hex(AES, "www.example.net").encode(),  # an escaped dn
        b"/d?dn=" + encrypt_hex(AES, NAME).encode() + b"&id=%" + b"%02X" % AES_ID.encode()[0]
        + AES_ID.encode()[1:] + b"&alg=aes",  # an escaped id
        b"/d?dn=%" + encrypt_hex(AES, NAME).encode().hex().upper()[:2].encode()
        + encrypt_hex(AES, NAME).encode()[1:] + b"&id=" + AES_ID.encode()
        + b"&alg=aes",  # an escaped hex digit
        b"/d?dn=" + encrypt_hex(AES, NAME).encode() + b"&id=" + AES_ID.encode()
        + b"&alg=aes&ttl=1+",  # a "+" (a space) in another parameter
    ],
)  # fmt: skip
def test_lane_leaves_everything_else_to_the_full_path(
    target: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    server, route = _server()
    lane = _lane(server)
    query = target.partition(b"?")[2]
    with caplog.at_level(logging.DEBUG):
        assert lane(query, PEER, None) is None
        full, _ = _server(lanes=False)
        assert _answer(server, route, target) == _answer(full, route, target)
    assert len(lane.cache) == 0
    assert AES_KEY not in caplog.text and DES_KEY not in caplog.text


def _answer(server: FastServer, route: Route, target: bytes) -> tuple[bytes, bytes | str]:
    """The status line and the body (decrypted when it is an answer to AES account AES_ID)."""
    head, body = _get(server, route, target)
    status = head.split(b"\r\n")[0]
    aes = b"id=" + AES_ID.encode() in target or b"id=%" in target  # (escaped: AES_ID too)
    if aes and status.endswith(b"200 OK") and body:
        return status, decrypt_hex(AES, body.decode())
    return status, body


HEX_ISH = st.text(alphabet="0123456789abcdefABCDEF", max_size=120) | st.text(max_size=40)


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    dn=st.sampled_from([NAME, "www.example.net", "not a name!", ""]) | HEX_ISH,
    ip=st.none() | st.sampled_from(["198.51.100.7", "bad ip"]) | HEX_ISH,
    extra=st.dictionaries(st.sampled_from(["ttl", "type", "clientip", "query", "uid", "dn"]),
                          st.text(alphabet="1aA%+=&;x", max_size=6), max_size=3),
)  # fmt: skip
def test_lane_and_full_path_agree_on_any_request(
    dn: str, ip: str | None, extra: dict[str, str]
) -> None:
    params: dict[str, Any] = {"dn": dn if not dn or " " in dn else encrypt_hex(AES, dn)}
    if ip is not None:
        params["ip"] = encrypt_hex(AES, ip) if "." in ip or " " in ip else ip
    params.update(extra)
    params.update({"id": AES_ID, "alg": "aes"})
    target = ("/d?" + "&".join(f"{k}={v}" for k, v in params.items())).encode("utf-8")
    fast, route = _server()
    full, _ = _server(lanes=False)
    got = _answer(fast, route, target)
    assert got == _answer(full, route, target)
    assert got[0].split(b" ")[1] in (b"200", b"400", b"403", b"404")


def test_the_node_config_reaches_the_lane() -> None:
    config = dataclasses.replace(CONTEXT.config, dnspod={AES_ID: ACCOUNTS[AES_ID]})
    server, route = _server(Context(_table(), config))
    assert _get(server, route, _target(AES_ID, dn=NAME))[0].startswith(b"HTTP/1.1 200 ")
    assert _lane(server)(_target(BOTH_ID, dn=NAME).partition(b"?")[2], PEER, None) is None


def test_a_repeated_parameter_counts_once_its_first_value_as_on_the_full_path() -> None:
    fast, route = _server()
    full, _ = _server(lanes=False)
    target = _target(dn=NAME, ttl="1") + b"&ttl=0&dn=" + encrypt_hex(AES, "x.example.org").encode()
    got = _answer(fast, route, target)
    assert len(_lane(fast).cache) == 1
    assert got == _answer(full, route, target)
    assert got[1] == _plain(dn=NAME, ttl="1").decode()
