"""Pure logic shared by the sync and async resolvers, with no I/O: answers, errors,
metric events, the TTL cache (stale answers, refresh-ahead, negative entries), server
backoff and request signing.

Every function here takes the time as an argument (or a clock given at construction),
so the behaviour can be tested with a fake clock.
"""

from __future__ import annotations

import hashlib
import heapq
import ipaddress
import itertools
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

Source = Literal["cache", "server", "stale", "system"]
"""Where an answer came from: the fresh cache, a server just now, the cache past its
TTL (a refresh is running), or the system resolver (no server could answer)."""

QType = Literal["A", "AAAA"]
Stage = Literal["lookup", "refresh", "prefetch", "system"]
Key = tuple[str, str]

_NOT_A_NAME = re.compile(r"[\s/?#@:]|\.\.|^\.")
_QTYPES: dict[str, QType] = {
    "a": "A",
    "1": "A",
    "4": "A",
    "ipv4": "A",
    "aaaa": "AAAA",
    "28": "AAAA",
    "6": "AAAA",
    "ipv6": "AAAA",
}


def normalize_name(name: str) -> str:
    """A queried name in the form the cache keys on: lower case, no trailing dot.

    Raises ``ValueError`` for an empty name, a name over 253 characters, or one with
    whitespace or an empty label.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    text = name.strip().rstrip(".").lower()
    if ":" in text:  # an IPv6 literal, or nothing
        try:
            return str(ipaddress.IPv6Address(text.strip("[]")))
        except ValueError:
            raise ValueError(f"{name!r} is not a host name") from None
    if not text or len(text) > 253 or _NOT_A_NAME.search(text):
        raise ValueError(f"{name!r} is not a host name")
    return text


def normalize_qtype(qtype: str | int) -> QType:
    """``"A"`` or ``"AAAA"`` from ``"a"``, ``1``, ``4``, ``"aaaa"``, ``28``, ``6``..."""
    found = _QTYPES.get(str(qtype).strip().lower())
    if found is None:
        raise ValueError(f"record type {qtype!r} is not A or AAAA")
    return found


@dataclass(frozen=True, slots=True)
class Answer:
    """The addresses of one name and record type, and where they came from.

    ``addresses`` is empty for a negative answer (the service does not know the name;
    use normal DNS). ``ttl`` is the TTL the answer was given with; ``expires_at`` is on
    the resolver's clock (``0.0`` for system answers, which are not cached).
    """

    name: str
    qtype: QType
    addresses: tuple[str, ...]
    ttl: float
    source: Source
    expires_at: float
    server: str | None = None

    @property
    def negative(self) -> bool:
        """True when the answer holds no address."""
        return not self.addresses

    @property
    def first(self) -> str | None:
        """The preferred address, or None."""
        return self.addresses[0] if self.addresses else None

    def remaining(self, now: float) -> float:
        """Seconds of TTL left at ``now`` (negative once expired)."""
        return self.expires_at - now


Family = Literal["ipv4", "ipv6"]


@dataclass(frozen=True, slots=True)
class DualAnswer:
    """The A and AAAA answers of one name (``resolve_both``), ordered by the family the
    app prefers: ``addresses`` lists the preferred family's addresses first."""

    name: str
    ipv4: Answer
    ipv6: Answer
    prefer: Family = "ipv4"

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every address, the preferred family's first."""
        if self.prefer == "ipv6":
            return self.ipv6.addresses + self.ipv4.addresses
        return self.ipv4.addresses + self.ipv6.addresses

    @property
    def first(self) -> str | None:
        """The address to try first, or None."""
        found = self.addresses
        return found[0] if found else None

    @property
    def negative(self) -> bool:
        """True when neither family has an address."""
        return not self.ipv4.addresses and not self.ipv6.addresses

    @property
    def source(self) -> Source:
        """Where the preferred family's answer came from (the other's when it is empty)."""
        main, other = (self.ipv6, self.ipv4) if self.prefer == "ipv6" else (self.ipv4, self.ipv6)
        return main.source if main.addresses or not other.addresses else other.source

    @property
    def ttl(self) -> float:
        """The smaller TTL of the two answers."""
        return min(self.ipv4.ttl, self.ipv6.ttl)


# -- errors ----------------------------------------------------------------------------------


class HttpDnsError(Exception):
    """Base class of the client's errors."""


class ServerError(HttpDnsError):
    """One server failed: unreachable, timed out, a 5xx, or an unreadable answer.

    The resolver backs that server off and tries the next one.
    """

    def __init__(self, server: str, detail: str, status: int | None = None) -> None:
        self.server = server
        self.detail = detail
        self.status = status
        super().__init__(f"{server}: {detail}")


class NoServerAvailable(HttpDnsError):
    """Every server failed or is backed off."""

    def __init__(self, names: Sequence[str], qtype: str, errors: Sequence[ServerError]) -> None:
        self.names = tuple(names)
        self.qtype = qtype
        self.errors = tuple(errors)
        why = "; ".join(str(e) for e in errors) or "every server is backed off after failures"
        super().__init__(f"no HTTP DNS server answered for {', '.join(names)} {qtype}: {why}")


class RequestRejected(HttpDnsError):
    """A server understood the request and refused it (HTTP 4xx): a bad name, an
    unknown account... Not a server failure: the other servers would refuse it too."""

    def __init__(self, server: str, status: int, code: str, detail: str) -> None:
        self.server = server
        self.status = status
        self.code = code
        self.detail = detail
        super().__init__(f"{server} refused the request (HTTP {status} {code}): {detail}")


class SignatureError(RequestRejected):
    """The server refused the request signature (``InvalidSignature`` or
    ``SignatureExpired``): check ``account``/``secret`` and the device clock."""

    def __init__(self, server: str, status: int, code: str, detail: str, account: str) -> None:
        super().__init__(server, status, code, detail)
        self.account = account
        hint = (
            "check the device clock"
            if code == "SignatureExpired"
            else "check the secret of account " + account
        )
        self.args = (
            f"{server} refused the signature of account {account} ({code}: {detail}); {hint}",
        )


class ResolveError(HttpDnsError):
    """Nothing could be had: no server answered, nothing usable was cached and the
    system resolver failed too (or is disabled)."""

    def __init__(self, name: str, qtype: str, causes: Sequence[BaseException]) -> None:
        self.name = name
        self.qtype = qtype
        self.causes = tuple(causes)
        super().__init__(f"cannot resolve {name} {qtype}: " + "; ".join(str(c) for c in causes))


# -- metric events (named tuples: cheap to make on every lookup) ----------------------------


class LookupEvent(NamedTuple):
    """One ``resolve`` call: latency in seconds, where the answer came from, or the error."""

    name: str
    qtype: str
    source: Source | None
    latency: float
    addresses: int
    error: BaseException | None = None


class RequestEvent(NamedTuple):
    """One HTTP request to a server (foreground or background)."""

    server: str
    names: tuple[str, ...]
    qtype: str
    latency: float
    status: int | None
    error: BaseException | None
    background: bool


class ErrorEvent(NamedTuple):
    """A failure the caller did not see as an exception: a background refresh or a
    prefetch that failed, or a foreground lookup that fell back to the system resolver."""

    stage: Stage
    names: tuple[str, ...]
    qtype: str
    error: BaseException


LookupHook = Callable[[LookupEvent], None]
RequestHook = Callable[[RequestEvent], None]
ErrorHook = Callable[[ErrorEvent], None]


# -- the cache -------------------------------------------------------------------------------

FRESH = 0
STALE = 1
DEAD = 2


class Entry:
    """A cached answer and its timers. ``refresh_at`` is when a refresh may start: 75 %
    of the TTL at first, infinity while one runs, a retry interval after a failure."""

    __slots__ = (
        "cached",
        "expires_at",
        "fetched_at",
        "hot",
        "key",
        "refresh_at",
        "refreshing",
        "stale",
        "stale_until",
        "used",
    )

    def __init__(
        self, key: Key, answer: Answer, fetched_at: float, refresh_at: float, stale_until: float
    ) -> None:
        self.key = key
        self.fetched_at = fetched_at
        self.expires_at = answer.expires_at
        self.refresh_at = refresh_at
        self.stale_until = stale_until
        self.used = False
        self.hot = False  # asked for by the app in this run (network_changed re-resolves it)
        self.refreshing = False
        self.cached = Answer(
            answer.name, answer.qtype, answer.addresses, answer.ttl, "cache", answer.expires_at,
            answer.server,
        )  # fmt: skip
        self.stale = Answer(
            answer.name, answer.qtype, answer.addresses, answer.ttl, "stale", answer.expires_at,
            answer.server,
        )  # fmt: skip

    def state(self, now: float) -> int:
        """FRESH before the TTL ends, STALE until the staleness bound, then DEAD."""
        if now < self.expires_at:
            return FRESH
        if now < self.stale_until:
            return STALE
        return DEAD


class Cache:
    """TTL cache keyed by (name, type).

    - positive answers are served fresh for their TTL, then stale for up to
      ``max_stale`` seconds while a refresh runs;
    - negative answers (no address) are cached for their TTL and never served stale;
    - ``due(now)`` gives the entries in use whose refresh-ahead time (``refresh_ahead``
      of the TTL, 0.75 by default) has come;
    - no answer is served, fresh or stale, more than ``max_age`` seconds after it was
      fetched (the bound of the persistent cache, applied to every answer).
    """

    def __init__(
        self,
        *,
        max_stale: float = 300.0,
        refresh_ahead: float = 0.75,
        retry: float = 1.0,
        min_ttl: float = 0.0,
        max_ttl: float = 86400.0,
        max_entries: int = 1024,
        max_age: float = math.inf,
    ) -> None:
        if max_age <= 0:
            raise ValueError("max_age must be > 0")
        if max_stale < 0 or retry < 0 or min_ttl < 0 or max_ttl < min_ttl:
            raise ValueError("max_stale, retry and min_ttl <= max_ttl must be >= 0")
        if not 0.0 < refresh_ahead <= 1.0:
            raise ValueError("refresh_ahead must be in (0, 1]")
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_stale = max_stale
        self.refresh_ahead = refresh_ahead
        self.retry = retry
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.max_entries = max_entries
        self.max_age = max_age
        self.entries: dict[Key, Entry] = {}
        self._heap: list[tuple[float, int, Entry]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self.entries)

    def store(
        self,
        name: str,
        qtype: QType,
        addresses: Iterable[str],
        ttl: float,
        now: float,
        server: str | None = None,
        hot: bool = False,
    ) -> Entry:
        """Cache an answer fetched at ``now``; returns the new entry. ``hot``: the app
        asked for it (a lookup, not a refresh); an entry replacing a hot one stays hot."""
        ttl = min(max(float(ttl), self.min_ttl), self.max_ttl)
        addrs = tuple(addresses)
        expires = now + min(ttl, self.max_age)
        answer = Answer(name, qtype, addrs, ttl, "server", expires, server)
        stale_until = min(expires + self.max_stale, now + self.max_age) if addrs else expires
        refresh_at = now + ttl * self.refresh_ahead if addrs else math.inf
        key = (name, qtype)
        entry = Entry(key, answer, now, refresh_at, stale_until)
        old = self.entries.get(key)
        entry.hot = hot or (old is not None and (old.hot or old.used))
        if old is None and len(self.entries) >= self.max_entries:
            self._evict(now)
        self.entries[key] = entry
        if math.isfinite(refresh_at):
            heapq.heappush(self._heap, (refresh_at, next(self._seq), entry))
        return entry

    def get(self, name: str, qtype: str) -> Entry | None:
        """The entry for a normalised (name, type), in whatever state."""
        return self.entries.get((name, qtype))

    def peek(self, name: str, qtype: str, now: float) -> Answer | None:
        """The cached or stale answer, without side effects; None when nothing usable."""
        entry = self.entries.get((name, qtype))
        if entry is None:
            return None
        state = entry.state(now)
        return entry.cached if state == FRESH else entry.stale if state == STALE else None

    @staticmethod
    def refresh_due(entry: Entry, now: float) -> bool:
        """True when a refresh of this entry may start now."""
        return now >= entry.refresh_at

    @staticmethod
    def start_refresh(entry: Entry) -> None:
        """Mark a refresh as running (no other starts until it ends)."""
        entry.refreshing = True
        entry.refresh_at = math.inf

    def refresh_failed(self, entry: Entry, now: float) -> None:
        """A refresh failed: the entry stays (stale, within bounds); retry after ``retry``."""
        entry.refreshing = False
        entry.refresh_at = now + self.retry

    def due(self, now: float) -> list[Entry]:
        """Entries in use whose refresh-ahead time has come (each returned once)."""
        out: list[Entry] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, entry = heapq.heappop(heap)
            current = self.entries.get(entry.key)
            if current is entry and entry.used and not entry.refreshing:
                out.append(entry)
        return out

    def next_due(self) -> float | None:
        """When ``due`` may next return something (None: nothing scheduled)."""
        return self._heap[0][0] if self._heap else None

    def clear(self) -> None:
        """Forget everything."""
        self.entries.clear()
        self._heap.clear()

    def restore(
        self,
        name: str,
        qtype: QType,
        addresses: Iterable[str],
        ttl: float,
        fetched_at: float,
        now: float,
        max_age: float,
        server: str | None = None,
    ) -> Entry | None:
        """Put back a persisted answer fetched at ``fetched_at`` (on this clock, before
        ``now``): fresh for what is left of its TTL, then stale (served while a refresh
        runs) until ``max_age`` after it was fetched, never later. Nothing is restored
        over a live entry, for a negative answer, or when the answer is that old already.
        """
        addrs = tuple(addresses)
        limit = fetched_at + max_age
        key = (name, qtype)
        if not addrs or now >= limit or key in self.entries:
            return None
        ttl = min(max(float(ttl), self.min_ttl), self.max_ttl)
        expires = min(fetched_at + ttl, limit)
        answer = Answer(name, qtype, addrs, ttl, "server", expires, server)
        refresh_at = min(fetched_at + ttl * self.refresh_ahead, expires)
        entry = Entry(key, answer, fetched_at, refresh_at, limit)
        if len(self.entries) >= self.max_entries:
            self._evict(now)
        self.entries[key] = entry
        heapq.heappush(self._heap, (refresh_at, next(self._seq), entry))
        return entry

    def mark_stale(self, now: float) -> list[Key]:
        """After a network change: every positive answer becomes stale at once (served
        while a refresh runs, within its staleness bound), negative ones are dropped.
        Returns the keys in use ("hot"), which the caller re-resolves now."""
        hot: list[Key] = []
        for key, entry in list(self.entries.items()):
            if not entry.cached.addresses:
                del self.entries[key]
                continue
            entry.expires_at = min(entry.expires_at, now)
            if not entry.refreshing:
                entry.refresh_at = now
            if entry.used or entry.hot:
                hot.append(key)
        return hot

    def _evict(self, now: float) -> None:
        dead = [k for k, e in self.entries.items() if e.state(now) == DEAD]
        for k in dead:
            del self.entries[k]
        if len(self.entries) >= self.max_entries:
            victim = min(self.entries.values(), key=lambda e: e.stale_until)
            del self.entries[victim.key]


# -- servers and backoff ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Server:
    """An HTTP DNS server, bootstrapped by address: ``http://203.0.113.10:8053``.

    ``tls_hostname`` (for ``https``) is the name sent in SNI and checked against the
    certificate while connecting to the address.
    """

    url: str
    scheme: Literal["http", "https"]
    host: str
    port: int
    base_path: str
    tls_hostname: str | None = None

    @property
    def host_header(self) -> str:
        """The ``Host`` header value."""
        name = self.tls_hostname or (f"[{self.host}]" if ":" in self.host else self.host)
        default = 443 if self.scheme == "https" else 80
        return name if self.port == default else f"{name}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServerState:
    """A server's standing: consecutive failures and seconds until it is tried again."""

    url: str
    failures: int
    retry_in: float


class ServerPool:
    """Servers tried in order; a failed one is skipped for ``backoff`` seconds, doubling
    with each consecutive failure up to ``max_backoff``, and restored by a success."""

    def __init__(self, servers: Sequence[Server], backoff: float = 1.0, max_backoff: float = 60.0):
        if not servers:
            raise ValueError("at least one server is needed")
        if backoff < 0 or max_backoff < backoff:
            raise ValueError("0 <= backoff <= max_backoff")
        self.servers = tuple(servers)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._failures = [0] * len(servers)
        self._retry_at = [-math.inf] * len(servers)

    def candidates(self, now: float) -> list[Server]:
        """The servers to try now, in order: those not backed off."""
        return [s for i, s in enumerate(self.servers) if self._retry_at[i] <= now]

    def failed(self, server: Server, now: float) -> float:
        """Record a failure; returns when the server will be tried again."""
        i = self.servers.index(server)
        self._failures[i] += 1
        delay = min(self.max_backoff, self.backoff * 2 ** (self._failures[i] - 1))
        self._retry_at[i] = now + delay
        return self._retry_at[i]

    def succeeded(self, server: Server) -> None:
        """Record a success: the server is in good standing again."""
        i = self.servers.index(server)
        self._failures[i] = 0
        self._retry_at[i] = -math.inf

    def reset(self) -> None:
        """Forget every failure (after a network change the old ones say little)."""
        self._failures = [0] * len(self.servers)
        self._retry_at = [-math.inf] * len(self.servers)

    def states(self, now: float) -> list[ServerState]:
        """Every server's standing."""
        return [
            ServerState(s.url, self._failures[i], max(0.0, self._retry_at[i] - now))
            for i, s in enumerate(self.servers)
        ]


# -- signing ---------------------------------------------------------------------------------


def sign(host: str, secret: str, expiry: int) -> str:
    """The Aliyun-style signature ``md5("HOST-SECRET-t")`` in hex; ``host`` is the
    ``host`` parameter exactly as sent (comma-joined for a batch)."""
    return hashlib.md5(f"{host}-{secret}-{expiry}".encode(), usedforsecurity=False).hexdigest()


def signature_expiry(wall_now: float, lifetime: float) -> int:
    """The ``t`` parameter: unix seconds when the signature stops being valid."""
    return int(wall_now + lifetime)
