"""HTTP/2 for the query routes (RFC 9113), on the ``--https`` listener when TLS's ALPN
picks ``h2`` — DoH's recommended transport (RFC 8484 §5.2).

Built on the sans-IO ``h2`` package inside the node's event loop. Requests are
answered by ``FastServer.respond``, the same function the HTTP/1.1 fast path uses:
one route table, one front cache, one rate limit, one error mapping. Routes outside
the fast path (the admin API, plugins) are refused per stream with
``HTTP_1_1_REQUIRED``, which clients (curl, browsers) answer by retrying over
HTTP/1.1, where aiohttp serves them.

Limits: HTTP/2 connections count toward the listener's ``max_connections``; the
connection preface and every request must complete within the header timeout; a
connection without open streams closes (GOAWAY) after the keep-alive timeout
(only requests count as activity, not PINGs); at most ``MAX_STREAMS`` concurrent
streams (``SETTINGS_MAX_CONCURRENT_STREAMS``), header lists of ``MAX_HEAD`` bytes
and 16 KiB frames are advertised; request bodies are bounded by ``MAX_BODY`` and
flow-controlled (their window is returned as data is consumed); responses
respect the peer's windows. Rapid reset (CVE-2023-44487): streams the client
resets cost no work here (answers are computed only once a request is complete,
synchronously), and a client resetting more than ``MAX_RESETS_PER_SECOND``
streams in a second gets GOAWAY ``ENHANCE_YOUR_CALM``.

Two engines behave alike: ``H2Protocol`` here, on the pure-Python ``h2`` package, and
``httpdns.h2native.NativeH2Protocol`` on libnghttp2 (a cffi extension ``scripts/install``
builds; about twenty times cheaper a request). ``AlpnSwitch`` takes the native one when it
is built, else this one; ``HTTPDNS_H2_ENGINE=h2`` (or ``native``: fail without it) forces
the choice, for tests and comparisons (``select_engine``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from .fasthttp import MAX_BODY, MAX_HEAD, WRITE_HIGH, FastHTTP, FastServer
from .logs import client_log

MAX_STREAMS = 100  # SETTINGS_MAX_CONCURRENT_STREAMS
MAX_FRAME = 16384  # SETTINGS_MAX_FRAME_SIZE (the protocol's minimum: no large frames)
MAX_RESETS_PER_SECOND = 200  # RST_STREAM frames from the peer before ENHANCE_YOUR_CALM
TICK = 1.0  # seconds between a connection's timeout checks

_clock = time.monotonic
# Inbound headers are validated (malformed requests are stream errors); our own outbound
# headers come from FastServer.respond, well-formed by construction, so h2 need not
# re-validate or normalize them on every response (a large share of its per-request cost).
_CONFIG = h2.config.H2Configuration(
    client_side=False,
    header_encoding=None,
    validate_inbound_headers=True,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
    split_outbound_cookies=False,
)


class _Stream:
    """A request in progress: its header block and body so far."""

    __slots__ = ("body", "headers", "opened")

    def __init__(self, headers: list[tuple[bytes, bytes]], opened: float) -> None:
        self.headers = headers
        self.body = bytearray()
        self.opened = opened


class H2Protocol(asyncio.Protocol):
    """One HTTP/2 connection (after ALPN chose ``h2``)."""

    def __init__(self, server: FastServer) -> None:
        self.server = server
        self.conn = h2.connection.H2Connection(config=_CONFIG)
        self.transport: asyncio.Transport | None = None
        self.peer: str | None = None
        self.streams: dict[int, _Stream] = {}
        self.pending: dict[int, memoryview] = {}  # response bodies waiting for window
        self.opened = self.active = _clock()
        self.answered = False  # at least one complete request seen (the preface deadline)
        self.resets: list[float] = [0.0, 0.0]  # window start, RST_STREAM count
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else None
        transport.set_write_buffer_limits(high=WRITE_HIGH)  # type: ignore[attr-defined]
        conn = self.conn
        conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEAD,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_FRAME,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            },
        )
        conn.initiate_connection()
        self._flush()
        self._timer = asyncio.get_running_loop().call_later(TICK, self._tick)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.streams.clear()
        self.pending.clear()

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()  # the peer does not read: stop reading it

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:  # h2 has queued a GOAWAY: send it, close
            client_log.note("h2_protocol", str(exc)[:200])
            self._flush()
            self._close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self._request(event)
            elif isinstance(event, h2.events.DataReceived):
                self._data(event)
            elif isinstance(event, h2.events.StreamEnded):
                self._complete(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self._reset(event.stream_id)
            elif isinstance(event, h2.events.WindowUpdated):
                self._resume_pending()
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._flush()
                self._close()
                return
            if self.transport is None or self.transport.is_closing():
                return
        self._flush()

    # -- events -------------------------------------------------------------------------

    def _request(self, event: h2.events.RequestReceived) -> None:
        sid = event.stream_id
        # A request without a body ends in the same frame: StreamEnded follows at once.
        # Only requests count as activity: PING or SETTINGS frames keep nothing open.
        self.streams[sid] = _Stream(list(event.headers or ()), _clock())
        self.active = _clock()

    def _data(self, event: h2.events.DataReceived) -> None:
        sid = event.stream_id
        stream = self.streams.get(sid)
        size = event.flow_controlled_length or 0
        if size:  # give the window back: bodies are bounded below, not by stalling the peer
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self.conn.acknowledge_received_data(size, sid)
        if stream is None:  # answered or reset already
            return
        stream.body += event.data or b""
        if len(stream.body) > MAX_BODY:
            self.streams.pop(sid, None)
            self._answer_error(sid, 413, "payload_too_large", f"a body is at most {MAX_BODY} bytes")

    def _reset(self, sid: int) -> None:
        self.streams.pop(sid, None)
        self.pending.pop(sid, None)
        now = _clock()
        window = self.resets
        if now - window[0] >= 1.0:
            window[0], window[1] = now, 0.0
        window[1] += 1
        if window[1] > MAX_RESETS_PER_SECOND:
            client_log.note(
                "h2_rapid_reset", f"over {MAX_RESETS_PER_SECOND} resets/s from {self.peer}"
            )
            self._goaway(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)

    def _complete(self, sid: int) -> None:
        stream = self.streams.pop(sid, None)
        if stream is None:
            return
        self.answered = True
        method = path = b""
        block = []
        for name, value in stream.headers:
            if name[:1] == b":":
                if name == b":method":
                    method = value
                elif name == b":path":
                    path = value
            else:
                block.append(b"\r\n" + name + b": " + value)
        server = self.server
        found = server.router.match(method, path.partition(b"?")[0])
        if found is None:
            # Not a query route: the admin API and plugins live on aiohttp, HTTP/1.1 only.
            with contextlib.suppress(h2.exceptions.ProtocolError):  # closed meanwhile
                self.conn.reset_stream(sid, h2.errors.ErrorCodes.HTTP_1_1_REQUIRED)
            return
        route, account = found
        head, tail, _ = server.respond(
            route, account, method, path, b"".join(block) + b"\r\n", bytes(stream.body), self.peer
        )
        self._send(sid, head + server.date() + tail)

    # -- responses ----------------------------------------------------------------------

    def _send(self, sid: int, raw: bytes) -> None:
        """Send an HTTP/1.1-shaped response (``FastServer.respond``) as HTTP/2 frames."""
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = [(b":status", lines[0][9:12])]
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.lower(), value.strip()))
        try:
            self.conn.send_headers(sid, headers, end_stream=not body)
            if body:
                self.pending[sid] = memoryview(body)
                self._resume_pending()
        except h2.exceptions.ProtocolError:  # the stream (or connection) closed meanwhile
            self.pending.pop(sid, None)

    def _answer_error(self, sid: int, status: int, code: str, detail: str) -> None:
        self._send(sid, self.server.error(status, {"error": code, "detail": detail}))

    def _resume_pending(self) -> None:
        """Send as much of each waiting body as the flow-control windows allow."""
        conn = self.conn
        for sid in list(self.pending):
            body = self.pending[sid]
            try:
                while body:
                    room = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                    if room <= 0:
                        break
                    chunk, body = body[:room], body[room:]
                    conn.send_data(sid, chunk.tobytes(), end_stream=not body)
            except h2.exceptions.ProtocolError:  # closed meanwhile (flow errors included)
                body = memoryview(b"")
            if body:
                self.pending[sid] = body
            else:
                del self.pending[sid]

    # -- housekeeping -------------------------------------------------------------------

    def _flush(self) -> None:
        out = self.conn.data_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    def _goaway(self, code: h2.errors.ErrorCodes) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.conn.close_connection(code)
        self._flush()
        self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _tick(self) -> None:
        """Header and idle timeouts, checked once a ``TICK``."""
        self._timer = None
        if self.transport is None or self.transport.is_closing():
            return
        limits = self.server.limits
        now = _clock()
        oldest = min((s.opened for s in self.streams.values()), default=None)
        if oldest is not None and now - oldest > limits.header_timeout:
            client_log.note("header_timeout", f"an HTTP/2 request from {self.peer} stalled")
            self._goaway(h2.errors.ErrorCodes.NO_ERROR)
            return
        if not self.answered and now - self.opened > limits.header_timeout:
            self._goaway(h2.errors.ErrorCodes.NO_ERROR)  # no request at all in time
            return
        if not self.streams and not self.pending and now - self.active > limits.keepalive_timeout:
            self._goaway(h2.errors.ErrorCodes.NO_ERROR)
            return
        self._timer = asyncio.get_running_loop().call_later(TICK, self._tick)


H2Factory = Callable[[FastServer], asyncio.Protocol]


def select_engine() -> tuple[str, H2Factory]:
    """The HTTP/2 engine: (what to log, its protocol factory). RuntimeError when
    ``HTTPDNS_H2_ENGINE`` asks for something that is not there."""
    wanted = os.environ.get("HTTPDNS_H2_ENGINE", "")
    if wanted not in ("", "native", "h2"):
        raise RuntimeError(f"HTTPDNS_H2_ENGINE: {wanted!r} is neither 'native' nor 'h2'")
    if wanted == "h2":
        return "the h2 package (HTTPDNS_H2_ENGINE=h2)", H2Protocol
    try:
        from .h2native import NativeH2Protocol
    except ImportError as exc:
        if wanted == "native":
            raise RuntimeError(f"HTTPDNS_H2_ENGINE=native: {exc}") from None
        return f"the h2 package (libnghttp2 extension not built: {exc})", H2Protocol
    return "libnghttp2 (httpdns._h2native)", NativeH2Protocol


class AlpnSwitch(asyncio.Protocol):
    """The first protocol of a TLS connection: once the handshake is done, hands the
    connection to HTTP/2 when ALPN chose ``h2``, else to the HTTP/1.1 fast path."""

    def __init__(self, server: FastServer, h2: H2Factory = H2Protocol) -> None:
        self.server = server
        self.h2 = h2  # the engine (select_engine)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tls = transport.get_extra_info("ssl_object")
        alpn = tls.selected_alpn_protocol() if tls is not None else None
        server = self.server
        if alpn != "h2":
            protocol: asyncio.Protocol = FastHTTP(server)
        elif server.open_connections() >= server.limits.max_connections:
            # HTTP/2 connections count toward the same cap; with nothing idle to shed
            # cheaply here, the newcomer is refused (an HTTP/1.1 one sheds the oldest idle).
            client_log.note("connection_limit", f"{server.limits.max_connections} open")
            transport.close()
            return
        else:
            protocol = self.h2(server)
            server.handed_off[transport] = None  # counted until the sweep sees it closed
        transport.set_protocol(protocol)
        protocol.connection_made(transport)


ALPN = ["h2", "http/1.1"]
"""What the TLS listener offers, preferred first."""
