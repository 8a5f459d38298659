"""The aiohttp resolver: an HTTPS page on 127.0.0.1 with a certificate for ``app.test``
(from a trustme CA), ``app.test`` registered in the real httpdns server's registry, and
``https://app.test:PORT/`` fetched through ``HttpDnsResolver``: the address comes from
HTTP DNS while TLS still uses the host name for SNI and the certificate check."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
import trustme
from aiohttp import web
from httpdns_client import AsyncResolver, RequestEvent
from httpdns_client.aiohttp_resolver import HttpDnsResolver

from .conftest import DemoServer

APP = "app.test"
OTHER = "other.test"  # registered too, but the certificate does not name it


@dataclass
class HttpsSite:
    port: int
    ca: trustme.CA
    sni: list[str | None]


@pytest.fixture
async def https_site() -> AsyncIterator[HttpsSite]:
    """An aiohttp HTTPS server on 127.0.0.1 with a certificate for app.test and localhost."""
    ca = trustme.CA()
    cert = ca.issue_cert(APP, "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    sni: list[str | None] = []

    def record_sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        sni.append(name)  # the name the client sent in the TLS handshake

    server_ctx.sni_callback = record_sni

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"hello from {request.host}")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield HttpsSite(port, ca, sni)
    finally:
        await runner.cleanup()


async def test_fetches_an_https_page_with_sni_through_http_dns(
    demo_server: DemoServer, https_site: HttpsSite
) -> None:
    demo_server.register(APP, "127.0.0.1", ttl=30, port=https_site.port)
    demo_server.register(OTHER, "127.0.0.1", ttl=30, port=https_site.port)
    requests: list[RequestEvent] = []
    resolver = HttpDnsResolver(AsyncResolver([demo_server.base], on_request=requests.append))
    client_ctx = ssl.create_default_context()
    https_site.ca.configure_trust(client_ctx)
    connector = aiohttp.TCPConnector(resolver=resolver, ssl=client_ctx, use_dns_cache=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(f"https://{APP}:{https_site.port}/") as resp:
            assert resp.status == 200
            assert await resp.text() == f"hello from {APP}:{https_site.port}"
        assert https_site.sni == [APP]  # SNI carried the host name, not the address
        # aiohttp asks for any family: one request for A, one for AAAA (empty for app.test)
        assert sorted((e.names, e.qtype, e.status) for e in requests) == [
            ((APP,), "A", 200),
            ((APP,), "AAAA", 200),
        ]
        assert resolver.resolver.peek(APP) is not None

        # The certificate is checked against the host name: other.test resolves to the
        # same address, but the certificate does not name it.
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(f"https://{OTHER}:{https_site.port}/")
        assert https_site.sni[-1] == OTHER

        # A name the service does not know goes to the system resolver.
        async with session.get(f"https://localhost:{https_site.port}/") as resp:
            assert resp.status == 200 and https_site.sni[-1] == "localhost"
        assert any(e.names == ("localhost",) for e in requests)


async def test_resolve_results_for_aiohttp(demo_server: DemoServer) -> None:
    import socket

    resolver = HttpDnsResolver(AsyncResolver([demo_server.base]))
    try:
        both = await resolver.resolve("quotes.demo.example", 443, socket.AF_UNSPEC)
        families = [r["family"] for r in both]
        assert socket.AF_INET in families and socket.AF_INET6 in families
        assert families == sorted(families, key=lambda f: f != socket.AF_INET)  # IPv4 first
        assert all(r["hostname"] == "quotes.demo.example" and r["port"] == 443 for r in both)
        v6 = await resolver.resolve("quotes.demo.example", 443, socket.AF_INET6)
        assert v6 and all(r["family"] == socket.AF_INET6 for r in v6)
        literal = await resolver.resolve("192.0.2.1", 80)
        assert [r["host"] for r in literal] == ["192.0.2.1"]
    finally:
        await resolver.close()
