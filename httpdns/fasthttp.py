"""The query hot path: a lean HTTP/1.1 server for the query routes.

Each connection starts on ``FastHTTP``, an asyncio protocol that frames
requests itself and answers ``/d``, ``/{account}/d|resolve|sign_d|sign_resolve``,
``/resolve``, ``/dns-query`` (GET and POST) and ``/healthz`` through the same
dialect functions as the aiohttp application. Any other request (the admin
API, HEAD, chunked bodies, ``Expect``, anything odd) hands the connection, with
the bytes of that request, to aiohttp's own protocol, which serves everything
else on the same port.

Front cache: a response is kept per (request target, peer, forwarded-for) with
the compiled services it was computed from, and reused while those services
are unchanged — a repeated query is a dict lookup and one write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl

import orjson

from registry.errors import RegistryError

from . import dialects
from .config import Config
from .dialects import Context, Query, Reply
from .errors import HttpdnsError, error_body
from .steering import CompiledService

log = logging.getLogger("httpdns.fasthttp")

MAX_HEAD = 96 * 1024  # request line + headers (a DoH GET carries up to 64 KiB of base64)
MAX_BODY = 65535
MAX_CACHED = 50_000
# Query answers are public: web pages on any origin may read them (browser clients).
CORS = b"Access-Control-Allow-Origin: *\r\n"

Deps = tuple[tuple[str, CompiledService | None], ...]
Dialect = Callable[[Query, Context], Reply]

_ROOT: dict[bytes, Dialect] = {
    b"/d": dialects.resolve_d,
    b"/resolve": dialects.resolve_json,
    b"/dns-query": dialects.resolve_doh,
}
_ACCOUNT: dict[bytes, Dialect] = {
    b"d": dialects.resolve_one,
    b"resolve": dialects.resolve_many,
    b"sign_d": lambda q, c: dialects.resolve_one(q, c, True),
    b"sign_resolve": lambda q, c: dialects.resolve_many(q, c, True),
}
_REASONS = {200: b"OK", 400: b"Bad Request", 403: b"Forbidden", 404: b"Not Found",
            405: b"Method Not Allowed", 413: b"Payload Too Large", 415: b"Unsupported Media Type",
            431: b"Request Header Fields Too Large", 500: b"Internal Server Error",
            503: b"Service Unavailable"}  # fmt: skip


class FastServer:
    """Shared state of every fast connection of one listener."""

    def __init__(self, context: Context, health: Callable[[], dict[str, Any]],
                 slow: Callable[[], asyncio.Protocol]) -> None:  # fmt: skip
        self.context = context
        self.config: Config = context.config
        self.health = health
        self.slow = slow
        self.cache: dict[tuple[bytes, str | None, bytes | None], tuple[Deps, bytes, bytes]] = {}
        self._date = b""
        self._date_at = 0.0

    def date(self) -> bytes:
        """The ``Date`` header line, formatted at most once a second."""
        now = time.time()
        if now - self._date_at >= 1.0:
            self._date_at = now
            self._date = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._date

    def route(self, method: bytes, path: bytes) -> tuple[Dialect | None, str | None] | None:
        """The dialect for a fast route, ``(None, None)`` for /healthz, or None (slow)."""
        if method == b"GET":
            fn = _ROOT.get(path)
            if fn is not None:
                return fn, None
            if path == b"/healthz":
                return None, None
        elif method == b"POST" and path == b"/dns-query":
            return dialects.resolve_doh, None
        if method == b"GET" and path.count(b"/") == 2:
            _, account, leaf = path.split(b"/")
            fn = _ACCOUNT.get(leaf)
            if fn is not None and account.isalnum():
                return fn, account.decode()
        return None

    def respond(self, method: bytes, target: bytes, headers: bytes, body: bytes,
                peer: str | None) -> bytes | None:  # fmt: skip
        """The full response for one request, or None to hand it to the slow path."""
        path, _, query = target.partition(b"?")
        found = self.route(method, path)
        if found is None:
            return None
        fn, account = found
        if fn is None:
            health = self.health()  # 503 only when the node has nothing to serve
            status = 503 if health["status"] == "unavailable" else 200
            return self._encode(status, "application/json", orjson.dumps(health), ())
        forwarded = _header(headers, b"x-forwarded-for") if self.config.trusted_proxies else None
        key = None
        table = self.context.table
        if method == b"GET" and not path.endswith((b"/sign_d", b"/sign_resolve")):
            # (signed answers are not kept: each must be checked against its expiry)
            key = (target, peer, forwarded)
            hit = self.cache.get(key)
            if hit is not None and table.still_valid(hit[0]):
                return hit[1] + self.date() + hit[2]
        content_type = _header(headers, b"content-type") if method == b"POST" else None
        q = Query(
            params=_params(query),
            peer=peer,
            forwarded_for=forwarded.decode("latin-1") if forwarded else None,
            account=account,
            body=body if method == b"POST" else None,
            content_type=content_type.decode("latin-1") if content_type else None,
            method=method.decode(),
        )
        deps: list[tuple[str, CompiledService | None]] = []
        table.recording = deps
        try:
            reply = fn(q, self.context)
        except (HttpdnsError, RegistryError) as exc:
            status, err = error_body(exc)
            reply = Reply(status, "application/json", orjson.dumps(err))
        except Exception:  # never drop the connection for one bad request; log it
            log.exception("failed to answer %s", target[:200])
            reply = Reply(
                500, "application/json", b'{"error":"internal","detail":"internal error"}'
            )
        finally:
            table.recording = None
        head, tail = self._parts(reply)
        if key is not None and deps and reply.status == 200:
            if len(self.cache) >= MAX_CACHED:
                self.cache.clear()
            self.cache[key] = (tuple(deps), head, tail)
        return head + self.date() + tail

    def _parts(self, reply: Reply) -> tuple[bytes, bytes]:
        head = b"HTTP/1.1 %d %s\r\n" % (reply.status, _REASONS.get(reply.status, b"Error"))
        extra = b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in reply.headers)
        tail = b"Content-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n%s" % (
            reply.content_type.encode(), len(reply.body), CORS, extra, reply.body)  # fmt: skip
        return head, tail

    def _encode(
        self, status: int, ctype: str, body: bytes, headers: tuple[tuple[str, str], ...]
    ) -> bytes:
        head, tail = self._parts(Reply(status, ctype, body, headers))
        return head + self.date() + tail


def _header(block: bytes, name: bytes) -> bytes | None:
    """The value of header ``name`` (lower-case) in a raw CRLF-separated block, or None."""
    lower = block.lower()
    needle = name + b":"
    i = lower.find(needle)
    while i > 0 and lower[i - 2 : i] != b"\r\n":  # must start a line
        i = lower.find(needle, i + 1)
    if i < 0:
        return None
    j = block.find(b"\r\n", i)
    return block[i + len(needle) : j if j >= 0 else len(block)].strip()


def _params(query: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    if query:
        for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            out.setdefault(k, v)  # the first value wins, as in aiohttp's MultiDict.get
    return out


class FastHTTP(asyncio.Protocol):
    """One client connection on the fast path."""

    __slots__ = ("buf", "peer", "server", "transport")

    def __init__(self, server: FastServer) -> None:
        self.server = server
        self.buf = b""
        self.peer: str | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else None

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        transport = self.transport
        assert transport is not None
        while buf:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    transport.write(self.server._encode(
                        431, "application/json",
                        b'{"error":"header_too_large","detail":"request head over 96 KiB"}', (),
                    ) + b"")  # fmt: skip
                    transport.close()
                    return
                break
            line_end = buf.find(b"\r\n")
            parts = buf[:line_end].split(b" ")
            headers = buf[line_end + 2 : end + 2]
            if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or not parts[1]:
                transport.write(
                    self.server._encode(
                        400, "application/json",
                        b'{"error":"bad_request","detail":"malformed HTTP request line"}', (),
                    ).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
                )  # fmt: skip
                transport.close()
                self.buf = b""
                return
            method, target, version = parts
            lower = headers.lower()
            body_len = 0
            if b"content-length:" in lower:
                raw = _header(headers, b"content-length") or b""
                if not raw.isdigit() or int(raw) > MAX_BODY:
                    return self._hand_off(buf)  # aiohttp answers 400/413 in JSON
                body_len = int(raw)
            if b"transfer-encoding:" in lower or b"expect:" in lower or b"upgrade:" in lower:
                return self._hand_off(buf)
            total = end + 4 + body_len
            if len(buf) < total:
                break
            response = self.server.respond(method, target, headers, buf[end + 4 : total], self.peer)
            if response is None:
                return self._hand_off(buf)
            if version == b"HTTP/1.0":
                keep = b"connection: keep-alive" in lower
                if keep:  # HTTP/1.0 clients reuse a connection only when told so
                    response = response.replace(
                        b"\r\n\r\n", b"\r\nConnection: keep-alive\r\n\r\n", 1
                    )
            else:
                keep = b"connection: close" not in lower
            if not keep:
                response = response.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
            transport.write(response)
            if not keep:
                transport.close()
                self.buf = b""
                return
            buf = buf[total:]
        self.buf = buf

    def _hand_off(self, raw: bytes) -> None:
        """Give this connection, from this request on, to the full application."""
        transport = self.transport
        assert transport is not None
        self.buf = b""
        protocol = self.server.slow()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(raw)
