"""Plain DNS over UDP and TCP (``--dns HOST:PORT``), answered from the routing table.

What is never answered: messages shorter than a header, responses (QR=1, so a
forged reply from the node's own address cannot start a loop between nodes or
with itself), and anything from source port 0 or from the listener's own
address and port. Malformed queries (trailing bytes after the last record
included) get FORMERR and are never cached.

Front cache: a reply (less its ID) is kept per normalized query — the message
less its ID with the name lower-cased and the flags that do not change the
answer masked — plus the peer and transport, together with the services it was
computed from, and reused while those services are unchanged. The query's own
ID and name (in its own letter case) are spliced into the kept reply. Bounded
by entries and bytes, evicting a little at a time.

Response rate limiting (``rrl_rate``, like BIND's RRL): over UDP, at most
``rrl_rate`` identical responses per second go to one client /24 (IPv4) or /56
(IPv6) — identical meaning the same normalized query, so the name, type and
ECS subnet; over the limit responses are dropped, except every ``rrl_slip``-th,
which goes out truncated (TC) so a real resolver retries over TCP, where the
source address cannot be forged.

TCP connections close after ``IDLE_TIMEOUT`` seconds without a complete query;
a peer that does not read its replies stops being read.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from typing import Any, cast

from . import dnswire
from .cache import BoundedCache, Doorkeeper
from .config import Config
from .jsonlog import QueryLog
from .logs import client_log
from .metrics import RCODES, SAMPLE, Answer, QueryStats, Recorder, Tally
from .table import Client, RoutingTable

log = logging.getLogger("httpdns.dns")

IDLE_TIMEOUT = 10.0
MAX_CACHED = 20_000
MAX_CACHED_BYTES = 16 << 20
# bytes of Python objects around a kept reply (key and value tuples, the bytes objects'
# headers, the cache's slot), counted with the reply so that the byte bound holds for RSS
KEPT_OVERHEAD = 320
MAX_RRL_ENTRIES = 200_000
WRITE_HIGH = 256 * 1024

Key = tuple[bytes, str, bool]
# deps, the reply less its ID, the metrics cell of its hits, and when the reply depends on
# one served service (the usual case) its name and compiled entry, checked on the UDP hot path
Kept = tuple[object, bytes, Tally, str, object]


def normalized(data: bytes) -> tuple[bytes, int] | None:
    """``(the query less its ID, lower-cased name, masked flags; the name's end)``.

    Only the opcode, RD and CD flag bits change an answer (RD and CD are copied into
    it; the OPT record, DO bit included, is part of the rest); the name ends at its first zero
    byte (a zero inside a binary label ends it early, which only leaves some of the
    name's case as sent — still the same name). None when there is no name.
    """
    z = data.find(b"\0", 12)
    if z < 0:
        return None
    return bytes((data[2] & 0x79, data[3] & 0x10)) + data[4:12] + data[12:z].lower() + data[z:], z


class DnsEngine:
    """Turns query messages into reply messages for one node."""

    def __init__(
        self, table: RoutingTable, config: Config, stats: QueryStats | None = None
    ) -> None:
        self.table = table
        self.config = config
        self.stats = stats or QueryStats()
        self.recorder = Recorder(table)  # decisions per dc and version, for the metrics
        self.countdown = SAMPLE  # queries until the next one is timed
        # what ``respond`` answered last (sampled latency, query log): a Tally from the cache,
        # else (dialect, rcode, answers)
        self.last: Tally | tuple[str, str, tuple[Answer, ...]] | None = None
        self.query_log: QueryLog | None = None
        self.cache: BoundedCache[Key, Kept] = BoundedCache(MAX_CACHED, MAX_CACHED_BYTES)
        # The same bytes again (less the ID): no normalizing, no splicing — the hot path.
        self.exact: BoundedCache[Key, Kept] = BoundedCache(MAX_CACHED, MAX_CACHED_BYTES)
        self._seen = Doorkeeper(1 << 20)  # normalized queries answered once
        self.rrl_rate = config.rrl_rate
        self.rrl_slip = config.rrl_slip
        self._rrl: BoundedCache[tuple[bytes, bytes], list[float]] = BoundedCache(MAX_RRL_ENTRIES)
        self.limited = 0  # responses dropped or slipped by RRL
        self.zones_seen: object = None  # the registry's zones the cached replies were built from

    def respond(self, wire: bytes, peer: str, udp: bool) -> bytes | None:
        """The reply to ``wire`` from ``peer``, or None to stay silent."""
        if len(wire) < 12 or wire[2] & 0x80:
            return None  # not even a header, or a response: never answered
        zones = self.table.snapshot.zones
        if zones is not self.zones_seen:  # a zone changed: negative answers and SOAs may differ
            self.cache.clear()
            self.exact.clear()
            self.zones_seen = zones
        exact = (wire[2:], peer, udp)
        hit = self.exact.get(exact)
        if hit is not None and self.table.still_valid(hit[0]):  # type: ignore[arg-type]
            hit[2].n += 1
            self.last = hit[2]
            return wire[:2] + hit[1]
        norm = normalized(wire)
        if norm is not None:
            key, z = norm
            hit = self.cache.get((key, peer, udp))
            if hit is not None and self.table.still_valid(hit[0]):  # type: ignore[arg-type]
                rest = hit[1]
                rest = rest[:10] + wire[12:z] + rest[z - 2 :]
                hit[2].n += 1
                self.last = hit[2]
                self.exact.put(
                    exact,
                    (hit[0], rest, hit[2], hit[3], hit[4]),
                    len(wire) + len(rest) + KEPT_OVERHEAD,
                )
                return wire[:2] + rest
        recorder = self.recorder
        recorder.reset()
        try:
            out = dnswire.answer(
                wire,
                cast(RoutingTable, recorder),
                self.config,
                lambda ecs: Client.of(ecs or peer),
                udp,
            )
        except dnswire.MalformedMessage as exc:
            client_log.note("dns_formerr", exc.detail)
            self.stats.count("dns", "FORMERR")
            self.last = ("dns", "FORMERR", ())
            return dnswire.formerr(wire)
        except Exception:  # a bug must cost one query, never the listener
            client_log.bug("answering a DNS query")
            self.stats.count("dns", "FORMERR")
            return dnswire.formerr(wire)
        rcode = RCODES.get(out.rcode, "BADVERS" if out.rcode == 16 else "other")
        answers = tuple(recorder.answers)
        self.stats.count("dns", rcode, answers)
        self.last = ("dns", rcode, answers)
        if norm is not None and out.deps and self._seen.seen_before(at := (norm[0], peer, udp)):
            # kept from the second sighting on: a query asked once (a new ECS subnet, a
            # spoofed source) would only push out the replies that are asked again
            deps = out.deps
            name, svc = deps[0] if len(deps) == 1 else ("", None)
            kept = (deps, out.wire[2:], self.stats.tally("dns", rcode, answers), name, svc)
            size = len(out.wire) * 2 + KEPT_OVERHEAD
            self.cache.put(at, kept, size)
            self.exact.put(exact, kept, size)
        return out.wire

    def sampled(self, seconds: float, peer: str) -> None:
        """Record the latency of a sampled query (and maybe log it)."""
        last = self.last
        if last is None:
            return  # not answered (a response, no header)
        self.stats.observe("dns", seconds)
        if self.query_log is not None:
            _, rcode, answers = (
                (last.dialect, last.rcode, last.answers) if isinstance(last, Tally) else last
            )
            self.query_log.maybe("dns", rcode, answers, seconds, peer)

    def over_rate(self, wire: bytes, peer: str) -> bool | None:
        """RRL for one UDP response: False to send it, True to send it truncated
        (a slip), None to drop it."""
        norm = normalized(wire)
        if norm is None:
            return False
        key = (_prefix(peer), norm[0])
        now = time.monotonic()
        slot = self._rrl.get(key)
        if slot is None or now - slot[0] >= 1.0:
            self._rrl.put(key, [now, 1.0])
            return False
        slot[1] += 1
        if slot[1] <= self.rrl_rate:
            return False
        self.limited += 1
        if slot[1] - self.rrl_rate == 1:
            client_log.note("dns_rrl", f"over {self.rrl_rate:g}/s to {peer}")
        if self.rrl_slip and int(slot[1] - self.rrl_rate) % self.rrl_slip == 0:
            return True
        return None


def _prefix(peer: str) -> bytes:
    """The client's /24 (IPv4) or /56 (IPv6), as bytes."""
    try:
        return socket.inet_pton(socket.AF_INET, peer)[:3]
    except OSError:
        try:
            return socket.inet_pton(socket.AF_INET6, peer.split("%")[0])[:7]
        except OSError:
            return peer.encode()


def truncated(wire: bytes) -> bytes | None:
    """An empty reply with TC set: "ask again over TCP" (the RRL slip)."""
    norm = normalized(wire)
    if norm is None or len(wire) < norm[1] + 5:
        return None
    flags = 0x8000 | (wire[2] & 0x79) << 8 | 0x0200  # QR, opcode and RD as asked, TC
    return wire[:2] + flags.to_bytes(2, "big") + b"\0\1\0\0\0\0\0\0" + wire[12 : norm[1] + 5]


class UdpProtocol(asyncio.DatagramProtocol):
    """One UDP socket."""

    def __init__(self, engine: DnsEngine) -> None:
        self.engine = engine
        self.transport: asyncio.DatagramTransport | None = None
        self.port = -1  # ours, and the addresses it is ours on
        self.hosts: frozenset[str] = frozenset()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        host, self.port = transport.get_extra_info("sockname")[:2]
        hosts = {host}
        if ipaddress.ip_address(host).is_unspecified:  # bound to every address: loopbacks too
            hosts |= {"127.0.0.1", "::1"}
        self.hosts = frozenset(hosts)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        transport = self.transport
        port = addr[1]
        if transport is None or port == 0 or (port == self.port and addr[0] in self.hosts):
            return  # never answer port 0 or ourselves (a forged loop)
        engine = self.engine
        engine.countdown -= 1
        if not engine.countdown:
            engine.countdown = SAMPLE
            engine.last = None
            start = time.perf_counter()
            self.answer(data, addr, transport)
            engine.sampled(time.perf_counter() - start, addr[0])
            return
        # The exact-bytes cache, inlined: this is the whole cost of a repeated query.
        # A kept reply from one service is current while that service is the same object.
        hit = engine.exact.get((data[2:], addr[0], True))
        if (
            hit is not None
            and (svc := hit[4]) is not None
            and (table := engine.table).by_name.get(hit[3]) is svc
            and table.snapshot.zones is engine.zones_seen
            and not engine.rrl_rate
        ):
            transport.sendto(data[:2] + hit[1], addr)
            hit[2].n += 1
            return
        self.answer(data, addr, transport)

    def answer(self, data: bytes, addr: Any, transport: asyncio.DatagramTransport) -> None:
        """Answer one datagram (rate limits included) through the engine."""
        engine = self.engine
        reply = engine.respond(data, addr[0], True)
        if reply is None:
            return
        if engine.rrl_rate:
            verdict = engine.over_rate(data, addr[0])
            if verdict is None:
                return
            if verdict:
                reply = truncated(data)
                if reply is None:
                    return
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
        transport.set_write_buffer_limits(high=WRITE_HIGH)  # type: ignore[attr-defined]
        self._arm()

    def _arm(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(IDLE_TIMEOUT, self._timeout)

    def _timeout(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()  # the peer does not read: stop reading it

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        while len(buf) >= 2:
            size = int.from_bytes(buf[:2], "big")
            if len(buf) < 2 + size:
                break
            msg, buf = buf[2 : 2 + size], buf[2 + size :]
            self._arm()
            engine = self.engine
            engine.countdown -= 1
            if engine.countdown:
                reply = engine.respond(msg, self.peer, False)
            else:
                engine.countdown = SAMPLE
                engine.last = None
                start = time.perf_counter()
                reply = engine.respond(msg, self.peer, False)
                engine.sampled(time.perf_counter() - start, self.peer)
            if reply is None:  # no header, or a response: nothing sensible on this stream
                self._timeout()
                self.buf = b""
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
