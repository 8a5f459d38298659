"""The Python client against a real ``httpdns serve --demo`` subprocess.

Requests are counted with the ``on_request`` hook (every HTTP request the client makes
goes through it), never inferred from timing. "Stopping" a server terminates the
subprocess; "restarting" starts a new one on the same port and SQLite file.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from httpdns_client import (
    Answer,
    AsyncResolver,
    ErrorEvent,
    LookupEvent,
    NoServerAvailable,
    RequestEvent,
    RequestRejected,
    ResolveError,
    Resolver,
    SignatureError,
)
from httpdns_client.core import Server
from httpdns_client.sync import http_get

from .conftest import (
    ACCOUNT,
    QUOTES,
    QUOTES_V4,
    QUOTES_V6,
    SECRET,
    SHORT,
    SHORT_ADDRESS,
    TRADE,
    TRADE_V4,
    DemoServer,
    dead_server,
    free_port,
    source_of,
    wait_for,
)

DIALECTS: dict[str, dict[str, Any]] = {
    "d": {"dialect": "d"},
    "json": {"dialect": "json"},
    "aliyun": {"dialect": "aliyun", "account": ACCOUNT},
    "aliyun-signed": {"dialect": "aliyun", "account": ACCOUNT, "secret": SECRET},
}


class Recorder:
    """Collects the hook events of a resolver."""

    def __init__(self) -> None:
        self.requests: list[RequestEvent] = []
        self.errors: list[ErrorEvent] = []
        self.lookups: list[LookupEvent] = []
        self.lock = threading.Lock()

    def hooks(self) -> dict[str, Any]:
        return {
            "on_request": self._add(self.requests),
            "on_error": self._add(self.errors),
            "on_lookup": self._add(self.lookups),
        }

    def _add(self, target: list[Any]) -> Callable[[object], None]:
        def hook(event: object) -> None:
            with self.lock:
                target.append(event)

        return hook

    def ok_requests(self, background: bool | None = None) -> list[RequestEvent]:
        return [
            e
            for e in self.requests
            if e.status == 200 and (background is None or e.background == background)
        ]


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_each_dialect_resolves_a_and_aaaa(demo_server: DemoServer, dialect: str) -> None:
    rec = Recorder()
    with Resolver([demo_server.base], **DIALECTS[dialect], **rec.hooks()) as r:
        a = r.resolve(QUOTES)
        aaaa = r.resolve(QUOTES, "AAAA")
        trade = r.resolve(TRADE)
    assert a.source == "server" and a.server == demo_server.base and a.ttl == 20
    assert a.addresses and set(a.addresses) <= QUOTES_V4
    assert aaaa.addresses and set(aaaa.addresses) <= QUOTES_V6 and aaaa.qtype == "AAAA"
    assert set(trade.addresses) <= TRADE_V4 and trade.ttl == 30
    assert [e.source for e in rec.lookups] == ["server"] * 3


def test_cached_lookup_sends_no_request(demo_server: DemoServer) -> None:
    rec = Recorder()
    with Resolver([demo_server.base], on_request=rec.hooks()["on_request"]) as r:
        first = r.resolve(QUOTES)
        answers = [r.resolve(QUOTES) for _ in range(1000)]
        assert len(rec.requests) == 1
        assert {a.source for a in answers} == {"cache"}
        assert {a.addresses for a in answers} == {first.addresses}


def test_failover_skips_a_dead_server_and_backs_it_off(demo_server: DemoServer) -> None:
    rec = Recorder()
    dead = dead_server()
    with Resolver([dead, demo_server.base], backoff=30.0, **rec.hooks()) as r:
        assert r.resolve(QUOTES).server == demo_server.base
        assert [(e.server, e.status) for e in rec.requests] == [
            (dead, None),
            (demo_server.base, 200),
        ]
        assert r.resolve(TRADE).source == "server"
        assert rec.requests[-1].server == demo_server.base
        assert len(rec.requests) == 3  # the dead server was not tried again
        states = {s.url: s for s in r.server_states()}
        assert states[dead].failures == 1 and states[dead].retry_in > 20
        assert states[demo_server.base].failures == 0


def test_stale_answer_when_server_stops_then_fresh_after_restart(own_server: DemoServer) -> None:
    rec = Recorder()
    with Resolver([own_server.base], backoff=0.2, max_stale=120, **rec.hooks()) as r:
        first = r.resolve(SHORT)
        assert (first.source, first.addresses, first.ttl) == ("server", (SHORT_ADDRESS,), 1)
        own_server.stop()
        wait_for(lambda: source_of(r.peek(SHORT)) == "stale", what="the TTL to pass")

        started = time.perf_counter()
        stale = r.resolve(SHORT)
        elapsed = time.perf_counter() - started
        assert (stale.source, stale.addresses) == ("stale", (SHORT_ADDRESS,))
        assert elapsed < 0.5, elapsed  # served from memory, not after the failed refresh

        wait_for(lambda: any(e.stage == "refresh" for e in rec.errors), what="refresh failure")
        failure = next(e for e in rec.errors if e.stage == "refresh")
        assert failure.names == (SHORT,) and isinstance(failure.error, NoServerAvailable)
        assert "refused" in str(failure.error).lower()

        own_server.start()
        own_server.set_endpoint(SHORT, "192.0.2.78")  # proves the next answer is fresh

        def fresh() -> bool:
            answer = r.resolve(SHORT)
            return answer.source in ("cache", "server") and answer.addresses == ("192.0.2.78",)

        wait_for(fresh, what="a fresh answer after the restart")
        assert r.server_states()[0].failures == 0


def test_stale_answer_does_not_wait_for_a_hanging_refresh(demo_server: DemoServer) -> None:
    hang = threading.Event()
    release = threading.Event()

    def transport(server: Server, path: str, timeout: float) -> tuple[int, bytes]:
        if hang.is_set():
            release.wait(timeout)
        return http_get(server, path, timeout)

    rec = Recorder()
    with Resolver(
        [demo_server.base],
        transport=transport,
        timeout=5.0,
        **rec.hooks(),
    ) as r:
        r.resolve(SHORT)
        wait_for(lambda: source_of(r.peek(SHORT)) == "stale", what="the TTL to pass")
        hang.set()
        started = time.perf_counter()
        assert r.resolve(SHORT).source == "stale"
        assert time.perf_counter() - started < 0.5
        release.set()
        wait_for(lambda: len(rec.ok_requests(background=True)) == 1, what="the refresh")
        assert r.resolve(SHORT).source == "cache"


def test_all_servers_down_and_nothing_cached_falls_back_to_the_system() -> None:
    rec = Recorder()
    with Resolver([dead_server(), dead_server()], **rec.hooks()) as r:
        answer = r.resolve("localhost")
        assert answer.source == "system" and "127.0.0.1" in answer.addresses
        assert len(rec.requests) == 2 and all(e.error is not None for e in rec.requests)
        assert rec.errors[0].stage == "lookup"
        assert isinstance(rec.errors[0].error, NoServerAvailable)
        assert r.resolve("localhost").source == "system"  # not cached, servers backed off
        assert len(rec.requests) == 2
        with pytest.raises(ResolveError, match=r"cannot resolve no-such-host\.invalid"):
            r.resolve("no-such-host.invalid")
    with (
        Resolver([dead_server()], system_fallback=False) as r,
        pytest.raises(ResolveError, match="no HTTP DNS server answered"),
    ):
        r.resolve("localhost")


def test_ttl_expiry_is_honoured(demo_server: DemoServer) -> None:
    rec = Recorder()
    with Resolver([demo_server.base], **rec.hooks()) as r:
        first = r.resolve(SHORT)
        assert first.source == "server" and first.ttl == 1
        if time.monotonic() < first.expires_at:
            assert source_of(r.peek(SHORT)) == "cache"
        # (peek, not resolve: a name in use would be refreshed ahead at 75 % of its TTL)
        wait_for(lambda: time.monotonic() >= first.expires_at + 0.05, what="expiry")
        assert r.resolve(SHORT).source == "stale"  # past the TTL: never served as fresh
        wait_for(lambda: len(rec.ok_requests(background=True)) >= 1, what="the refresh")
        renewed = r.peek(SHORT)
        assert renewed is not None and renewed.expires_at > first.expires_at
    with Resolver([demo_server.base], max_stale=0, **rec.hooks()) as r:
        first = r.resolve(SHORT)
        wait_for(lambda: time.monotonic() >= first.expires_at + 0.05, what="expiry")
        assert r.resolve(SHORT).source == "server"  # no staleness allowed: fetched again


def test_refresh_ahead_keeps_names_in_use_fresh(demo_server: DemoServer) -> None:
    rec = Recorder()
    with Resolver([demo_server.base], on_request=rec.hooks()["on_request"]) as r:
        first = r.resolve(SHORT)
        assert r.resolve(SHORT).source == "cache"  # in use
        wait_for(lambda: len(rec.ok_requests(background=True)) >= 1, what="refresh-ahead")
        ahead = rec.ok_requests(background=True)[0]
        assert ahead.names == (SHORT,)
        renewed = r.peek(SHORT)
        assert renewed is not None and renewed.expires_at > first.expires_at
        # it ran before the first answer expired (75 % of the 1 s TTL)
        assert renewed.expires_at - 1 < first.expires_at


def test_negative_answers_are_cached(demo_server: DemoServer) -> None:
    rec = Recorder()
    with Resolver([demo_server.base], negative_ttl=30, **rec.hooks()) as r:
        nope = r.resolve("nope.demo.example")
        assert nope.negative and nope.source == "server"
        assert r.resolve("nope.demo.example").source == "cache"
        assert len(rec.requests) == 1


def test_signed_client_works_and_a_wrong_secret_fails_clearly(demo_server: DemoServer) -> None:
    with Resolver([demo_server.base], dialect="aliyun", account=ACCOUNT, secret=SECRET) as r:
        assert set(r.resolve(QUOTES).addresses) <= QUOTES_V4
        assert set(r.resolve_many([QUOTES, TRADE])[TRADE].addresses) <= TRADE_V4
    rec = Recorder()
    with Resolver(
        [demo_server.base],
        dialect="aliyun",
        account=ACCOUNT,
        secret="wrong-secret",
        **rec.hooks(),
    ) as r:
        with pytest.raises(SignatureError) as info:
            r.resolve(QUOTES)
        message = str(info.value)
        assert "InvalidSignature" in message and f"check the secret of account {ACCOUNT}" in message
        assert info.value.status == 403
        assert r.server_states()[0].failures == 0  # the server is fine, the secret is not
        assert len(rec.requests) == 1


def test_unknown_account_is_rejected(demo_server: DemoServer) -> None:
    with (
        Resolver([demo_server.base], dialect="aliyun", account="999") as r,
        pytest.raises(RequestRejected, match="unknown account"),
    ):
        r.resolve(QUOTES)


def test_batch_resolve(demo_server: DemoServer) -> None:
    rec = Recorder()
    names = [QUOTES, TRADE, SHORT, "nope.demo.example", "Quotes.Demo.Example"]
    with Resolver([demo_server.base], dialect="aliyun", account=ACCOUNT, **rec.hooks()) as r:
        out = r.resolve_many(names)
        assert list(out) == names
        assert len(rec.requests) == 1  # four distinct names, one batch request
        assert set(out[QUOTES].addresses) <= QUOTES_V4 and out["Quotes.Demo.Example"] == out[QUOTES]
        assert out[SHORT].addresses == (SHORT_ADDRESS,) and out["nope.demo.example"].negative
        again = r.resolve_many([QUOTES, TRADE])
        assert {a.source for a in again.values()} == {"cache"} and len(rec.requests) == 1
    rec = Recorder()
    with Resolver([demo_server.base], **rec.hooks()) as r:
        out = r.resolve_many([QUOTES, TRADE], "AAAA")
        assert len(rec.requests) == 2 and out[TRADE].negative  # the d dialect: one each
        assert set(out[QUOTES].addresses) <= QUOTES_V6


def test_preresolve_warms_the_cache(demo_server: DemoServer) -> None:
    rec = Recorder()
    with Resolver([demo_server.base], preresolve=[QUOTES, TRADE], **rec.hooks()) as r:
        assert r.wait_ready(10)
        assert len(rec.requests) == 2 and all(e.background for e in rec.requests)
        assert r.resolve(QUOTES).source == "cache" and r.resolve(TRADE).source == "cache"
        assert len(rec.requests) == 2


# -- asyncio ---------------------------------------------------------------------------------


async def test_async_resolver_end_to_end(demo_server: DemoServer) -> None:
    rec = Recorder()
    async with AsyncResolver(
        [dead_server(), demo_server.base], preresolve=[TRADE], **rec.hooks()
    ) as r:
        assert await r.wait_ready(10)
        a = await r.resolve(QUOTES)
        assert a.source == "server" and set(a.addresses) <= QUOTES_V4
        count = len(rec.requests)
        cached = [await r.resolve(QUOTES) for _ in range(100)]
        assert {c.source for c in cached} == {"cache"} and len(rec.requests) == count
        assert (await r.resolve(TRADE)).source == "cache"
        aaaa = await r.resolve(QUOTES, "AAAA")
        assert set(aaaa.addresses) <= QUOTES_V6
        many = await r.resolve_many([QUOTES, SHORT])
        assert many[SHORT].addresses == (SHORT_ADDRESS,)
        results = await asyncio.gather(*(r.resolve(f"n{i}.demo.example") for i in range(3)))
        assert all(x.negative for x in results)


async def test_async_stale_then_fresh_after_restart(own_server: DemoServer) -> None:
    rec = Recorder()
    async with AsyncResolver([own_server.base], backoff=0.2, **rec.hooks()) as r:
        first = await r.resolve(SHORT)
        assert first.source == "server"
        await asyncio.to_thread(own_server.stop)
        while time.monotonic() < first.expires_at + 0.05:
            await asyncio.sleep(0.02)
        stale = await r.resolve(SHORT)
        assert (stale.source, stale.addresses) == ("stale", (SHORT_ADDRESS,))
        async with asyncio.timeout(10):
            while not any(e.stage == "refresh" for e in rec.errors):
                await asyncio.sleep(0.02)
        await asyncio.to_thread(own_server.start)
        await asyncio.to_thread(own_server.set_endpoint, SHORT, "192.0.2.79")
        answer: Answer = stale
        async with asyncio.timeout(10):
            while not (
                answer.source in ("cache", "server") and answer.addresses == ("192.0.2.79",)
            ):
                await asyncio.sleep(0.05)
                answer = await r.resolve(SHORT)


async def test_async_fallback_and_signature_errors(demo_server: DemoServer) -> None:
    async with AsyncResolver([dead_server()]) as r:
        answer = await r.resolve("localhost")
        assert answer.source == "system" and "127.0.0.1" in answer.addresses
    async with AsyncResolver(
        [demo_server.base], dialect="aliyun", account=ACCOUNT, secret="nope"
    ) as r:
        with pytest.raises(SignatureError, match="InvalidSignature"):
            await r.resolve(QUOTES)
    async with AsyncResolver(
        [demo_server.base], dialect="aliyun", account=ACCOUNT, secret=SECRET
    ) as r:
        assert set((await r.resolve(QUOTES)).addresses) <= QUOTES_V4


# -- HTTPS servers, bootstrapped by address ---------------------------------------------------


async def test_https_server_by_address_with_tls_hostname(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("httpdns.test")  # the certificate names the service, not its address
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    https_port = free_port()
    server = DemoServer(
        tmp_path,
        "--https", f"127.0.0.1:{https_port}",
        "--tls-cert", str(tmp_path / "server.pem"), "--tls-key", str(tmp_path / "server.pem"),
    )  # fmt: skip
    await asyncio.to_thread(server.start)
    try:
        trusted = ssl.create_default_context()
        ca.configure_trust(trusted)
        url = f"https://127.0.0.1:{https_port}"
        with Resolver([url], ssl_context=trusted, tls_hostname="httpdns.test") as r:
            answer = await asyncio.to_thread(r.resolve, QUOTES)
            assert answer.server == url and set(answer.addresses) <= QUOTES_V4
        async with AsyncResolver([url], ssl_context=trusted, tls_hostname="httpdns.test") as ar:
            assert set((await ar.resolve(QUOTES)).addresses) <= QUOTES_V4
        # Without tls_hostname the certificate does not match the address: a server failure.
        rec = Recorder()
        async with AsyncResolver([url], ssl_context=trusted, **rec.hooks()) as ar:
            assert (await ar.resolve("localhost")).source == "system"
            assert "certificate" in str(rec.requests[0].error).lower()
    finally:
        await asyncio.to_thread(server.stop)
