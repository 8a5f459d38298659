"""``AsyncResolver``: the asyncio client (standard library only), with background
refreshes and refresh-ahead as tasks of the running loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any

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

AsyncTransport = Callable[[Server, str, float], Awaitable[tuple[int, bytes]]]
"""``async (server, path, timeout) -> (status, body)``; raises on network failure."""


class AsyncResolver(ResolverBase[AsyncTransport]):
    """The asyncio flavour of ``Resolver``: same options, same behaviour, awaitable.

    Use it from one event loop::

        async with AsyncResolver(["http://203.0.113.10:8053"], preresolve=["api.example.com"]) as r:
            answer = await r.resolve("api.example.com")

    Background work (preresolve, refresh-ahead, stale refreshes) runs as tasks of that
    loop, started by ``start()``/``async with`` or by the first lookup, and stopped by
    ``close()``.
    """

    def _setup(self) -> None:
        if self._transport is None:
            self._transport = self._http_get
        self._inflight: dict[Key, asyncio.Future[Answer]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wake: asyncio.Event | None = None
        self._ready: asyncio.Task[int] | None = None

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background tasks (refresh-ahead timer, preresolve)."""
        self._start()

    def _start(self) -> None:
        if self._wake is not None or self._closed:
            return
        self._wake = asyncio.Event()
        self._spawn(self._ahead_loop())
        if self._preresolve:
            self._ready = self._spawn(self.prefetch(self._preresolve))

    async def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait for the ``preresolve`` names; True when done."""
        self._start()
        if self._ready is None:
            return True
        done, _ = await asyncio.wait({self._ready}, timeout=timeout)
        return bool(done)

    async def close(self) -> None:
        """Save the persistent cache, cancel the background tasks and wait for them."""
        if not self._closed:
            self.persist()
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> AsyncResolver:
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- public API ------------------------------------------------------------------------

    async def resolve(self, name: str, qtype: str | int = "A") -> Answer:
        """The addresses of ``name``; see ``Resolver.resolve``."""
        entry = self._entries.get((name, qtype))  # type: ignore[arg-type]
        if entry is not None and self._on_lookup is None:
            now = self._clock()
            if now < entry.expires_at:
                entry.used = True
                if now >= entry.refresh_at:
                    self._refresh_soon(entry.key)
                return entry.cached
        return await self._resolve(name, qtype)

    async def resolve_many(self, names: Iterable[str], qtype: str | int = "A") -> dict[str, Answer]:
        """Resolve several names at once; see ``Resolver.resolve_many``."""
        self._start()
        started = time.perf_counter()
        names = list(names)
        q = normalize_qtype(qtype)
        wanted = {n: normalize_name(n) for n in names}
        found, missing = self._split_cached(wanted.values(), q)
        if missing:
            answers, failures = await self._fetch(q, missing, background=False)
            found.update(answers)
            for request, error in failures:
                for norm in request.names:
                    found[norm] = await self._system_or_empty((norm, q), error)
        out = {name: found[norm] for name, norm in wanted.items()}
        for name, answer in out.items():
            self._emit_lookup(name, q, started, answer)
        return out

    async def resolve_both(self, name: str, prefer: str = "ipv4") -> DualAnswer:
        """A and AAAA in one request where the dialect has one; see
        ``Resolver.resolve_both``."""
        self._start()
        self._dual(name, _EMPTY_A, _EMPTY_AAAA, prefer)  # checks prefer
        norm = normalize_name(name)
        a4: Answer | None = self._literal((norm, "A"))
        a6: Answer | None = self._literal((norm, "AAAA"))
        if a4 is None or a6 is None:
            a4, a6 = self._both_cached(norm)
        if a4 is None or a6 is None:
            together, make, parse = self._both_parts()
            if not together:
                got4, got6 = await asyncio.gather(
                    self._family((norm, "A")) if a4 is None else _ready(a4),
                    self._family((norm, "AAAA")) if a6 is None else _ready(a6),
                )
                a4, a6 = got4, got6
                if a4.source == a6.source == "system" and not a4.addresses and not a6.addresses:
                    raise ResolveError(norm, "A+AAAA", [])
            else:
                try:
                    records, server = await self._drive(self._walk(make(norm), False, parse))
                    a4, a6 = self._store_both(norm, records, server)
                except NoServerAvailable as exc:
                    a4 = a4 or await self._system_or_empty((norm, "A"), exc)
                    a6 = a6 or await self._system_or_empty((norm, "AAAA"), exc)
                    if not a4.addresses and not a6.addresses:
                        raise ResolveError(norm, "A+AAAA", [exc]) from exc
        return self._dual(norm, a4, a6, prefer)

    async def _family(self, key: tuple[str, QType]) -> Answer:
        """One family's answer for ``resolve_both`` (an empty ``system`` one on failure)."""
        try:
            return await self._lookup(key)
        except ResolveError as exc:
            self._emit_error("system", (key[0],), key[1], exc)
            return self._system_answer(key[0], key[1], ())

    async def prefetch(self, names: Iterable[str], qtypes: Iterable[str | int] = ("A",)) -> int:
        """Fetch names that are not freshly cached; see ``Resolver.prefetch``."""
        fetched = 0
        names = list(names)
        for qtype in qtypes:
            q, norms = self._keys(names, qtype)
            todo = self._not_fresh(q, norms)
            if not todo:
                continue
            try:
                answers, failures = await self._fetch(q, todo, background=True)
            except Exception as exc:
                self._emit_error("prefetch", todo, q, exc)
                continue
            fetched += len(answers)
            for request, error in failures:
                self._emit_error("prefetch", request.names, q, error)
        return fetched

    # -- lookups ---------------------------------------------------------------------------

    async def _resolve(self, name: str, qtype: str | int) -> Answer:
        self._start()
        started = time.perf_counter()
        try:
            key = self._key(name, qtype)
            answer = await self._lookup(key)
        except BaseException as exc:
            self._emit_lookup(name, str(qtype), started, None, exc)
            raise
        self._emit_lookup(name, key[1], started, answer)
        return answer

    async def _lookup(self, key: tuple[str, QType]) -> Answer:
        literal = self._literal(key)
        if literal is not None:
            return literal
        answer, refresh = self._cached(key)
        if answer is not None:
            if refresh:
                self._refresh_soon(key)
            return answer
        try:
            return await self._fetch_key(key, background=False)
        except NoServerAvailable as exc:
            return await self._system(key, exc)

    async def _fetch_key(self, key: tuple[str, QType], background: bool) -> Answer:
        """Fetch one key, sharing a request already in flight for it."""
        while (shared := self._inflight.get(key)) is not None:
            try:
                return await asyncio.shield(shared)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if shared.cancelled() and task is not None and not task.cancelling():
                    continue  # the owner was cancelled, not us: fetch ourselves
                raise
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            answers, failures = await self._fetch(key[1], [key[0]], background)
            if failures:
                raise failures[0][1]
            future.set_result(answers[key[0]])
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it, nobody else need
        finally:
            if self._inflight.get(key) is future:
                del self._inflight[key]
        return future.result()

    async def _fetch(
        self, qtype: QType, names: list[str], background: bool
    ) -> tuple[dict[str, Answer], list[tuple[Request, NoServerAvailable]]]:
        requests = self._protocol.requests(qtype, names)

        async def one(request: Request) -> tuple[dict[str, Answer], NoServerAvailable | None]:
            try:
                records, server = await self._drive(self._walk(request, background))
            except NoServerAvailable as exc:
                return {}, exc
            return self._store(qtype, records, server, hot=not background), None

        if len(requests) == 1:
            results = [await one(requests[0])]
        else:
            results = list(await asyncio.gather(*(one(r) for r in requests)))
        answers: dict[str, Answer] = {}
        failures: list[tuple[Request, NoServerAvailable]] = []
        for request, (got, error) in zip(requests, results, strict=True):
            answers.update(got)
            if error is not None:
                failures.append((request, error))
        return answers, failures

    async def _drive(self, walk: Walk) -> tuple[dict[str, Record], Server]:
        transport = self._transport
        assert transport is not None
        try:
            attempt = next(walk)
            while True:
                outcome: Outcome
                try:
                    async with asyncio.timeout(attempt.timeout):
                        outcome = await transport(attempt.server, attempt.path, attempt.timeout)
                except Exception as exc:
                    outcome = exc
                attempt = walk.send(outcome)
        except StopIteration as stop:
            result: tuple[dict[str, Record], Server] = stop.value
            return result
        finally:
            walk.close()

    async def _system(self, key: tuple[str, QType], cause: BaseException) -> Answer:
        name, qtype = key
        self._emit_error("lookup", (name,), qtype, cause)
        if not self._system_fallback:
            raise ResolveError(name, qtype, [cause])
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                name, None, family=family_of(qtype), type=socket.SOCK_STREAM
            )
        except (OSError, UnicodeError) as exc:
            raise ResolveError(name, qtype, [cause, exc]) from exc
        addresses = addresses_of(infos)
        if not addresses:
            raise ResolveError(name, qtype, [cause])
        return self._system_answer(name, qtype, addresses)

    async def _system_or_empty(self, key: tuple[str, QType], cause: BaseException) -> Answer:
        try:
            return await self._system(key, cause)
        except ResolveError as exc:
            self._emit_error("system", (key[0],), key[1], exc)
            return self._system_answer(key[0], key[1], ())

    # -- background ------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _refresh_soon(self, key: Key) -> None:
        if self._begin_refresh(key):
            self._spawn(self._refresh(key))

    async def _refresh(self, key: Key) -> None:
        error: BaseException | None = None
        try:
            await self._fetch_key((key[0], normalize_qtype(key[1])), background=True)
        except Exception as exc:
            error = exc
        self._end_refresh(key, error)

    async def _ahead_loop(self) -> None:
        wake = self._wake
        assert wake is not None
        while not self._closed:
            keys, next_due = self._due()
            for key in keys:
                self._refresh_soon(key)
            wait = None if next_due is None else max(0.0, next_due - self._clock())
            if self._dirty:  # answers arrived since the last save: save within a second
                self._persist_soon()
                if self._dirty:
                    wait = PERSIST_INTERVAL if wait is None else min(wait, PERSIST_INTERVAL)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await wake.wait()
            wake.clear()

    def _store(
        self, qtype: QType, records: dict[str, Record], server: Server, hot: bool = False
    ) -> dict[str, Answer]:
        out = super()._store(qtype, records, server, hot)
        if self._wake is not None:
            self._wake.set()
        return out

    # -- HTTP ------------------------------------------------------------------------------

    async def _http_get(self, server: Server, path: str, timeout: float) -> tuple[int, bytes]:
        tls = self.ssl_context() if server.scheme == "https" else None
        return await http_get(server, path, timeout, ssl_context=tls, pins=self._pins)


_EMPTY_A = Answer("", "A", (), 0.0, "system", 0.0)
_EMPTY_AAAA = Answer("", "AAAA", (), 0.0, "system", 0.0)


async def _ready(answer: Answer) -> Answer:
    return answer


async def http_get(
    server: Server,
    path: str,
    timeout: float,
    *,
    ssl_context: ssl.SSLContext | None = None,
    pins: frozenset[str] = frozenset(),
) -> tuple[int, bytes]:
    """The default async transport: one ``GET`` over a fresh connection, bounded by
    ``timeout``; ``(status, body)``. With ``pins``, the certificate's key must be one of
    them (``PinMismatch``). Raises ``OSError``/``TimeoutError``/``ValueError``."""
    tls = (ssl_context or ssl.create_default_context()) if server.scheme == "https" else None
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            server.host,
            server.port,
            ssl=tls,
            server_hostname=(server.tls_hostname or server.host) if tls else None,
        )
        buf = bytearray()
        try:
            if tls is not None and pins:
                tls_object = writer.get_extra_info("ssl_object")
                check_pin(tls_object.getpeercert(binary_form=True), pins, server.url)
            writer.write(http_request(server, path))
            await writer.drain()
            while chunk := await reader.read(65536):
                buf += chunk
                if len(buf) > MAX_RESPONSE:
                    raise ValueError("the answer is too large")
                if response_complete(buf):
                    break
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
    return parse_http_response(bytes(buf))
