"""An aiohttp resolver backed by HTTP DNS (needs ``aiohttp``, the ``aiohttp`` extra).

::

    resolver = HttpDnsResolver(AsyncResolver(["http://203.0.113.10:8053"]))
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get("https://api.example.com/") as resp: ...

Only the *address* comes from HTTP DNS: aiohttp still connects by the URL's host
name, so TLS sends it in SNI and checks the certificate against it. Every address of
the answer is returned, so aiohttp fails over between them. Names the service does not
know (an empty answer) and IP literals go to the fallback resolver (aiohttp's
``ThreadedResolver``, i.e. the system).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

try:
    from aiohttp.abc import AbstractResolver, ResolveResult
    from aiohttp.resolver import ThreadedResolver
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "httpdns_client.aiohttp_resolver needs aiohttp: pip install 'httpdns-client[aiohttp]'"
    ) from exc

from .aio import AsyncResolver
from .core import Answer, HttpDnsError, QType, RequestRejected

_NUMERIC = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV


class HttpDnsResolver(AbstractResolver):
    """``aiohttp.abc.AbstractResolver`` answering from an ``AsyncResolver``.

    ``close()`` closes the ``AsyncResolver`` too when ``owns_resolver`` (the default).
    """

    def __init__(
        self,
        resolver: AsyncResolver,
        *,
        fallback: AbstractResolver | None = None,
        owns_resolver: bool = True,
    ) -> None:
        self.resolver = resolver
        self._fallback = fallback
        self._owns = owns_resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The addresses of ``host`` for aiohttp: A for ``AF_INET``, AAAA for
        ``AF_INET6``, both (IPv4 first) for ``AF_UNSPEC``."""
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            fam = socket.AF_INET if ip.version == 4 else socket.AF_INET6
            return [_result(host, str(ip), port, fam)]
        if family == socket.AF_INET:
            qtypes: tuple[QType, ...] = ("A",)
        elif family == socket.AF_INET6:
            qtypes = ("AAAA",)
        else:
            qtypes = ("A", "AAAA")
        outcomes = await asyncio.gather(
            *(self.resolver.resolve(host, q) for q in qtypes), return_exceptions=True
        )
        answers: list[Answer] = []
        for outcome in outcomes:
            if isinstance(outcome, Answer):
                answers.append(outcome)
            elif isinstance(outcome, RequestRejected) or not isinstance(outcome, HttpDnsError):
                raise outcome  # a refused signature or a bug must not hide behind the fallback
        results = [
            _result(host, addr, port, socket.AF_INET if a.qtype == "A" else socket.AF_INET6)
            for a in answers
            for addr in a.addresses
        ]
        if results:
            return results
        return await self._fallback_resolver().resolve(host, port, family)

    async def close(self) -> None:
        """Release the fallback resolver (and the ``AsyncResolver`` when owned)."""
        if self._fallback is not None:
            await self._fallback.close()
        if self._owns:
            await self.resolver.close()

    def _fallback_resolver(self) -> AbstractResolver:
        if self._fallback is None:
            self._fallback = ThreadedResolver()
        return self._fallback


def _result(host: str, address: str, port: int, family: socket.AddressFamily) -> ResolveResult:
    return ResolveResult(
        hostname=host, host=address, port=port, family=family, proto=0, flags=_NUMERIC
    )
