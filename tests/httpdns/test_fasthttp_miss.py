"""The fast path's miss (issue 20): the query string parser for plain targets agrees with
``parse_qsl`` or steps aside, and targets naming their client address enter the front
cache on their second request only. ``FastServer.respond`` is driven directly."""

from __future__ import annotations

import asyncio
import gc
from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from httpdns.config import Config
from httpdns.dialects import Context
from httpdns.fasthttp import FastHTTP, FastServer, _params, _plain_params
from httpdns.routes import QUERY_ROUTES, Router
from httpdns.table import RoutingTable
from registry.changes import Change
from registry.model import Datacenter, Endpoint, Service
from registry.snapshot import Snapshot
from tests.fakes import FakeTransport

NAME = "api.example.org"
HEADERS = b"\r\nhost: test\r\n"


def _reference(query: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        out.setdefault(k, v)
    return out


@given(st.binary(max_size=80))
def test_plain_parser_agrees_or_steps_aside_on_any_bytes(query: bytes) -> None:
    got = _plain_params(query)
    assert got is None or got == _reference(query)
    assert _params(query) == _reference(query)


_PIECE = st.text(alphabet="abcdefghijklmnop0123456789.:_-=&%+; ", max_size=12)


@given(st.lists(st.tuples(_PIECE, _PIECE), max_size=6), st.booleans())
def test_plain_parser_agrees_on_query_like_strings(pairs: list[tuple[str, str]], eq: bool) -> None:
    query = "&".join(f"{k}={v}" if eq or v else k for k, v in pairs).encode()
    got = _plain_params(query)
    assert got is None or got == _reference(query)
    if b"%" not in query and b"+" not in query:
        assert got is not None  # a plain query string never needs the general parser


def test_the_usual_target_takes_the_plain_parser() -> None:
    assert _plain_params(b"dn=api.example.org&ip=11.2.3.4&ttl=1") == {
        "dn": "api.example.org",
        "ip": "11.2.3.4",
        "ttl": "1",
    }
    assert _plain_params(b"dn=api.example.org&ip=11.2.3.4%20") is None


def _server() -> FastServer:
    changes = [Change.put(Datacenter("idc")), Change.put(Service(NAME, {"default": {"idc": 1}}))]
    changes += [Change.put(Endpoint(NAME, f"e{i}", "idc", f"192.0.2.{i + 1}")) for i in range(3)]
    snap, _ = Snapshot().apply(changes, 1)
    context = Context(RoutingTable(snap), Config())
    return FastServer(context, QUERY_ROUTES, lambda: None)  # type: ignore[arg-type,return-value]


def _ask(fast: FastServer, target: bytes) -> tuple[bytes, bool]:
    found = Router(QUERY_ROUTES).match(b"GET", target.partition(b"?")[0])
    assert found is not None
    head, tail, kept = fast.respond(found[0], found[1], b"GET", target, HEADERS, b"", "10.0.0.1")
    assert head.startswith(b"HTTP/1.1 200")
    return tail.partition(b"\r\n\r\n")[2], kept is not None


def test_a_target_with_a_client_address_is_kept_from_its_second_request() -> None:
    fast = _server()
    target = f"/d?dn={NAME}&ip=11.2.3.4".encode()
    first, hit = _ask(fast, target)
    assert not hit and len(fast.cache) == 0  # asked once: not kept
    second, hit = _ask(fast, target)
    assert not hit and len(fast.cache) == 1  # asked again: kept now
    third, hit = _ask(fast, target)
    assert hit  # and answered from the front cache
    assert first == second == third != b""
    _, hit = _ask(fast, f"/d?dn={NAME}&ip=11.2.4.4".encode())
    assert not hit and len(fast.cache) == 1


def test_a_target_without_a_client_address_is_kept_at_once() -> None:
    fast = _server()
    target = f"/d?dn={NAME}".encode()
    _ask(fast, target)
    assert len(fast.cache) == 1
    assert _ask(fast, target)[1]


def test_escaped_and_plain_targets_get_the_same_answer() -> None:
    fast = _server()
    plain, _ = _ask(fast, f"/d?dn={NAME}&ip=11.2.3.4&ttl=1".encode())
    escaped, _ = _ask(fast, f"/d?dn={NAME.replace('.', '%2E')}&ip=11.2.3.4&ttl=%31".encode())
    assert plain == escaped and plain.endswith(b",60")


@pytest.mark.parametrize(
    "data",
    [
        b"GET /d?dn=api.example.org&ip=11.2.3.4 HTTP/1.1\r\nHost: t\r\n\r\n",  # the plain GET
        b"GET /d?dn=api.example.org HTTP/1.1\r\nHost: t\r\n\r\n" * 2,  # llhttp: pipelined
        b"GET /api/v1/services HTTP/1.1\r\nHost: t\r\n\r\n",  # handed off to the application
    ],
)
def test_a_closed_connection_is_freed_without_the_garbage_collector(data: bytes) -> None:
    fast = _server()
    fast.slow = asyncio.Protocol
    gc.collect()
    gc.disable()  # what is left after ``del`` is a cycle only the collector frees
    try:
        conn = FastHTTP(fast)
        transport = FakeTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        conn.data_received(data)
        assert transport.writes or isinstance(transport.protocol, asyncio.Protocol)
        if transport.protocol is None:
            conn.connection_lost(None)
        del conn, transport
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        assert not [o for o in gc.garbage if isinstance(o, FastHTTP)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
