"""The query hot path: a lean HTTP/1.1 server for the query routes.

Each connection starts on ``FastHTTP``, an asyncio protocol that frames requests
with llhttp (``httptools``, the parser uvicorn uses: strict RFC 9112 framing —
duplicate or malformed ``Content-Length``, whitespace before a colon, bare LF,
NUL bytes, ``Transfer-Encoding`` with ``Content-Length`` are all errors) and
answers the query routes of the route table (``httpdns.routes``) itself. Any
other request (the admin API, plugin routes, ``Expect``, upgrades) hands the
connection, with the bytes of that request, to aiohttp's
own protocol, which serves everything else on the same port. A framing error is
one 400 and a closed connection, never a second response.

Limits (``Limits``): a request head must arrive within ``header_timeout`` of the
connection opening or of the previous response, an idle keep-alive connection
closes after ``keepalive_timeout``, at most ``max_connections`` are open (the
oldest idle ones are shed first), a connection whose peer does not read its
responses stops being read, and ``http_rate`` optionally caps requests per
second per client address (429 with ``Retry-After``).

Front cache: a response is kept per (request target, peer, forwarded-for) with
the compiled services it was computed from, and reused while those services
are unchanged — a repeated query is a dict lookup and one write. Only
canonical requests are kept (every parameter one that changes the answer, each
once, a short target), so junk parameters or padding can never fill it; it is
bounded by entries and bytes and evicts a little at a time. A target that names
its client (``ip=``) is kept from its second request on: most are asked once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from email.utils import formatdate
from typing import cast
from urllib.parse import parse_qsl

import httptools
import orjson

from .cache import BoundedCache, Doorkeeper
from .dialects import (
    LANES,
    MISS_LANES,
    Answered,
    Context,
    Kept,
    Lane,
    MissLane,
    Query,
    Repeat,
    Reply,
)
from .errors import reply_for
from .jsonlog import QueryLog
from .logs import client_log
from .metrics import SAMPLE, Answer, QueryStats, Recorder, Tally, rcode_of
from .plainget import head_start, scan
from .routes import Route, Router, reply_headers
from .table import RoutingTable

log = logging.getLogger("httpdns.fasthttp")

MAX_HEAD = 96 * 1024  # request line + headers (a DoH GET carries up to 64 KiB of base64)
MAX_BODY = 65535  # a DNS message; anything larger goes to aiohttp (which refuses it)
MAX_CACHED = 50_000  # front cache entries
MAX_CACHED_BYTES = 24 << 20  # and bytes (targets + responses), per cache
MAX_CACHED_TARGET = 1024  # longer request targets are answered, never kept
SEEN_BITS = 1 << 20  # the front cache's doorkeeper (128 KiB)
# bytes of Python objects around a kept response (key and value tuples, deps, the bytes
# objects' headers, the cache's slot), counted with it so that the byte bound holds for RSS
KEPT_OVERHEAD = 420
WRITE_HIGH = 256 * 1024  # output buffered for one connection before it stops being read
SWEEP = 1.0  # seconds between timeout sweeps

_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Payload Too Large",
    415: b"Unsupported Media Type",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}

_clock = time.monotonic
# The parser of a closed connection: calls back nothing (it is never fed)
_DETACHED = httptools.HttpRequestParser(object())

# Connection states, for the timeouts: waiting for a new request (keep-alive timeout), or
# in the middle of one (header timeout, from its first byte: a slow body counts too).
_IDLE, _HEAD = 0, 1


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-listener limits (``serve`` flags)."""

    header_timeout: float = 10.0
    keepalive_timeout: float = 30.0
    max_connections: int = 4096
    http_rate: float = 0.0  # requests per second per client address; 0 = off


_Key = tuple[bytes, str | None, bytes | None]  # target, peer, forwarded-for
_TOO_MANY = b'{"error":"too_many_requests","detail":"too many requests from this address"}'
_CLOSE = b"Connection: close\r\n"
_KEEP_10 = b"Connection: keep-alive\r\n"
MAX_REPEAT = 1024  # requests longer than this are never kept byte for byte


class _HandOff(Exception):
    """Raised inside the parser: the current request goes to the slow path."""


class _Stop(Exception):
    """Raised inside the parser: the connection is finished (an error was answered)."""


class FastServer:
    """Shared state of every fast connection of one node: routes, front cache, limits."""

    def __init__(
        self,
        context: Context,
        routes: Sequence[Route],
        slow: Callable[[], asyncio.Protocol],
        limits: Limits | None = None,
        stats: QueryStats | None = None,
    ) -> None:
        self.table = context.table
        # The dialects see the table through a recorder (answers per dc and version, for
        # httpdns_answers_total); the cache checks below use the table itself.
        self.recorder = Recorder(context.table)
        self.context = replace(context, table=cast(RoutingTable, self.recorder))
        self.stats = stats or QueryStats()
        self.countdown = SAMPLE  # reads until the next one is timed
        # (dialect, rcode, answers) of the last request ``respond`` answered, for the sampled
        # latency and query log; a Tally (it has the same three) when it came from the cache
        self.last: Tally | tuple[str, str, tuple[Answer, ...]] | None = None
        self.query_log: QueryLog | None = None
        self.config = context.config
        self.router = Router(routes)
        self.slow = slow
        self.limits = limits or Limits()
        self.cache: BoundedCache[_Key, Kept] = BoundedCache(MAX_CACHED, MAX_CACHED_BYTES)
        # A request identical byte for byte to one llhttp accepted and the front cache kept
        # is answered without parsing it again (same bytes, same parse): the hot path.
        self.repeat: BoundedCache[tuple[bytes, str | None], Repeat] = BoundedCache(
            MAX_CACHED, MAX_CACHED_BYTES
        )
        self._seen = Doorkeeper(SEEN_BITS)  # front cache keys answered once
        self.connections: dict[FastHTTP, None] = {}  # insertion order = age
        self.handed_off: dict[asyncio.BaseTransport, None] = {}
        self.now = time.monotonic()  # refreshed by the sweep (rate windows)
        self.shed = 0  # connections closed to admit new ones
        self.timeouts = 0
        self._rates: BoundedCache[str, list[float]] = BoundedCache(100_000)
        self._date = b""
        self._date_at = 0.0
        self._sweeper: asyncio.TimerHandle | None = None
        # by dialect function: its own answers for requests no front cache can keep
        self.lanes: dict[object, Lane] = {
            r.dialect: LANES[r.dialect](self, r) for r in routes if r.dialect in LANES
        }
        # by dialect function: its answers to the plainest requests a bucket map decides,
        # tried when the front cache misses (query routes frame their replies alike)
        self.miss_lanes: dict[object, MissLane] = {
            r.dialect: MISS_LANES[r.dialect](self, r, _framer(self, r))
            for r in routes
            if r.dialect in MISS_LANES and r.metric  # (a lane counts what it answers)
        }
        # the same lanes, tried by a plain HTTP/1.1 GET (``FastHTTP._simple``) before
        # ``respond``: its answer depends on the query string alone (not the peer, its
        # headers or the front cache), so nothing ``respond`` does first changes it; with
        # ``http_rate`` every request goes through ``respond``, which counts it
        self.direct: dict[object, MissLane] = {} if self.limits.http_rate else self.miss_lanes

    # -- connections and timeouts ---------------------------------------------

    def start(self) -> None:
        """Start the periodic timeout sweep (call from the event loop)."""
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP, self._sweep)

    def close(self) -> None:
        """Stop the sweep."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def open_connections(self) -> int:
        """Connections open now, handed-off ones included."""
        return len(self.connections) + len(self.handed_off)

    def admit(self, conn: FastHTTP) -> bool:
        """Register a new connection; shed the oldest idle one when at the cap."""
        if self.open_connections() >= self.limits.max_connections:
            for old in self.connections:  # oldest first: no partial request = idle
                if not old.buf and old is not conn:
                    self.shed += 1
                    old.close()
                    break
            else:
                self.shed += 1
                client_log.note("connection_limit", f"{self.limits.max_connections} open")
                return False
        self.connections[conn] = None
        return True

    def _sweep(self) -> None:
        self.now = now = time.monotonic()
        head, idle = self.limits.header_timeout, self.limits.keepalive_timeout
        expired = []
        for conn in self.connections:
            waited = now - conn.since
            if waited > (head if conn.state == _HEAD else idle):
                expired.append(conn)
        for conn in expired:
            self.timeouts += 1
            conn.expire()
        for t in [t for t in self.handed_off if t.is_closing()]:
            del self.handed_off[t]
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP, self._sweep)

    def over_rate(self, peer: str | None) -> bool:
        """Whether ``peer`` is over ``http_rate`` requests in the current second."""
        key = peer or ""
        now = self.now
        slot = self._rates.get(key)
        if slot is None or now - slot[0] >= 1.0:
            self._rates.put(key, [now, 1.0])
            return False
        slot[1] += 1
        return slot[1] > self.limits.http_rate

    # -- answering ------------------------------------------------------------

    def date(self) -> bytes:
        """The ``Date`` header line, formatted at most once a second."""
        now = time.time()
        if now - self._date_at >= 1.0:
            self._date_at = now
            self._date = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._date

    def respond(
        self,
        route: Route,
        account: str | None,
        method: bytes,
        target: bytes,
        headers: bytes,
        body: bytes,
        peer: str | None,
        *,
        miss_lane: bool = True,
    ) -> tuple[bytes, bytes, Kept | None]:
        """``(status line, headers and body less Date)`` of the answer to one request to a
        query route, and the front cache's entry when it answered (the request was seen
        before: the caller keeps it byte for byte too), else None. ``miss_lane=False``: the
        caller tried the route's miss lane already (``FastHTTP._simple``) and it declined."""
        dialect = route.metric
        if self.limits.http_rate and self.over_rate(peer):
            client_log.note("http_rate", f"over {self.limits.http_rate:g}/s from {peer}")
            reply = Reply(429, "application/json", _TOO_MANY, (("Retry-After", "1"),))
            self.last = (dialect, "http_429", ())
            if dialect:
                self.stats.count(dialect, "http_429")
            return (*self._parts(None, reply), None)
        forwarded = _header(headers, b"x-forwarded-for") if self.config.trusted_proxies else None
        query = target.partition(b"?")[2]
        # the dialect's own answers to requests no front cache keeps (dialects.LANES: AES
        # /d, a fresh IV every time), before the front cache: its lookup would always miss
        lane = self.lanes.get(route.dialect)
        if lane is not None:
            done = lane(query, peer, forwarded)
            if done is not None:
                head, tail, self.last = done
                return head, tail, None
        key = None
        if route.cacheable:
            key = (target, peer, forwarded)
            hit = self.cache.get(key)
            if hit is not None and self.table.still_valid(hit[0]):
                hit[3].n += 1
                self.last = hit[3]
                return hit[1], hit[2], hit  # seen twice: worth keeping byte for byte too
        miss = self.miss_lanes.get(route.dialect) if miss_lane else None
        if miss is not None:
            answered = miss(query)
            if answered is not None:
                head, tail, cell, kept, _ = answered
                cell.n += 1  # counted as the full path counts it (QueryStats.miss_cell)
                self.last = cell
                # kept as the full path would keep it (below): a lane's request is
                # canonical when its parameters are the route's, and names its client
                if (
                    key is not None
                    and miss.keepable
                    and len(target) <= MAX_CACHED_TARGET
                    and self._seen.seen_before(key)
                ):
                    self.cache.put(key, kept, len(target) + len(head) + len(tail) + KEPT_OVERHEAD)
                return head, tail, None
        content_type = _header(headers, b"content-type") if body else None
        recorder = self.recorder
        recorder.reset()
        try:
            params = _params(query)
            q = Query(
                params=params,
                peer=peer,
                forwarded_for=forwarded.decode("latin-1") if forwarded else None,
                account=account,
                body=body if method == b"POST" else None,
                content_type=content_type.decode("latin-1") if content_type else None,
                method=method.decode(),
            )
            assert route.dialect is not None
            reply = route.dialect(q, self.context)
        except Exception as exc:  # every error, the unexpected one included: one mapping
            status, err = reply_for(exc, target[:200].decode("latin-1"))
            reply = Reply(status, "application/json", orjson.dumps(err))
            params = {}
        head, tail = self._parts(route, reply)
        answers = tuple(recorder.answers)
        rcode = ""
        if dialect:
            rcode = rcode_of(dialect, reply.status, reply.body, recorder.unanswered)
            self.stats.count(dialect, rcode, answers)
        self.last = (dialect, rcode, answers)
        if (
            key is not None
            and reply.deps
            and reply.status == 200
            and len(target) <= MAX_CACHED_TARGET
            and _canonical(params, query, route.params)
            and not any(k == "Cache-Control" and "no-store" in v for k, v in reply.headers)
            and ("ip" not in params or self._seen.seen_before(key))  # most are asked once
        ):
            kept = (reply.deps, head, tail, self.stats.tally(dialect, rcode, answers))
            self.cache.put(key, kept, len(target) + len(head) + len(tail) + KEPT_OVERHEAD)
        return head, tail, None

    def error(
        self, status: int, body: dict[str, str], headers: tuple[tuple[str, str], ...] = ()
    ) -> bytes:
        """A JSON error response."""
        reply = Reply(status, "application/json", orjson.dumps(body), headers)
        head, tail = self._parts(None, reply)
        return head + self.date() + tail

    def _parts(self, route: Route | None, reply: Reply) -> tuple[bytes, bytes]:
        key = (
            route is not None and route.is_query,
            reply.status,
            reply.content_type,
            reply.headers,
        )
        frame = _FRAMES.get(key)
        if frame is None:
            frame = _frame(route, reply)
            if len(_FRAMES) < MAX_FRAMES:
                _FRAMES[key] = frame
        head, before, after = frame
        return head, b"%s%d%s%s" % (before, len(reply.body), after, reply.body)


def _frame(route: Route | None, reply: Reply) -> tuple[bytes, bytes, bytes]:
    """A reply's status line, and its headers before and after the Content-Length value."""
    head = b"HTTP/1.1 %d %s\r\n" % (reply.status, _REASONS.get(reply.status, b"Error"))
    pairs = reply_headers(route, reply) if route is not None else list(reply.headers)
    extra = b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in pairs)
    before = b"Content-Type: %s\r\nContent-Length: " % reply.content_type.encode()
    return head, before, b"\r\n" + extra + b"\r\n"


# Framings of replies by what decides them (query route or not, status, media type, extra
# headers): a few shapes frame nearly every reply, so each is encoded once. Bounded: a
# header that varies per reply (Retry-After, say) would otherwise fill it.
_FRAMES: dict[tuple[bool, int, str, tuple[tuple[str, str], ...]], tuple[bytes, bytes, bytes]] = {}
MAX_FRAMES = 512


def _framer(server: FastServer, route: Route) -> Callable[[Reply], tuple[bytes, bytes]]:
    """``server._parts`` for ``route``'s replies (a miss lane frames its replies with it)."""

    def frame(reply: Reply) -> tuple[bytes, bytes]:
        return server._parts(route, reply)

    return frame


def _header(block: bytes, name: bytes) -> bytes | None:
    """The value of header ``name`` (lower-case) in a raw CRLF-separated block, or None.

    The block has passed llhttp, so every line is ``name: value`` with no stray bytes.
    """
    lower = block.lower()
    i = lower.find(b"\r\n" + name + b":")
    if i < 0:
        return None
    i += len(name) + 3
    j = block.find(b"\r\n", i)
    return block[i : j if j >= 0 else len(block)].strip()


def _chunked_end(buf: bytes, at: int) -> int:
    """Where a chunked body that starts at ``at`` ends (llhttp has accepted all of it:
    size lines, data, the last chunk and the trailer section are well formed)."""
    while True:
        line_end = buf.index(b"\r\n", at)
        size = int(buf[at:line_end].split(b";", 1)[0], 16)
        at = line_end + 2
        if size == 0:
            return buf.index(b"\r\n\r\n", at - 2) + 4  # the (possibly empty) trailer section
        at += size + 2


def _params(query: bytes) -> dict[str, str]:
    """The query string's parameters, the first value of each (as aiohttp's MultiDict.get)."""
    out = _plain_params(query)
    if out is None:
        out = {}
        for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            out.setdefault(k, v)
    return out


def _plain_params(query: bytes) -> dict[str, str] | None:
    """``_params`` for a query string without escapes (``%``, ``+``), as ``/d?dn=..&ip=..``
    is: a split, where ``parse_qsl`` would unquote each name and value for nothing.
    None for any other query string."""
    if b"%" in query or b"+" in query:
        return None
    out: dict[str, str] = {}
    for part in query.decode("latin-1").split("&"):
        if part:
            k, _, v = part.partition("=")
            if k not in out:
                out[k] = v
    return out


def _canonical(params: dict[str, str], query: bytes, known: tuple[str, ...]) -> bool:
    """Whether a query string holds only parameters that change the answer, each once."""
    if not query:
        return True
    return len(params) == query.count(b"&") + 1 and all(k in known for k in params)


class FastHTTP(asyncio.Protocol):
    """One client connection on the fast path."""

    __slots__ = (
        "buf",
        "chunks",
        "parser",
        "parser_error",
        "paused",
        "peer",
        "request",
        "server",
        "since",
        "start",
        "state",
        "transport",
    )

    def __init__(self, server: FastServer) -> None:
        self.server = server
        self.buf = b""  # bytes received and not yet answered, from ``start`` on
        self.start = 0  # where the current request begins in ``buf``
        self.peer: str | None = None
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        # (route, account, method, target, headers, body offset, Content-Length) of the
        # request in progress
        self.request: tuple[Route, str | None, bytes, bytes, bytes, int, int] | None = None
        self.state = _HEAD  # a new connection owes its first request head in header_timeout
        self.since = _clock()
        self.paused = False
        self.parser_error: Exception | None = None  # what a callback raised, and why
        self.chunks: list[bytes] | None = None  # a chunked request's body so far

    # -- asyncio protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else None
        self.since = _clock()
        if not self.server.admit(self):
            transport.close()
            return
        transport.set_write_buffer_limits(high=WRITE_HIGH)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.pop(self, None)
        self._detach()

    def _detach(self) -> None:
        """Drop the references that make a cycle of this connection (its parser holds its
        callbacks, its transport holds it): a closed connection is freed at once, never
        left to the garbage collector, whose full collections a stream of closed
        connections would trigger again and again (each a pause of tens of ms)."""
        self.buf = b""
        self.parser = _DETACHED
        self.transport = None
        self.parser_error = None  # its traceback holds the frames that hold this connection

    def pause_writing(self) -> None:
        # The peer does not read: stop reading its requests until it does (back-pressure).
        self.paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if not self.buf:  # between requests: is this one a repeat?
            server = self.server
            server.countdown -= 1
            if not server.countdown:
                self._timed(data)
                return
            hit = server.repeat.get((data, self.peer))
            if hit is not None and server.table.still_valid(hit[0]):
                transport = self.transport
                assert transport is not None
                transport.write(hit[1] + server.date() + hit[2])
                self.state, self.since = _IDLE, _clock()
                hit[4].n += 1  # the whole cost of counting a repeated query
                if not hit[3]:
                    transport.close()
                return
            if data[:4] == b"GET " and self._simple(data):
                return
        self._receive(data)

    def _timed(self, data: bytes) -> None:
        """``data_received`` for the one read in ``SAMPLE`` whose latency is sampled."""
        server = self.server
        server.countdown = SAMPLE
        server.last = None
        start = time.perf_counter()
        hit = server.repeat.get((data, self.peer))
        if hit is not None and server.table.still_valid(hit[0]):
            transport = self.transport
            assert transport is not None
            transport.write(hit[1] + server.date() + hit[2])
            self.state, self.since = _IDLE, _clock()
            hit[4].n += 1
            if not hit[3]:
                transport.close()
            last: Tally | tuple[str, str, tuple[Answer, ...]] | None = hit[4]
        else:
            if not (data[:4] == b"GET " and self._simple(data)):
                self._receive(data)
            last = server.last
        if last is None:
            return  # not a query (/healthz, /metrics, a partial request)
        dialect, rcode, answers = (
            (last.dialect, last.rcode, last.answers) if isinstance(last, Tally) else last
        )
        if dialect:
            seconds = time.perf_counter() - start
            server.stats.observe(dialect, seconds)
            if server.query_log is not None:
                server.query_log.maybe(dialect, rcode, answers, seconds, self.peer or "")

    def _simple(self, data: bytes) -> bool:
        """Answer ``data`` if it is one whole GET of the plainest shape (``plainget.scan``)
        to a query route, without llhttp: exactly what ``_receive`` would do with it (llhttp
        accepts every such request and frames it the same way). False, having done
        nothing, for anything else."""
        scanned = scan(data)
        if scanned is None:
            return False
        target, path, dn, ip, family, ttl, bucket = scanned
        server = self.server
        found = server.router.match(b"GET", path)
        if found is None:
            return False
        route, account = found
        transport = self.transport
        assert transport is not None
        # the route's miss lane first: its answer depends on the query string alone
        miss = server.direct.get(route.dialect)
        answered: Answered | None = None
        repeat: Repeat | None = None
        try:
            if miss is not None and dn is not None:
                answered = miss.answer(dn, ip, family, ttl, bucket)
            if answered is None:
                headers = data[head_start(target) : -2]  # "\r\nname: value\r\n...", as llhttp's
                head, tail, kept = server.respond(
                    route, account, b"GET", target, headers, b"", self.peer, miss_lane=miss is None
                )
                if kept is not None:  # a front-cache hit: seen twice, worth keeping byte for byte
                    repeat = (kept[0], head, tail, True, kept[3])
        except Exception:  # a bug of ours: one 500, close (as a callback's exception in llhttp)
            self._fail(500, "internal", "internal error")
            return True
        if answered is not None:
            assert miss is not None
            head, tail, cell, _, lane_repeat = answered
            cell.n += 1  # counted as the full path counts it (QueryStats.miss_cell)
            server.last = cell
            # kept from its second sighting, as the front cache would have led to
            if miss.keepable and server._seen.seen_before((data, self.peer)):
                repeat = lane_repeat
        transport.write(head + server.date() + tail)
        self.state, self.since = _IDLE, _clock()
        if repeat is not None and len(data) <= MAX_REPEAT and not server.limits.http_rate:
            server.repeat.put((data, self.peer), repeat, 2 * len(data) + len(tail) + KEPT_OVERHEAD)
        return True

    def _receive(self, data: bytes) -> None:
        self.buf = self.buf + data if self.buf else data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            error = self.parser_error
            if error is not None:
                # the parser keeps it, its traceback the frames that hold this connection
                # and the parser: a cycle only the garbage collector would free
                error.__traceback__ = None
            if isinstance(error, _HandOff):
                self._hand_off(self.buf[self.start :])
                return
            if not isinstance(error, _Stop):  # a bug of ours: one 500, close
                self._fail(500, "internal", "internal error")
            return
        except httptools.HttpParserUpgrade:
            self._hand_off(self.buf[self.start :])
            return
        except httptools.HttpParserError as exc:
            client_log.note("http_framing", str(exc))
            self._fail(400, "bad_request", f"malformed HTTP request: {exc}")
            return
        if self.transport is None or self.transport.is_closing():
            return
        if self.start:
            self.buf = self.buf[self.start :]
            self.start = 0
        if self.buf:
            if self.state == _IDLE:  # the first bytes of a request: its head timeout starts
                self.state, self.since = _HEAD, _clock()
            if self.request is None and len(self.buf) > MAX_HEAD:
                self._fail(431, "header_too_large", "request head over 96 KiB")
            elif self.request is not None and len(self.buf) > MAX_HEAD + MAX_BODY:
                self._fail(413, "payload_too_large", f"a body is at most {MAX_BODY} bytes")

    # -- llhttp callbacks ------------------------------------------------------------

    def _raise(self, exc: Exception) -> None:
        self.parser_error = exc
        raise exc

    def on_headers_complete(self) -> None:
        buf, start = self.buf, self.start
        while buf[start : start + 1] in (b"\r", b"\n"):  # empty lines before a request (RFC 9112)
            start += 1
        self.start = start
        line_end = buf.find(b"\r\n", start)
        head_end = buf.find(b"\r\n\r\n", line_end)
        parts = buf[start:line_end].split()  # llhttp allows runs of spaces
        if len(parts) != 3:  # an HTTP/0.9 request line (no version), which llhttp takes
            self._fail(400, "bad_request", "malformed HTTP request: no HTTP version")
            self._raise(_Stop())
        method, target, version = parts
        headers = buf[line_end : head_end + 2]  # starts with CRLF: "\r\nname: value\r\n..."
        path = target.partition(b"?")[0]
        found = self.server.router.match(method, path)
        lower = headers.lower()
        if found is None or self.parser.should_upgrade() or b"\r\nexpect:" in lower:
            self._raise(_HandOff())
        if version == b"HTTP/1.1" and b"\r\nhost:" not in lower:
            self._fail(400, "bad_request", "a Host header is required (RFC 9112 section 3.2)")
            self._raise(_Stop())
        if lower.count(b"\r\nhost:") > 1:
            self._fail(400, "bad_request", "one Host header at most (RFC 9112 section 3.2)")
            self._raise(_Stop())
        # A chunked body: llhttp decodes it (on_body); _chunked_end finds where it ends.
        self.chunks = [] if b"\r\ntransfer-encoding:" in lower else None
        length = 0
        if b"\r\ncontent-length:" in lower:
            length = int(_header(headers, b"content-length") or 0)  # llhttp checked: one value
            if length > MAX_BODY:
                self._fail(413, "payload_too_large", f"a body is at most {MAX_BODY} bytes")
                self._raise(_Stop())
        assert found is not None
        route, account = found
        # the body's offset from the request's start (``buf`` is trimmed between reads)
        self.request = (route, account, method, target, headers, head_end + 4 - start, length)

    def on_body(self, data: bytes) -> None:
        if self.chunks is not None:
            self.chunks.append(data)
            if sum(map(len, self.chunks)) > MAX_BODY:
                self._fail(413, "payload_too_large", f"a body is at most {MAX_BODY} bytes")
                self._raise(_Stop())

    def on_message_complete(self) -> None:
        request = self.request
        assert request is not None
        route, account, method, target, headers, body_at, length = request
        self.request = None
        start = self.start
        body_at += start
        chunks = self.chunks
        if chunks is None:
            end = body_at + length
            body = self.buf[body_at:end]
        else:
            end, body = _chunked_end(self.buf, body_at), b"".join(chunks)
            self.chunks = None
        server = self.server
        head, tail, kept = server.respond(route, account, method, target, headers, body, self.peer)
        self.start = end
        keep = self.parser.should_keep_alive()
        if not keep:
            tail = _CLOSE + tail
        elif self.parser.get_http_version() == "1.0":  # 1.0 clients reuse only when told
            tail = _KEEP_10 + tail
        transport = self.transport
        assert transport is not None
        transport.write(head + server.date() + tail)
        self.state, self.since = _IDLE, _clock()
        if kept is not None and end - start <= MAX_REPEAT and not server.limits.http_rate:
            raw = self.buf[start:end]
            server.repeat.put(
                (raw, self.peer),
                (kept[0], head, tail, keep, kept[3]),
                2 * len(raw) + len(tail) + KEPT_OVERHEAD,
            )
        if not keep:
            transport.close()
            self._raise(_Stop())

    # -- endings -----------------------------------------------------------------------

    def _fail(self, status: int, code: str, detail: str) -> None:
        """Answer one error and close: nothing after a framing error is a request."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        response = self.server.error(status, {"error": code, "detail": detail})
        transport.write(response.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1))
        transport.close()
        self.buf = b""

    def expire(self) -> None:
        """The header or keep-alive timeout passed."""
        if self.state == _HEAD and self.buf:
            client_log.note("header_timeout", f"no complete request head from {self.peer}")
            self._fail(408, "request_timeout", "the request head did not arrive in time")
        else:
            self.close()

    def close(self) -> None:
        """Close the connection (shed, or idle too long)."""
        self.server.connections.pop(self, None)
        if self.transport is not None:
            self.transport.close()

    def _hand_off(self, raw: bytes) -> None:
        """Give this connection, from this request on, to the full application."""
        transport = self.transport
        assert transport is not None
        self.buf = b""
        server = self.server
        server.connections.pop(self, None)
        server.handed_off[transport] = None
        protocol = server.slow()
        transport.set_protocol(protocol)
        self._detach()
        protocol.connection_made(transport)
        if raw:
            protocol.data_received(raw)
