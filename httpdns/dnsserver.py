"""Plain DNS over UDP and TCP (``--dns HOST:PORT``), answered from the routing table.

Front cache: a reply (less its ID) is kept per (query less its ID, peer address,
transport) together with the services it was computed from, and reused while
those services are unchanged; a repeated query costs one dict lookup. Misses go
through ``dnswire.answer``. Malformed queries get FORMERR (or are dropped when not
even a header arrived); nothing a client sends can raise out of the handlers.
TCP connections close after ``IDLE_TIMEOUT`` seconds without a complete query.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from . import dnswire
from .config import Config
from .steering import CompiledService
from .table import Client, RoutingTable

log = logging.getLogger("httpdns.dns")

IDLE_TIMEOUT = 10.0
MAX_CACHED = 20_000

Deps = tuple[tuple[str, CompiledService | None], ...]


class DnsEngine:
    """Turns query messages into reply messages for one node."""

    def __init__(self, table: RoutingTable, config: Config) -> None:
        self.table = table
        self.config = config
        self._cache: dict[tuple[bytes, str, bool], tuple[Deps, bytes]] = {}

    def respond(self, wire: bytes, peer: str, udp: bool) -> bytes | None:
        """The reply to ``wire`` from ``peer``, or None to stay silent."""
        key = (wire[2:], peer, udp)
        hit = self._cache.get(key)
        if hit is not None and self.table.still_valid(hit[0]):
            return wire[:2] + hit[1]
        table = self.table
        deps: list[tuple[str, CompiledService | None]] = []
        table.recording = deps
        try:
            out = dnswire.answer(wire, table, self.config, lambda ecs: Client.of(ecs or peer), udp)
        except dnswire.MalformedMessage:
            return dnswire.formerr(wire)
        except Exception:  # a bug must cost one query, never the listener
            log.exception("failed to answer a DNS query")
            return dnswire.formerr(wire)
        finally:
            table.recording = None
        if deps:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            self._cache[key] = (tuple(deps), out.wire[2:])
        return out.wire


class UdpProtocol(asyncio.DatagramProtocol):
    """One UDP socket."""

    def __init__(self, engine: DnsEngine) -> None:
        self.engine = engine
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        transport = self.transport
        if transport is None:
            return
        engine = self.engine
        # The front cache, inlined: this is the whole cost of a repeated query.
        hit = engine._cache.get((data[2:], addr[0], True))
        if hit is not None:
            services = engine.table.services
            for name, svc in hit[0]:
                if services.get(name) is not svc:
                    break
            else:
                transport.sendto(data[:2] + hit[1], addr)
                return
        reply = engine.respond(data, addr[0], True)
        if reply is not None:
            transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


class TcpProtocol(asyncio.Protocol):
    """One TCP connection: 2-byte length-prefixed messages (RFC 1035 §4.2.2), pipelined."""

    def __init__(self, engine: DnsEngine) -> None:
        self.engine = engine
        self.buf = b""
        self.peer = ""
        self.transport: asyncio.Transport | None = None
        self._idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else ""
        self._arm()

    def _arm(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(IDLE_TIMEOUT, self._timeout)

    def _timeout(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        while len(buf) >= 2:
            size = int.from_bytes(buf[:2], "big")
            if len(buf) < 2 + size:
                break
            msg, buf = buf[2 : 2 + size], buf[2 + size :]
            self._arm()
            reply = self.engine.respond(msg, self.peer, False)
            if reply is None:  # not even a header: nothing sensible to say on this stream
                self._timeout()
                return
            if self.transport is not None:
                self.transport.write(len(reply).to_bytes(2, "big") + reply)
        self.buf = buf

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()


async def start_dns(
    engine: DnsEngine, host: str, port: int, reuse_port: bool = False
) -> tuple[asyncio.DatagramTransport, asyncio.Server]:
    """Listen on UDP and TCP ``host:port``."""
    loop = asyncio.get_running_loop()
    udp, _ = await loop.create_datagram_endpoint(
        lambda: UdpProtocol(engine), local_addr=(host, port), reuse_port=reuse_port or None
    )
    tcp = await loop.create_server(
        lambda: TcpProtocol(engine), host, port, reuse_address=True, reuse_port=reuse_port or None
    )
    return udp, tcp
