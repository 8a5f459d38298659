"""What the sync and async resolvers share, still without I/O: settings, the cache and
server pool, the failover walk (a generator the I/O layer drives), storing answers,
system answers and the metric hooks."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

from .core import (
    DEAD,
    FRESH,
    Answer,
    Cache,
    DualAnswer,
    ErrorEvent,
    ErrorHook,
    Family,
    Key,
    LookupEvent,
    LookupHook,
    NoServerAvailable,
    QType,
    RequestEvent,
    RequestHook,
    RequestRejected,
    Server,
    ServerError,
    ServerPool,
    ServerState,
    Source,
    Stage,
    normalize_name,
    normalize_qtype,
)
from .dual import both_request, one_request, parse_both
from .encrypted import ENCRYPTIONS, EncryptedProtocol
from .persist import CacheStore, as_store, restore, snapshot
from .pinning import normalize_pins
from .protocol import Protocol, Record, Request, parse_server

log = logging.getLogger("httpdns_client")


class Attempt(NamedTuple):
    """One try of one server, as the failover walk asks the I/O layer for it."""

    server: Server
    path: str
    timeout: float


Outcome = tuple[int, bytes] | Exception
Walk = Generator[Attempt, Outcome, tuple[dict[str, Record], Server]]
T = TypeVar("T")
_FAST_QTYPES: dict[str, QType] = {"A": "A", "AAAA": "AAAA"}
Parse = Callable[[Request, int, bytes, str], dict[str, Record]]
PERSIST_INTERVAL = 1.0  # seconds between two writes of the persistent cache


def family_of(qtype: QType) -> socket.AddressFamily:
    """The socket family of a record type."""
    return socket.AF_INET if qtype == "A" else socket.AF_INET6


def addresses_of(infos: Iterable[tuple[Any, ...]]) -> tuple[str, ...]:
    """Unique addresses, in order, from ``getaddrinfo`` results."""
    return tuple(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))


class ResolverBase(Generic[T]):
    """Settings and pure behaviour common to ``Resolver`` and ``AsyncResolver``; ``T``
    is the type of the HTTP transport (sync or async)."""

    def __init__(
        self,
        servers: Sequence[str] | str,
        *,
        dialect: str = "d",
        account: str | None = None,
        secret: str | None = None,
        uid: str | None = None,
        timeout: float = 2.0,
        lookup_timeout: float = 5.0,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        max_stale: float = 300.0,
        negative_ttl: float = 30.0,
        min_ttl: float = 0.0,
        max_ttl: float = 86400.0,
        refresh_ahead: float = 0.75,
        max_entries: int = 1024,
        preresolve: Iterable[str] = (),
        system_fallback: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        tls_hostname: str | None = None,
        sign_lifetime: float = 300.0,
        dnspod_id: str | None = None,
        dnspod_key: str | bytes | None = None,
        encryption: str = "des",
        cache_store: str | os.PathLike[str] | CacheStore | None = None,
        max_age: float = 86400.0,
        pins: Iterable[str] = (),
        on_lookup: LookupHook | None = None,
        on_request: RequestHook | None = None,
        on_error: ErrorHook | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        transport: T | None = None,
    ) -> None:
        if isinstance(servers, str):
            servers = [servers]
        if timeout <= 0 or lookup_timeout <= 0:
            raise ValueError("timeout and lookup_timeout must be > 0")
        parsed = [parse_server(s, tls_hostname) for s in servers]
        self._pool = ServerPool(parsed, backoff, max_backoff)
        self._pins = normalize_pins(pins)
        if self._pins and any(s.scheme != "https" for s in parsed):
            raise ValueError("pins need https servers only (a plain http server would bypass them)")
        if max_age <= 0:
            raise ValueError("max_age must be > 0")
        self._protocol: Protocol
        if dnspod_id is not None or dnspod_key is not None:
            if dialect != "d" or dnspod_id is None or dnspod_key is None:
                raise ValueError(
                    "the DNSPod encrypted dialect needs dialect='d', dnspod_id and dnspod_key"
                )
            if encryption not in ENCRYPTIONS:
                raise ValueError(f"encryption {encryption!r} is not des or aes")
            self._protocol = EncryptedProtocol(
                dnspod_id=dnspod_id,
                dnspod_key=dnspod_key,
                encryption=encryption,
                uid=uid,
                negative_ttl=negative_ttl,
            )
        else:
            self._protocol = Protocol(
                dialect,
                account=account,
                secret=secret,
                uid=uid,
                negative_ttl=negative_ttl,
                sign_lifetime=sign_lifetime,
                wall_clock=wall_clock,
            )
        self._cache = Cache(
            max_stale=max_stale,
            refresh_ahead=refresh_ahead,
            retry=backoff,
            min_ttl=min_ttl,
            max_ttl=max_ttl,
            max_entries=max_entries,
            max_age=max_age,
        )
        self._entries = self._cache.entries  # the hot path reads this dict directly
        self._timeout = float(timeout)
        self._lookup_timeout = float(lookup_timeout)
        self._system_fallback = system_fallback
        self._ssl_context = ssl_context
        self._preresolve = [normalize_name(n) for n in preresolve]
        self._on_lookup = on_lookup
        self._on_request = on_request
        self._on_error = on_error
        self._clock = clock
        self._wall_clock = wall_clock
        self._transport: T | None = transport
        self._lock = threading.RLock()
        self._closed = False
        self._max_age = float(max_age)
        self._cache_store = None if cache_store is None else as_store(cache_store)
        self._persisted_at = -float("inf")
        self._dirty = False
        if self._cache_store is not None:
            self._restore()
        self._setup()

    def _setup(self) -> None:
        """Start what the I/O flavour needs (threads, ...); called last by ``__init__``."""

    # -- introspection ---------------------------------------------------------------------

    @property
    def dialect(self) -> str:
        """The query dialect (``aliyun``, ``d`` or ``json``)."""
        return self._protocol.dialect

    def peek(self, name: str, qtype: str | int = "A") -> Answer | None:
        """The cached (``cache``) or stale (``stale``) answer, with no request and no
        side effect; None when nothing usable is cached."""
        return self._cache.peek(normalize_name(name), normalize_qtype(qtype), self._clock())

    def server_states(self) -> list[ServerState]:
        """Each server's consecutive failures and seconds left in its backoff."""
        with self._lock:
            return self._pool.states(self._clock())

    def clear(self) -> None:
        """Forget every cached answer (the persistent cache too, when there is one)."""
        with self._lock:
            self._cache.clear()
        self.persist()

    def network_changed(self) -> int:
        """The device changed network: answers steered for the old one may be wrong now.

        Every cached answer becomes stale at once (served while a refresh runs, within
        ``max_stale``), negative answers are dropped, server backoffs are forgotten, and
        the names in use are re-resolved in the background. Returns how many. Wire it to
        the platform's connectivity callback (see the README).
        """
        with self._lock:
            hot = self._cache.mark_stale(self._clock())
            self._pool.reset()
        for key in hot:
            self._refresh_soon(key)
        return len(hot)

    def persist(self) -> bool:
        """Save the cache to ``cache_store`` now (it is saved at most once a second after
        answers arrive, and at close); False when there is no store or it failed."""
        store = self._cache_store
        if store is None:
            return False
        with self._lock:
            records = snapshot(self._cache, self._clock(), self._wall_clock())
            self._dirty = False
            self._persisted_at = time.monotonic()
        try:
            store.save(records)
        except Exception as exc:  # a full disk must not break name resolution
            log.warning("httpdns cache store: saving failed: %s", exc)
            return False
        return True

    def _persist_soon(self) -> None:
        if self._cache_store is None:
            return
        if time.monotonic() - self._persisted_at >= PERSIST_INTERVAL:
            self.persist()
        else:
            self._dirty = True

    def _restore(self) -> None:
        store = self._cache_store
        assert store is not None
        try:
            records = list(store.load())
        except Exception as exc:  # an unreadable store starts empty
            log.warning("httpdns cache store: loading failed: %s", exc)
            return
        with self._lock:
            restore(self._cache, records, self._clock(), self._wall_clock(), self._max_age)

    def invalidate(self, name: str, qtype: str | int | None = None) -> bool:
        """Forget the cached answer of ``name`` (both types unless ``qtype``), e.g. after
        the app failed to connect to every address: the next lookup asks the servers.
        True if something was dropped."""
        norm = normalize_name(name)
        qtypes = ("A", "AAAA") if qtype is None else (normalize_qtype(qtype),)
        with self._lock:
            return any([self._entries.pop((norm, q), None) is not None for q in qtypes])

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for ``https`` servers (the system's trust store by default)."""
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    # -- shared steps ----------------------------------------------------------------------

    @staticmethod
    def _keys(names: Iterable[str], qtype: str | int) -> tuple[QType, list[str]]:
        q = normalize_qtype(qtype)
        return q, list(dict.fromkeys(normalize_name(n) for n in names))

    def _key(self, name: str, qtype: str | int) -> tuple[str, QType]:
        """The normalised cache key; names already cached as given skip normalising."""
        q = _FAST_QTYPES.get(qtype) if isinstance(qtype, str) else None
        if q is None:
            return normalize_name(name), normalize_qtype(qtype)
        if (name, q) in self._entries:
            return name, q
        return normalize_name(name), q

    def _walk(self, request: Request, background: bool, parse: Parse | None = None) -> Walk:
        """Try the servers in order for one request; the caller does the I/O for each
        ``Attempt`` it yields and sends back the outcome. Returns the records and the
        server that answered, raises ``NoServerAvailable`` or ``RequestRejected``."""
        parse = parse or self._protocol.parse
        errors: list[ServerError] = []
        deadline = time.monotonic() + self._lookup_timeout
        with self._lock:
            candidates = self._pool.candidates(self._clock())
        for server in candidates:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                errors.append(ServerError(server.url, "not tried: lookup_timeout reached"))
                break
            started = time.perf_counter()
            outcome = yield Attempt(server, request.path, min(self._timeout, remaining))
            latency = time.perf_counter() - started
            status: int | None = None
            try:
                if isinstance(outcome, Exception):
                    detail = str(outcome) or type(outcome).__name__
                    raise ServerError(server.url, detail) from outcome
                status, body = outcome
                records = parse(request, status, body, server.url)
            except ServerError as exc:
                with self._lock:
                    self._pool.failed(server, self._clock())
                self._emit_request(server, request, latency, status, exc, background)
                errors.append(exc)
                continue
            except RequestRejected as exc:
                with self._lock:
                    self._pool.succeeded(server)
                self._emit_request(server, request, latency, status, exc, background)
                raise
            with self._lock:
                self._pool.succeeded(server)
            self._emit_request(server, request, latency, status, None, background)
            return records, server
        raise NoServerAvailable(request.names, request.qtype, errors)

    def _store(
        self, qtype: QType, records: dict[str, Record], server: Server, hot: bool = False
    ) -> dict[str, Answer]:
        """Cache what a server answered; the answers, marked ``server``. ``hot``: for a
        lookup of the app (not a background refresh or prefetch)."""
        now = self._clock()
        out: dict[str, Answer] = {}
        with self._lock:
            for name, rec in records.items():
                entry = self._cache.store(
                    name, qtype, rec.addresses, rec.ttl, now, server.url, hot=hot
                )
                a = entry.cached
                out[name] = Answer(a.name, a.qtype, a.addresses, a.ttl, "server", a.expires_at,
                                   a.server)  # fmt: skip
        self._persist_soon()
        return out

    # -- dual stack ------------------------------------------------------------------------

    def _both_parts(self) -> tuple[bool, Callable[[str], Request], Parse]:
        """Whether one request answers both families, and how to make and read it."""
        protocol = self._protocol

        def parse(request: Request, status: int, body: bytes, server: str) -> dict[str, Record]:
            return parse_both(protocol, request, status, body, server)

        return one_request(protocol), lambda name: both_request(protocol, name), parse

    def _both_cached(self, norm: str) -> tuple[Answer | None, Answer | None]:
        """The usable cached A and AAAA answers of a name (refreshes scheduled)."""
        out: list[Answer | None] = []
        for q in ("A", "AAAA"):
            answer, refresh = self._cached((norm, q))
            if refresh:
                self._refresh_soon((norm, q))
            out.append(answer)
        return out[0], out[1]

    def _store_both(
        self, norm: str, records: dict[str, Record], server: Server
    ) -> tuple[Answer, Answer]:
        """Cache a dual-stack reply; the A and AAAA answers, marked ``server``."""
        a4 = self._store("A", {norm: records["A"]}, server, hot=True)[norm]
        a6 = self._store("AAAA", {norm: records["AAAA"]}, server, hot=True)[norm]
        return a4, a6

    @staticmethod
    def _dual(norm: str, a4: Answer, a6: Answer, prefer: str) -> DualAnswer:
        if prefer not in ("ipv4", "ipv6"):
            raise ValueError(f"prefer {prefer!r} is not ipv4 or ipv6")
        family: Family = "ipv6" if prefer == "ipv6" else "ipv4"
        return DualAnswer(norm, a4, a6, family)

    def _cached(self, key: Key) -> tuple[Answer | None, bool]:
        """A usable cached answer for a normalised key, marking the entry in use, and
        whether a refresh should start now. (None, False) when nothing usable."""
        now = self._clock()
        entry = self._entries.get(key)
        if entry is None:
            return None, False
        state = entry.state(now)
        if state == DEAD:
            return None, False
        entry.used = True
        return (entry.cached if state == FRESH else entry.stale), now >= entry.refresh_at

    def _not_fresh(self, qtype: QType, names: Iterable[str]) -> list[str]:
        """The names with no fresh cached answer."""
        now = self._clock()
        out = []
        for name in names:
            entry = self._entries.get((name, qtype))
            if entry is None or entry.state(now) != FRESH:
                out.append(name)
        return out

    def _begin_refresh(self, key: Key) -> bool:
        """Claim the refresh of a key; False if one runs already or none is due."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.refreshing or self._closed:
                return False
            self._cache.start_refresh(entry)
            return True

    def _end_refresh(self, key: Key, error: BaseException | None) -> None:
        """After a refresh: on failure, keep the entry and retry after ``backoff``."""
        if error is None:
            return
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.refreshing:
                self._cache.refresh_failed(entry, self._clock())
        self._emit_error("refresh", (key[0],), key[1], error)

    def _due(self) -> tuple[list[Key], float | None]:
        """Keys whose refresh-ahead time has come, and the clock time of the next one."""
        with self._lock:
            keys = [e.key for e in self._cache.due(self._clock())]
            return keys, self._cache.next_due()

    def _system_answer(self, name: str, qtype: QType, addresses: tuple[str, ...]) -> Answer:
        return Answer(name, qtype, addresses, 0.0, "system", 0.0, None)

    def _refresh_soon(self, key: Key) -> None:
        """Start a background refresh of ``key`` (the sync and async resolvers differ)."""
        raise NotImplementedError

    def _split_cached(self, norms: Iterable[str], q: QType) -> tuple[dict[str, Answer], list[str]]:
        """Answers on hand (literals, fresh or stale cache; refreshes scheduled) and the
        names that need a request, for a batch (shared by the sync and async resolvers)."""
        found: dict[str, Answer] = {}
        missing: list[str] = []
        for norm in dict.fromkeys(norms):
            answer = self._literal((norm, q))
            if answer is not None:
                found[norm] = answer
                continue
            answer, refresh = self._cached((norm, q))
            if answer is None:
                missing.append(norm)
                continue
            found[norm] = answer
            if refresh:
                self._refresh_soon((norm, q))
        return found, missing

    def _literal(self, key: tuple[str, QType]) -> Answer | None:
        """An IP literal answers itself (source ``system``, no request); None otherwise."""
        name, qtype = key
        if not (name[-1].isdigit() or ":" in name):
            return None
        try:
            ip = ipaddress.ip_address(name.strip("[]"))
        except ValueError:
            return None
        same = (ip.version == 4) == (qtype == "A")
        return self._system_answer(name, qtype, (str(ip),) if same else ())

    # -- hooks -----------------------------------------------------------------------------

    def _emit_lookup(
        self,
        name: str,
        qtype: str,
        started: float,
        answer: Answer | None,
        error: BaseException | None = None,
    ) -> None:
        hook = self._on_lookup
        if hook is None:
            return
        source: Source | None = answer.source if answer is not None else None
        count = len(answer.addresses) if answer is not None else 0
        event = LookupEvent(name, qtype, source, time.perf_counter() - started, count, error)
        _call(hook, event)

    def _emit_request(
        self,
        server: Server,
        request: Request,
        latency: float,
        status: int | None,
        error: BaseException | None,
        background: bool,
    ) -> None:
        hook = self._on_request
        if hook is not None:
            event = RequestEvent(
                server.url, request.names, request.qtype, latency, status, error, background
            )
            _call(hook, event)

    def _emit_error(
        self, stage: Stage, names: Sequence[str], qtype: str, error: BaseException
    ) -> None:
        if stage != "system":
            log.debug("httpdns %s of %s %s failed: %s", stage, ", ".join(names), qtype, error)
        hook = self._on_error
        if hook is not None:
            _call(hook, ErrorEvent(stage, tuple(names), qtype, error))


def _call(hook: Callable[[Any], None], event: object) -> None:
    try:
        hook(event)
    except Exception:  # a metrics hook must never break name resolution
        log.exception("httpdns_client hook %r failed", hook)
