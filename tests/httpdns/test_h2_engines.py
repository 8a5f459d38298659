"""Both HTTP/2 engines (``httpdns.http2.H2Protocol`` on the h2 package and
``httpdns.h2native.NativeH2Protocol`` on libnghttp2) driven in-process by an ``h2``
client over a recording transport: answers equal to the HTTP/1.1 path's, the limits
(streams, header list, body, flow control, back-pressure, timeouts, rapid reset) and
hostile bytes (garbage before or after the preface, random frames, fuzzed with
hypothesis: never an exception, never a hang). What the native engine does differently is
tested for it alone: a 431 for an oversized header list and an answer to an 80 KB DoH GET,
where the h2 engine ends the connection; an oversized frame ends it at once."""

from __future__ import annotations

import asyncio
import gc
import struct
import sys
import time
from typing import Any

import dns.edns
import dns.message
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from httpdns import h2native, http2
from httpdns.fasthttp import MAX_BODY, MAX_HEAD, FastHTTP, FastServer, Limits
from httpdns.h2native import NativeH2Protocol
from httpdns.http2 import H2Protocol
from httpdns.routes import QUERY_ROUTES
from tests.fakes import FakeTransport

from .test_fuzz import CONTEXT, FUZZ, SHOP, FakeSlow, b64url

ENGINES = [pytest.param(NativeH2Protocol, id="native"), pytest.param(H2Protocol, id="h2")]
Engine = type[NativeH2Protocol] | type[H2Protocol]
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Wire:
    """One server connection of ``engine`` and an ``h2`` client talking to it."""

    def __init__(self, engine: Engine, limits: Limits | None = None) -> None:
        self.server = FastServer(CONTEXT, QUERY_ROUTES, FakeSlow, limits)
        self.protocol = engine(self.server)
        self.transport = FakeTransport()
        self.protocol.connection_made(self.transport)  # type: ignore[arg-type]
        self.client = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.client.initiate_connection()
        self.seen = 0  # transport writes the client has read
        self.bodies: dict[int, bytes] = {}
        self.statuses: dict[int, bytes] = {}
        self.headers: dict[int, dict[bytes, bytes]] = {}
        self.ended: set[int] = set()
        self.resets: dict[int, int] = {}
        self.goaway: int | None = None

    def send(self, raw: bytes | None = None) -> None:
        """The client's pending frames (or ``raw``) to the server."""
        data = self.client.data_to_send() if raw is None else raw
        if data and not self.transport.closed:
            self.protocol.data_received(data)

    def receive(self) -> list[h2.events.Event]:
        """What the server wrote since, through the client (recorded in the dicts)."""
        data = b"".join(self.transport.writes[self.seen :])
        self.seen = len(self.transport.writes)
        try:
            events = self.client.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            raise AssertionError(f"the server wrote bad HTTP/2: {exc}") from exc
        for e in events:
            if isinstance(e, h2.events.ResponseReceived):
                self.headers[e.stream_id] = dict(e.headers or ())
                self.statuses[e.stream_id] = self.headers[e.stream_id][b":status"]
            elif isinstance(e, h2.events.DataReceived):
                self.bodies[e.stream_id] = self.bodies.get(e.stream_id, b"") + (e.data or b"")
                if e.flow_controlled_length:
                    self.client.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            elif isinstance(e, h2.events.StreamEnded):
                self.ended.add(e.stream_id)
            elif isinstance(e, h2.events.StreamReset):
                self.resets[e.stream_id] = int(e.error_code or 0)
            elif isinstance(e, h2.events.ConnectionTerminated):
                self.goaway = int(e.error_code or 0)
        return events

    def exchange(self) -> None:
        """Client to server, server to client, until neither has anything more to say."""
        for _ in range(1000):
            data = self.client.data_to_send()
            self.send(data)
            fresh = len(self.transport.writes) > self.seen
            self.receive()
            if not data and not fresh:
                return
        raise AssertionError("the exchange does not settle")

    def get(
        self, sid: int, path: str, end: bool = True, extra: dict[str, str] | None = None
    ) -> None:
        headers = [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"),
                   (":path", path), *(extra or {}).items()]  # fmt: skip
        self.client.send_headers(sid, headers, end_stream=end)


def doh_path(name: str = SHOP, rdtype: str = "A") -> str:
    q = dns.message.make_query(name, rdtype)
    q.id = 0
    return "/dns-query?dns=" + b64url(q.to_wire())


def http1_body(path: str) -> bytes:
    """The HTTP/1.1 path's answer to a GET of ``path`` (the reference)."""
    transport = FakeTransport()
    fast = FastHTTP(FastServer(CONTEXT, QUERY_ROUTES, FakeSlow))
    fast.connection_made(transport)  # type: ignore[arg-type]
    fast.data_received(f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
    (raw,) = transport.writes
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), raw
    return body


# -- answers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
async def test_doh_get_and_json_answer_as_over_http1(engine: Engine) -> None:
    wire = Wire(engine)
    paths = {1: doh_path(), 3: doh_path(SHOP, "AAAA"), 5: f"/resolve?name={SHOP}&type=A"}
    for sid, path in paths.items():
        wire.get(sid, path)
    wire.exchange()
    assert wire.ended == set(paths)
    for sid, path in paths.items():
        assert wire.statuses[sid] == b"200"
        assert wire.bodies[sid] == http1_body(path)
        assert int(wire.headers[sid][b"content-length"]) == len(wire.bodies[sid])
        assert b"connection" not in wire.headers[sid]  # connection-specific: not in HTTP/2
    assert wire.headers[1][b"content-type"] == b"application/dns-message"
    assert dns.message.from_wire(wire.bodies[1]).answer
    assert not wire.transport.closed


@pytest.mark.parametrize("engine", ENGINES)
async def test_doh_post_with_its_content_type(engine: Engine) -> None:
    wire = Wire(engine)
    q = dns.message.make_query(SHOP, "A")
    headers = [(":method", "POST"), (":scheme", "https"), (":authority", "localhost"),
               (":path", "/dns-query"), ("content-type", "application/dns-message")]  # fmt: skip
    wire.client.send_headers(1, headers)
    wire.client.send_data(1, q.to_wire(), end_stream=True)
    wire.client.send_headers(3, [*headers[:4], ("content-type", "text/plain")])
    wire.client.send_data(3, q.to_wire(), end_stream=True)
    wire.exchange()
    assert wire.statuses[1] == b"200"
    assert dns.message.from_wire(wire.bodies[1]).id == q.id
    assert wire.statuses[3] == b"415"
    assert orjson.loads(wire.bodies[3])["error"]


@pytest.mark.parametrize("engine", ENGINES)
async def test_other_routes_are_refused_with_http_1_1_required(engine: Engine) -> None:
    wire = Wire(engine)
    wire.get(1, "/api/v1/state")
    wire.get(3, doh_path())
    wire.exchange()
    assert wire.resets == {1: h2.errors.ErrorCodes.HTTP_1_1_REQUIRED}
    assert wire.statuses[3] == b"200"


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_response_waits_for_the_peers_window(engine: Engine) -> None:
    wire = Wire(engine)
    wire.client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 7})
    wire.get(1, f"/resolve?name={SHOP}&type=AAAA")
    wire.send()
    wire.receive()
    assert wire.bodies.get(1, b"") and len(wire.bodies[1]) <= 7 and 1 not in wire.ended
    wire.exchange()  # each DATA acknowledged returns 7 bytes of window
    assert 1 in wire.ended
    assert wire.bodies[1] == http1_body(f"/resolve?name={SHOP}&type=AAAA")


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_peer_that_does_not_read_is_not_read(engine: Engine) -> None:
    wire = Wire(engine)
    wire.protocol.pause_writing()
    assert not wire.transport.reading
    wire.protocol.resume_writing()
    assert wire.transport.reading


# -- limits -------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
async def test_settings_advertise_the_limits(engine: Engine) -> None:
    wire = Wire(engine)
    events = wire.receive()
    (changed,) = [e for e in events if isinstance(e, h2.events.RemoteSettingsChanged)]
    got = {int(k): v.new_value for k, v in changed.changed_settings.items()}
    assert got[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 100
    assert got[h2.settings.SettingCodes.MAX_FRAME_SIZE] == 16384
    assert got[h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE] == MAX_HEAD


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_body_over_a_dns_message_is_413_and_the_connection_goes_on(
    engine: Engine,
) -> None:
    wire = Wire(engine)
    wire.client.update_settings({h2.settings.SettingCodes.MAX_FRAME_SIZE: 1 << 20})
    wire.exchange()  # windows: the server's initial 64 KiB less one byte
    headers = [(":method", "POST"), (":scheme", "https"), (":authority", "localhost"),
               (":path", "/dns-query"), ("content-type", "application/dns-message")]  # fmt: skip
    wire.client.send_headers(1, headers)
    sent = 0
    while sent <= MAX_BODY and 1 not in wire.statuses:  # the window comes back as it is read
        room = min(wire.client.local_flow_control_window(1), 16384)
        assert room > 0, "the server stopped returning the window"
        wire.client.send_data(1, b"\0" * room)
        sent += room
        wire.send()
        wire.receive()
    assert wire.statuses[1] == b"413", MAX_BODY
    assert orjson.loads(wire.bodies[1])["error"] == "payload_too_large"
    wire.get(3, doh_path())
    wire.exchange()
    assert wire.statuses[3] == b"200"


@pytest.mark.parametrize("engine", ENGINES)
async def test_rapid_reset_gets_enhance_your_calm_and_costs_no_answers(engine: Engine) -> None:
    wire = Wire(engine)
    for i in range(300):
        wire.get(1 + 2 * i, doh_path())
        wire.client.reset_stream(1 + 2 * i, h2.errors.ErrorCodes.CANCEL)
    wire.send()
    wire.receive()
    assert wire.goaway == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert wire.transport.closed
    assert not wire.statuses  # every stream was reset before it was seen whole


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_few_resets_are_fine(engine: Engine) -> None:
    wire = Wire(engine)
    for i in range(50):
        wire.get(1 + 2 * i, doh_path())
        wire.client.reset_stream(1 + 2 * i, h2.errors.ErrorCodes.CANCEL)
    wire.get(101, doh_path())
    wire.exchange()
    assert wire.goaway is None and wire.statuses == {101: b"200"}


async def test_native_an_oversized_header_list_is_431_and_the_connection_goes_on() -> None:
    """The h2 engine ends the connection (its decoder's limit); the native one answers 431."""
    wire = Wire(NativeH2Protocol)
    wire.exchange()
    big = {f"x-pad-{i}": "v" * 8000 for i in range(MAX_HEAD // 8000 + 2)}
    wire.get(1, doh_path(), extra=big)
    wire.get(3, doh_path())
    wire.exchange()
    assert wire.statuses == {1: b"431", 3: b"200"}
    assert orjson.loads(wire.bodies[1])["error"] == "header_too_large"
    assert wire.goaway is None


async def test_native_a_doh_get_of_a_near_64k_message_is_answered() -> None:
    """An 80 KB ``:path`` (within ``MAX_HEAD``, as over HTTP/1.1); the h2 engine's HPACK
    decoder refuses so long a field and ends the connection."""
    pad = dns.edns.GenericOption(dns.edns.PADDING, bytes(60_000))
    q = dns.message.make_query(SHOP, "A", use_edns=0, payload=65535, options=[pad])
    path = "/dns-query?dns=" + b64url(q.to_wire())
    assert 80_000 < len(path) < MAX_HEAD
    wire = Wire(NativeH2Protocol)
    wire.exchange()
    wire.get(1, path)
    wire.exchange()
    assert wire.statuses == {1: b"200"}
    assert dns.message.from_wire(wire.bodies[1]).id == q.id


async def test_native_a_failing_answer_is_that_streams_500_alone() -> None:
    wire = Wire(NativeH2Protocol)
    respond = wire.server.respond

    def flaky(*args: Any) -> tuple[bytes, bytes, Any]:
        if b"type=AAAA" in args[3]:
            raise ValueError("a bug")
        return respond(*args)

    wire.server.respond = flaky  # type: ignore[method-assign]
    wire.get(1, f"/resolve?name={SHOP}&type=AAAA")
    wire.get(3, f"/resolve?name={SHOP}&type=A")
    wire.exchange()
    assert wire.statuses == {1: b"500", 3: b"200"}
    assert orjson.loads(wire.bodies[1])["error"] == "internal"


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_stream_beyond_the_limit_is_a_connection_error(engine: Engine) -> None:
    """RFC 9113 §5.1.2: PROTOCOL_ERROR (both engines; REFUSED_STREAM is the other choice)."""
    wire = Wire(engine)
    wire.exchange()  # the client knows MAX_CONCURRENT_STREAMS = 100 and has acknowledged it ...
    wire.client.remote_settings.max_concurrent_streams = 1000  # ... and ignores it
    wire.client.remote_settings.acknowledge()
    for i in range(100):  # open, none ended
        wire.get(1 + 2 * i, doh_path(), end=False)
    wire.send()
    wire.receive()
    assert wire.goaway is None and not wire.transport.closed
    wire.get(201, doh_path(), end=False)
    wire.send()
    wire.receive()
    assert wire.goaway == h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert wire.transport.closed


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_stalled_request_ends_the_connection(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http2, "TICK", 0.02)
    monkeypatch.setattr(h2native, "TICK", 0.02)
    wire = Wire(engine, Limits(header_timeout=0.2))
    wire.get(1, doh_path(), end=False)  # and never the end of it
    wire.send()
    started = time.monotonic()
    await until(lambda: wire.transport.closed, 3)
    assert time.monotonic() - started >= 0.15
    wire.receive()
    assert wire.goaway == h2.errors.ErrorCodes.NO_ERROR


@pytest.mark.parametrize("engine", ENGINES)
async def test_an_idle_connection_is_closed_after_the_keepalive_timeout(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http2, "TICK", 0.02)
    monkeypatch.setattr(h2native, "TICK", 0.02)
    wire = Wire(engine, Limits(header_timeout=5, keepalive_timeout=0.3))
    wire.get(1, doh_path())
    wire.exchange()
    assert wire.statuses == {1: b"200"}
    started = time.monotonic()
    await until(lambda: wire.transport.closed, 3)
    assert time.monotonic() - started >= 0.2
    wire.receive()
    assert wire.goaway == h2.errors.ErrorCodes.NO_ERROR


@pytest.mark.parametrize("engine", ENGINES)
async def test_no_request_at_all_ends_the_connection_after_the_header_timeout(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http2, "TICK", 0.02)
    monkeypatch.setattr(h2native, "TICK", 0.02)
    wire = Wire(engine, Limits(header_timeout=0.2, keepalive_timeout=30))
    wire.send()  # the preface and SETTINGS, then nothing
    await until(lambda: wire.transport.closed, 3)


async def until(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


# -- hostile bytes ------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    "raw",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # not HTTP/2 at all
        PREFACE + b"\0\0\x04\x04\0\0\0\0\x01" + b"\xff" * 64,  # SETTINGS on a stream
        # SETTINGS, then a GOAWAY on a stream (a connection error)
        PREFACE + b"\0\0\0\x04\0\0\0\0\0" + b"\0\0\x08\x07\0\0\0\0\x01" + bytes(8),
        PREFACE + b"\x00\x00\x05\x01\x05\x00\x00\x00\x01" + b"\xff" * 5,  # HEADERS, bad HPACK
    ],
    ids=["http1", "settings-on-a-stream", "goaway-on-a-stream", "bad-hpack"],
)
async def test_hostile_bytes_end_the_connection_cleanly(engine: Engine, raw: bytes) -> None:
    wire = Wire(engine)
    wire.protocol.data_received(raw)
    assert wire.transport.closed
    wire.protocol.connection_lost(None)
    wire.protocol.connection_lost(None)  # twice: harmless
    wire.protocol.data_received(b"more")  # after the end: ignored


async def test_native_a_frame_over_the_frame_size_ends_the_connection_at_once() -> None:
    """The h2 engine waits for such a frame (the header timeout ends it); nghttp2 does not."""
    wire = Wire(NativeH2Protocol)
    settings = b"\0\0\0\x04\0\0\0\0\0"
    wire.protocol.data_received(PREFACE + settings + b"\xff\xff\xff\0\0\0\0\0\x01" + bytes(64))
    assert wire.transport.closed
    wire.receive()
    assert wire.goaway == h2.errors.ErrorCodes.FRAME_SIZE_ERROR


def _whole_frames(out: bytes) -> list[int]:
    """The types of the frames in ``out``, which must be whole, known HTTP/2 frames."""
    kinds = []
    while out:
        assert len(out) >= 9
        size = int.from_bytes(out[:3], "big")
        assert size <= 16384 and out[3] <= 9 and len(out) >= 9 + size
        kinds.append(out[3])
        out = out[9 + size :]
    return kinds


def _frame(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", sid)
        + payload
    )


_FRAMES = st.builds(
    _frame,
    st.integers(0, 10),
    st.integers(0, 255),
    st.sampled_from([0, 1, 2, 3, 5, 0x7FFFFFFF, 0x80000001]),
    st.binary(max_size=64),
)


@pytest.mark.parametrize("engine", ENGINES)
@FUZZ
@given(
    frames=st.lists(_FRAMES | st.binary(max_size=24), max_size=12),
    cuts=st.lists(st.integers(1, 40), max_size=6),
    valid_first=st.booleans(),
)
def test_random_frames_never_crash_or_hang(
    engine: Engine, frames: list[bytes], cuts: list[int], valid_first: bool
) -> None:
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_fuzz_one(engine, frames, cuts, valid_first))
    finally:
        loop.close()


async def _fuzz_one(engine: Engine, frames: list[bytes], cuts: list[int], valid: bool) -> None:
    wire = Wire(engine)
    if valid:
        wire.get(1, doh_path())
    data = wire.client.data_to_send() + b"".join(frames)
    started = time.monotonic()
    at = 0
    for cut in [*cuts, len(data)]:
        if wire.transport.closed or at >= len(data):
            break
        wire.protocol.data_received(data[at : at + cut])
        at += cut
    assert time.monotonic() - started < 5
    kinds = _whole_frames(b"".join(wire.transport.writes))
    assert kinds[:1] == [4]  # SETTINGS first
    wire.protocol.connection_lost(None)


# -- the choice of engine -----------------------------------------------------------------------


def test_the_native_engine_is_chosen_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HTTPDNS_H2_ENGINE", raising=False)
    assert http2.select_engine() == ("libnghttp2 (httpdns._h2native)", NativeH2Protocol)
    monkeypatch.setenv("HTTPDNS_H2_ENGINE", "h2")
    assert http2.select_engine()[1] is H2Protocol


def test_without_the_extension_the_h2_package_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpdns.h2native", None)  # as if it failed to import
    monkeypatch.delenv("HTTPDNS_H2_ENGINE", raising=False)
    said, engine = http2.select_engine()
    assert engine is H2Protocol and said.startswith(
        "the h2 package (libnghttp2 extension not built"
    )
    monkeypatch.setenv("HTTPDNS_H2_ENGINE", "native")
    with pytest.raises(RuntimeError, match="HTTPDNS_H2_ENGINE=native"):
        http2.select_engine()
    monkeypatch.setenv("HTTPDNS_H2_ENGINE", "fast")
    with pytest.raises(RuntimeError, match="neither"):
        http2.select_engine()


_NAMES = st.sampled_from(
    [":method", ":path", ":scheme", ":authority", ":status", ":bogus", "content-type", "accept",
     "x-forwarded-for", "Content-Type", "connection", "te", "content-length", "host", "", "a b"]
)  # fmt: skip
_VALUES = st.sampled_from(["GET", "POST", "https", "localhost", "/dns-query", "0", "trailers",
                           "application/dns-message", doh_path(), "/resolve?name=x"]) | st.binary(
    max_size=12
).map(lambda b: b.decode("latin-1"))  # fmt: skip


_BASE = [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"),
         (":path", doh_path())]  # fmt: skip


@st.composite
def header_blocks(draw: st.DrawFn) -> list[tuple[str, str]]:
    """A valid GET's header block with up to three changes: a field dropped, repeated,
    moved, given an odd value, or an odd field added."""
    block = list(_BASE)
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["drop", "repeat", "move", "value", "add"]))
        i = draw(st.integers(0, len(block) - 1)) if block else 0
        if op == "drop" and block:
            block.pop(i)
        elif op == "repeat" and block:
            block.insert(i, block[i])
        elif op == "move" and block:
            block.append(block.pop(i))
        elif op == "value" and block:
            block[i] = (block[i][0], draw(_VALUES))
        else:
            block.insert(i, (draw(_NAMES), draw(_VALUES)))
    return block or [(":method", "GET")]


@pytest.mark.parametrize("engine", ENGINES)
@FUZZ
@given(
    blocks=st.lists(header_blocks(), min_size=1, max_size=4),
    bodies=st.lists(st.binary(max_size=40), max_size=4),
)
def test_odd_header_blocks_are_answered_or_refused(
    engine: Engine, blocks: list[list[tuple[str, str]]], bodies: list[bytes]
) -> None:
    """Header blocks the client does not validate (pseudo-headers missing, repeated or
    late, connection-specific fields, odd bytes): each stream is answered, reset or ends
    the connection; never an exception."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_odd_blocks(engine, blocks, bodies))
    finally:
        loop.close()


async def _odd_blocks(
    engine: Engine, blocks: list[list[tuple[str, str]]], bodies: list[bytes]
) -> None:
    wire = Wire(engine)
    encoder = hpack.Encoder()  # HEADERS built by hand: no client state machine in the way
    data = PREFACE + _frame(4, 0, 0, b"")
    for i, block in enumerate(blocks):
        sid = 1 + 2 * i
        fields = [(n.encode(), v.encode("latin-1")) for n, v in block]
        data += _frame(1, 0x4, sid, encoder.encode(fields))  # END_HEADERS
        data += _frame(0, 0x1, sid, bodies[i] if i < len(bodies) else b"")  # END_STREAM
    wire.protocol.data_received(data)
    kinds = _whole_frames(b"".join(wire.transport.writes))
    assert kinds[:1] == [4]
    if blocks[0] == _BASE and not (bodies and bodies[0]) and 7 not in kinds:
        assert 1 in kinds  # a valid GET first, and no connection error after it: answered
    if not wire.transport.closed:
        assert set(kinds) <= {0, 1, 3, 4, 6, 7, 8}  # answers, resets, SETTINGS ack, pings
    wire.protocol.connection_lost(None)


# -- memory -------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_closed_connection_is_freed_without_the_garbage_collector(engine: Engine) -> None:
    """As for HTTP/1.1 (``test_fasthttp_miss``): a connection that served streams and was
    closed leaves no cycle, so streams of them do not drive full collections."""
    gc.collect()
    gc.disable()  # what is left after ``del`` is a cycle only the collector frees
    try:
        wire = Wire(engine)
        for sid in (1, 3):
            wire.get(sid, doh_path())
        wire.exchange()
        assert wire.ended == {1, 3}
        wire.protocol.connection_lost(None)
        del wire
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        assert not [o for o in gc.garbage if isinstance(o, (NativeH2Protocol, H2Protocol))]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
