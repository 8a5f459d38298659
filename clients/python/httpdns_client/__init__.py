"""HTTP DNS client: resolve names through an HTTP DNS service, with a TTL cache, stale
answers while refreshing, refresh-ahead, server failover and a system fallback.

``Resolver`` (blocking) and ``AsyncResolver`` (asyncio) use the standard library only
(the DNSPod encrypted dialect needs ``cryptography``: ``httpdns-client[dnspod]``);
``httpdns_client.aiohttp_resolver.HttpDnsResolver`` plugs the async one into aiohttp.
"""

from __future__ import annotations

from .aio import AsyncResolver, AsyncTransport
from .core import (
    Answer,
    DualAnswer,
    ErrorEvent,
    HttpDnsError,
    LookupEvent,
    NoServerAvailable,
    QType,
    RequestEvent,
    RequestRejected,
    ResolveError,
    Server,
    ServerError,
    ServerState,
    SignatureError,
    Source,
    sign,
)
from .encrypted import DnspodCipher
from .persist import CacheStore, FileStore
from .pinning import PinMismatch, spki_pin
from .protocol import DIALECTS, Dialect
from .sync import Resolver, SyncTransport

__version__ = "0.1.0"

__all__ = [
    "DIALECTS",
    "Answer",
    "AsyncResolver",
    "AsyncTransport",
    "CacheStore",
    "Dialect",
    "DnspodCipher",
    "DualAnswer",
    "ErrorEvent",
    "FileStore",
    "HttpDnsError",
    "LookupEvent",
    "NoServerAvailable",
    "PinMismatch",
    "QType",
    "RequestEvent",
    "RequestRejected",
    "ResolveError",
    "Resolver",
    "Server",
    "ServerError",
    "ServerState",
    "SignatureError",
    "Source",
    "SyncTransport",
    "__version__",
    "sign",
    "spki_pin",
]
