"""``Resolver``: the blocking client, thread-safe, with background refreshes on a small
thread pool and a timer thread for refresh-ahead."""

from __future__ import annotations

import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

from ._base import PERSIST_INTERVAL, Outcome, ResolverBase, Walk, addresses_of, family_of
from .core import (
    Answer,
    DualAnswer,
    Key,
    NoServerAvailable,
    QType,
    ResolveError,
    Server,
    normalize_name,
    normalize_qtype,
)
from .pinning import check_pin
from .protocol import (
    MAX_RESPONSE,
    Record,
    Request,
    http_request,
    parse_http_response,
    response_complete,
)

SyncTransport = Callable[[Server, str, float], tuple[int, bytes]]
"""``(server, path, timeout) -> (status, body)``; raises on network failure."""


class Resolver(ResolverBase[SyncTransport]):
    """A blocking HTTP DNS client with a TTL cache.

    ``resolve`` answers from the cache when it can (no request), serves a stale answer
    at once while a background refresh runs (for at most ``max_stale`` seconds past the
    TTL), refreshes names in use at 75 % of their TTL, fails over between ``servers``
    (backing off a failed one) and, when no server answers and nothing usable is cached,
    asks the system resolver. Each ``Answer.source`` says which of these it was.

    Example::

        r = Resolver(["http://203.0.113.10:8053", "http://198.51.100.10:8053"],
                     preresolve=["api.example.com"])
        answer = r.resolve("api.example.com")   # Answer(addresses=(...), source="cache")

    Hooks (``on_lookup``, ``on_request``, ``on_error``) may be called from background
    threads. Call ``close()`` (or use ``with``) when done.
    """

    def _setup(self) -> None:
        if self._transport is None:
            self._transport = self._http_get
        self._inflight: dict[Key, Future[Answer]] = {}
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="httpdns-refresh")
        self._wake = threading.Event()
        # The timer thread holds the resolver weakly: a resolver dropped without close()
        # is still collected, and its finalizer wakes the thread to end it.
        self._timer = threading.Thread(
            target=_ahead_loop,
            args=(weakref.ref(self), self._wake),
            name="httpdns-refresh-ahead",
            daemon=True,
        )
        self._timer.start()
        weakref.finalize(self, self._wake.set)
        self._ready: Future[int] | None = None
        if self._preresolve:
            self._ready = self._executor.submit(self.prefetch, self._preresolve)

    # -- public API ------------------------------------------------------------------------

    def resolve(self, name: str, qtype: str | int = "A") -> Answer:
        """The addresses of ``name`` (``qtype`` ``"A"`` or ``"AAAA"``).

        Never returns an empty-handed failure: raises ``ResolveError`` when no server
        answered, nothing usable is cached and the system resolver failed too, and
        ``RequestRejected``/``SignatureError`` when the servers refuse the request.
        An answer with no address is a negative answer (the service does not know the
        name: use normal DNS).
        """
        entry = self._entries.get((name, qtype))  # type: ignore[arg-type]
        if entry is not None and self._on_lookup is None:
            now = self._clock()
            if now < entry.expires_at:
                entry.used = True
                if now >= entry.refresh_at:
                    self._refresh_soon(entry.key)
                return entry.cached
        return self._resolve(name, qtype)

    def resolve_many(self, names: Iterable[str], qtype: str | int = "A") -> dict[str, Answer]:
        """Resolve several names at once (one request per five names with the aliyun
        dialect, parallel requests otherwise); keys are the names as given.

        A name for which nothing at all could be had maps to an empty answer marked
        ``system`` (reported through ``on_error``) rather than failing the batch.
        """
        started = time.perf_counter()
        names = list(names)
        q = normalize_qtype(qtype)
        wanted = {n: normalize_name(n) for n in names}
        found, missing = self._split_cached(wanted.values(), q)
        if missing:
            answers, failures = self._fetch(q, missing, background=False)
            found.update(answers)
            for request, error in failures:
                for norm in request.names:
                    found[norm] = self._system_or_empty((norm, q), error)
        out = {name: found[norm] for name, norm in wanted.items()}
        for name, answer in out.items():
            self._emit_lookup(name, q, started, answer)
        return out

    def resolve_both(self, name: str, prefer: str = "ipv4") -> DualAnswer:
        """The A and AAAA answers of ``name`` in one request where the dialect has one
        (``d``: ``type=addrs``; ``aliyun``: ``query=4,6``; ``json`` asks twice), from the
        cache when both are there. ``prefer`` (``"ipv4"`` or ``"ipv6"``) orders
        ``DualAnswer.addresses``. Raises like ``resolve`` when neither family can be had.
        """
        self._dual(name, _EMPTY_A, _EMPTY_AAAA, prefer)  # checks prefer
        norm = normalize_name(name)
        a4: Answer | None = self._literal((norm, "A"))
        a6: Answer | None = self._literal((norm, "AAAA"))
        if a4 is None or a6 is None:
            a4, a6 = self._both_cached(norm)
        if a4 is None or a6 is None:
            together, make, parse = self._both_parts()
            if not together:
                a4 = a4 or self._family((norm, "A"))
                a6 = a6 or self._family((norm, "AAAA"))
                if a4.source == a6.source == "system" and not a4.addresses and not a6.addresses:
                    raise ResolveError(norm, "A+AAAA", [])
            else:
                try:
                    records, server = self._drive(self._walk(make(norm), False, parse))
                    a4, a6 = self._store_both(norm, records, server)
                except NoServerAvailable as exc:
                    a4 = a4 or self._system_or_empty((norm, "A"), exc)
                    a6 = a6 or self._system_or_empty((norm, "AAAA"), exc)
                    if not a4.addresses and not a6.addresses:
                        raise ResolveError(norm, "A+AAAA", [exc]) from exc
        return self._dual(norm, a4, a6, prefer)

    def _family(self, key: tuple[str, QType]) -> Answer:
        """One family's answer for ``resolve_both`` (an empty ``system`` one on failure)."""
        try:
            return self._lookup(key)
        except ResolveError as exc:
            self._emit_error("system", (key[0],), key[1], exc)
            return self._system_answer(key[0], key[1], ())

    def prefetch(self, names: Iterable[str], qtypes: Iterable[str | int] = ("A",)) -> int:
        """Fetch names that are not freshly cached (no system fallback; failures go to
        ``on_error`` with stage ``prefetch``). Returns how many answers were fetched."""
        fetched = 0
        for qtype in qtypes:
            q, norms = self._keys(names, qtype)
            todo = self._not_fresh(q, norms)
            if not todo:
                continue
            try:
                answers, failures = self._fetch(q, todo, background=True)
            except Exception as exc:
                self._emit_error("prefetch", todo, q, exc)
                continue
            fetched += len(answers)
            for request, error in failures:
                self._emit_error("prefetch", request.names, q, error)
        return fetched

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait for the ``preresolve`` names given at construction; True when done."""
        if self._ready is None:
            return True
        try:
            self._ready.result(timeout)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        """Save the persistent cache, stop the background threads (a running request is
        abandoned)."""
        if not self._closed:
            self.persist()
        self._closed = True
        self._wake.set()
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._timer is not threading.current_thread():
            self._timer.join(1.0)

    def __enter__(self) -> Resolver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- lookups ---------------------------------------------------------------------------

    def _resolve(self, name: str, qtype: str | int) -> Answer:
        started = time.perf_counter()
        try:
            key = self._key(name, qtype)
            answer = self._lookup(key)
        except BaseException as exc:
            self._emit_lookup(name, str(qtype), started, None, exc)
            raise
        self._emit_lookup(name, key[1], started, answer)
        return answer

    def _lookup(self, key: tuple[str, QType]) -> Answer:
        literal = self._literal(key)
        if literal is not None:
            return literal
        answer, refresh = self._cached(key)
        if answer is not None:
            if refresh:
                self._refresh_soon(key)
            return answer
        try:
            return self._fetch_key(key, background=False)
        except NoServerAvailable as exc:
            return self._system(key, exc)

    def _fetch_key(self, key: tuple[str, QType], background: bool) -> Answer:
        """Fetch one key, sharing a request already in flight for it."""
        with self._lock:
            future = self._inflight.get(key)
            owner = future is None
            if future is None:
                future = self._inflight[key] = Future()
        if not owner:
            return future.result()
        try:
            answers, failures = self._fetch(key[1], [key[0]], background)
            if failures:
                raise failures[0][1]
            future.set_result(answers[key[0]])
        except BaseException as exc:
            future.set_exception(exc)
        finally:
            with self._lock:
                self._inflight.pop(key, None)
        return future.result()

    def _fetch(
        self, qtype: QType, names: list[str], background: bool
    ) -> tuple[dict[str, Answer], list[tuple[Request, NoServerAvailable]]]:
        """Fetch names from the servers; the answers, and the requests no server answered.
        ``RequestRejected`` propagates."""
        requests = self._protocol.requests(qtype, names)

        def one(request: Request) -> tuple[dict[str, Answer], NoServerAvailable | None]:
            try:
                records, server = self._drive(self._walk(request, background))
            except NoServerAvailable as exc:
                return {}, exc
            return self._store(qtype, records, server, hot=not background), None

        if len(requests) == 1:
            results = [one(requests[0])]
        else:
            with ThreadPoolExecutor(min(8, len(requests))) as pool:
                results = list(pool.map(one, requests))
        answers: dict[str, Answer] = {}
        failures: list[tuple[Request, NoServerAvailable]] = []
        for request, (got, error) in zip(requests, results, strict=True):
            answers.update(got)
            if error is not None:
                failures.append((request, error))
        return answers, failures

    def _drive(self, walk: Walk) -> tuple[dict[str, Record], Server]:
        transport = self._transport
        assert transport is not None
        try:
            attempt = next(walk)
            while True:
                outcome: Outcome
                try:
                    outcome = transport(attempt.server, attempt.path, attempt.timeout)
                except Exception as exc:
                    outcome = exc
                attempt = walk.send(outcome)
        except StopIteration as stop:
            result: tuple[dict[str, Record], Server] = stop.value
            return result

    def _system(self, key: tuple[str, QType], cause: BaseException) -> Answer:
        """The system resolver's answer (source ``system``) or ``ResolveError``."""
        name, qtype = key
        self._emit_error("lookup", (name,), qtype, cause)
        if not self._system_fallback:
            raise ResolveError(name, qtype, [cause])
        try:
            infos = socket.getaddrinfo(name, None, family_of(qtype), socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise ResolveError(name, qtype, [cause, exc]) from exc
        addresses = addresses_of(infos)
        if not addresses:
            raise ResolveError(name, qtype, [cause])
        return self._system_answer(name, qtype, addresses)

    def _system_or_empty(self, key: tuple[str, QType], cause: BaseException) -> Answer:
        try:
            return self._system(key, cause)
        except ResolveError as exc:
            self._emit_error("system", (key[0],), key[1], exc)
            return self._system_answer(key[0], key[1], ())

    # -- background ------------------------------------------------------------------------

    def _refresh_soon(self, key: Key) -> None:
        if not self._begin_refresh(key):
            return
        try:
            self._executor.submit(self._refresh, key)
        except RuntimeError as exc:  # closed
            self._end_refresh(key, exc)

    def _refresh(self, key: Key) -> None:
        error: BaseException | None = None
        try:
            self._fetch_key((key[0], normalize_qtype(key[1])), background=True)
        except Exception as exc:
            error = exc
        self._end_refresh(key, error)

    def _store(
        self, qtype: QType, records: dict[str, Record], server: Server, hot: bool = False
    ) -> dict[str, Answer]:
        out = super()._store(qtype, records, server, hot)
        self._wake.set()
        return out

    # -- HTTP ------------------------------------------------------------------------------

    def _http_get(self, server: Server, path: str, timeout: float) -> tuple[int, bytes]:
        tls = self.ssl_context() if server.scheme == "https" else None
        return http_get(server, path, timeout, ssl_context=tls, pins=self._pins)


_EMPTY_A = Answer("", "A", (), 0.0, "system", 0.0)
_EMPTY_AAAA = Answer("", "AAAA", (), 0.0, "system", 0.0)


def _ahead_loop(ref: weakref.ReferenceType[Resolver], wake: threading.Event) -> None:
    """Refresh names in use at 75 % of their TTL; sleeps until the next one is due."""
    while True:
        resolver = ref()
        if resolver is None or resolver._closed:
            return
        keys, next_due = resolver._due()
        for key in keys:
            resolver._refresh_soon(key)
        wait = None if next_due is None else max(0.0, next_due - resolver._clock())
        if resolver._dirty:  # answers arrived since the last save: save within a second
            resolver._persist_soon()
            if resolver._dirty:
                wait = PERSIST_INTERVAL if wait is None else min(wait, PERSIST_INTERVAL)
        del resolver
        wake.wait(wait)
        wake.clear()


def http_get(
    server: Server,
    path: str,
    timeout: float,
    *,
    ssl_context: ssl.SSLContext | None = None,
    pins: frozenset[str] = frozenset(),
) -> tuple[int, bytes]:
    """The default sync transport: one ``GET`` over a fresh connection, bounded by
    ``timeout`` in all; ``(status, body)``. With ``pins``, the certificate's key must be
    one of them (``PinMismatch``). Raises ``OSError``/``ValueError``."""
    deadline = time.monotonic() + timeout
    sock = socket.create_connection((server.host, server.port), timeout=timeout)
    try:
        if server.scheme == "https":
            tls = ssl_context or ssl.create_default_context()
            sock = tls.wrap_socket(sock, server_hostname=server.tls_hostname or server.host)
            if pins:
                assert isinstance(sock, ssl.SSLSocket)
                check_pin(sock.getpeercert(binary_form=True), pins, server.url)
        sock.sendall(http_request(server, path))
        buf = bytearray()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete answer within {timeout:g} s")
            sock.settimeout(remaining)
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
            if len(buf) > MAX_RESPONSE:
                raise ValueError("the answer is too large")
            if response_complete(buf):
                break
        return parse_http_response(bytes(buf))
    finally:
        sock.close()
