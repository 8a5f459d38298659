"""HTTP/2 for the query routes on libnghttp2 (``httpdns._h2native``, built by
``scripts/install`` from ``_h2native_build.py``): the engine ``httpdns.http2`` picks when
the extension is there, with the same behaviour as its pure-Python ``h2`` engine.

nghttp2 frames, decodes and validates in C; C callbacks keep each stream's method, path,
the few headers a query reads and its body (bounded). Python is called once a read:
``h2n_recv`` returns the completed requests packed in one buffer, each is answered by
``FastServer.respond`` (the HTTP/1.1 path's function and caches) and handed back to C in
one call (``h2n_respond``), and ``h2n_send`` gathers every frame to send for one
``transport.write``.

Limits, as the ``h2`` engine's (``httpdns.http2``): ``MAX_STREAMS`` concurrent streams,
``MAX_HEAD`` bytes of header list (over it: 431) and ``MAX_FRAME`` advertised; bodies up
to ``MAX_BODY`` (over it: 413), their window returned as they arrive; responses respect
the peer's windows; the preface and each request within the header timeout, GOAWAY after
the keep-alive timeout without open streams; more than ``MAX_RESETS_PER_SECOND``
RST_STREAM frames in a second is GOAWAY ``ENHANCE_YOUR_CALM`` (CVE-2023-44487), and a
stream reset before it was answered costs no answer. Routes outside the fast path are
refused per stream with ``HTTP_1_1_REQUIRED``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from struct import Struct

from ._h2native import ffi, lib
from .fasthttp import MAX_BODY, MAX_HEAD, WRITE_HIGH, FastServer
from .logs import client_log

MAX_STREAMS = 100  # SETTINGS_MAX_CONCURRENT_STREAMS
MAX_FRAME = 16384  # SETTINGS_MAX_FRAME_SIZE
MAX_RESETS_PER_SECOND = 200
TICK = 1.0  # seconds between a connection's timeout checks

NO_ERROR = 0x0
HTTP_1_1_REQUIRED = 0xD
_K_REQUEST, _K_BODY_BIG, _K_HEAD_BIG = 0, 1, 2
_RECORD = Struct("<6I")  # stream id, kind, lengths of method, path, headers, body

log = logging.getLogger("httpdns.h2native")
_clock = time.monotonic  # CLOCK_MONOTONIC, as the C side's timestamps


class NativeH2Protocol(asyncio.Protocol):
    """One HTTP/2 connection (after ALPN chose ``h2``), on libnghttp2."""

    def __init__(self, server: FastServer) -> None:
        self.server = server
        conn = lib.h2n_new(MAX_STREAMS, MAX_HEAD, MAX_FRAME, MAX_BODY, MAX_RESETS_PER_SECOND)
        if conn == ffi.NULL:
            raise MemoryError("cannot create an nghttp2 session")
        self.conn = ffi.gc(conn, lib.h2n_free)
        self.transport: asyncio.Transport | None = None
        self.peer: str | None = None
        self.opened = _clock()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    # -- asyncio protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else None
        transport.set_write_buffer_limits(high=WRITE_HIGH)  # type: ignore[attr-defined]
        self._flush()  # our SETTINGS
        self._timer = asyncio.get_running_loop().call_later(TICK, self._tick)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._closed:
            self._closed = True
            ffi.release(self.conn)  # the session and its streams, now rather than at GC

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()  # the peer does not read: stop reading it

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self._closed or self.transport is None or self.transport.is_closing():
            return  # what a closing transport still delivers is not read
        conn = self.conn
        size = lib.h2n_recv(conn, data, len(data))
        if size < 0:  # a fatal error (nghttp2 has queued GOAWAY where one is due)
            client_log.note("h2_protocol", ffi.string(lib.h2n_strerror(size)).decode())
            self._flush()
            self._close()
            return
        if size:
            self._answer(ffi.buffer(conn.ready, size)[:])
        if conn.calm:
            client_log.note(
                "h2_rapid_reset", f"over {MAX_RESETS_PER_SECOND} resets/s from {self.peer}"
            )
        self._flush()

    # -- requests -----------------------------------------------------------------------

    def _answer(self, ready: bytes) -> None:
        """Answer the completed requests ``h2n_recv`` packed in ``ready``."""
        conn, server, peer = self.conn, self.server, self.peer
        match, respond, unpack = server.router.match, server.respond, _RECORD.unpack_from
        at, end = 0, len(ready)
        while at < end:
            sid, kind, mlen, plen, hlen, blen = unpack(ready, at)
            at += 24
            method = ready[at : at + mlen]
            at += mlen
            path = ready[at : at + plen]
            at += plen
            headers = ready[at : at + hlen]
            at += hlen
            body = ready[at : at + blen]
            at += blen
            if kind == _K_BODY_BIG:
                raw = server.error(
                    413,
                    {"error": "payload_too_large", "detail": f"a body is at most {MAX_BODY} bytes"},
                )
            elif kind == _K_HEAD_BIG:
                raw = server.error(
                    431,
                    {"error": "header_too_large", "detail": f"header list over {MAX_HEAD} bytes"},
                )
            else:
                found = match(method, path.partition(b"?")[0])
                if found is None:
                    # Not a query route: the admin API and plugins live on aiohttp, HTTP/1.1 only.
                    lib.h2n_reset(conn, sid, HTTP_1_1_REQUIRED)
                    continue
                route, account = found
                try:
                    head, tail, _ = respond(
                        route, account, method, path, headers + b"\r\n", body, peer
                    )
                    raw = head + server.date() + tail
                except Exception:  # a bug of ours: this stream's 500, the others answered
                    log.exception("answering an HTTP/2 request")
                    raw = server.error(500, {"error": "internal", "detail": "internal error"})
            lib.h2n_respond(conn, sid, raw, len(raw))

    # -- housekeeping -------------------------------------------------------------------

    def _flush(self) -> None:
        """Write what nghttp2 has to send; close once the session is over."""
        conn = self.conn
        size = lib.h2n_send(conn)
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if size > 0:
            transport.write(ffi.buffer(conn.out, size)[:])
        if size < 0 or lib.h2n_done(conn):
            transport.close()

    def _goaway(self, code: int) -> None:
        lib.h2n_goaway(self.conn, code)
        self._flush()
        self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _tick(self) -> None:
        """Header and idle timeouts, checked once a ``TICK``."""
        self._timer = None
        if self._closed or self.transport is None or self.transport.is_closing():
            return
        conn = self.conn
        limits = self.server.limits
        now = _clock()
        oldest = lib.h2n_oldest(conn)
        if oldest >= 0 and now - oldest > limits.header_timeout:
            client_log.note("header_timeout", f"an HTTP/2 request from {self.peer} stalled")
            self._goaway(NO_ERROR)
            return
        if not conn.answered and now - self.opened > limits.header_timeout:
            self._goaway(NO_ERROR)  # no request at all in time
            return
        if not conn.open and now - conn.active > limits.keepalive_timeout:
            self._goaway(NO_ERROR)
            return
        self._timer = asyncio.get_running_loop().call_later(TICK, self._tick)
