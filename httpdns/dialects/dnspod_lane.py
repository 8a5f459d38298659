"""AES-encrypted ``/d`` on the fast path: the plaintext answer from a cache, a fresh
ciphertext per request.

An AES reply is never kept by the front cache (a fresh IV every time), and real
clients encrypt every request with a fresh IV too, so no two requests are equal
byte for byte: each one is framed, decrypted and encrypted. What can be shared is
the plaintext answer: ``Lane`` keeps it (padded, ready to encrypt) per decrypted
request (account, parameters, peer, forwarded-for) with the compiled services it came
from and the metrics cell its hits count in, and reuses it while those services are
unchanged, as the front cache does for plain requests. Nothing keyed by a ciphertext
is kept (it would never hit) and no key material enters the cache.

Per request: the query string is split once (escapes left to the full path), one decryptor call gives both parameters
and the reply's chaining block on a fresh IV, one encryptor call the reply
(``AesCodec.decrypt_request`` and ``seal``).

``httpdns.fasthttp`` tries the lane before the dialect function (``LANES`` in
``httpdns.dialects``); it answers only well-formed AES requests it can serve and
returns None for everything else (DES, plain ``/d``, every error), which then takes
the dialect's own path (``resolve_encrypted``) and its one error mapping.
"""

from __future__ import annotations

from binascii import hexlify
from typing import TYPE_CHECKING, Protocol

from ..cache import BoundedCache
from ..metrics import Answer, QueryStats, Recorder, Tally, rcode_of
from ..table import RoutingTable
from .base import Context, Query, Reply
from .dnspod_crypto import (
    AES_BLOCK,
    NO_STORE,
    AesCodec,
    CipherError,
    Plain,
    codec,
    pad,
    unpad,
)

if TYPE_CHECKING:
    from ..routes import Route

MAX_ENTRIES = 20_000  # plaintext answers kept, per fast server
MAX_BYTES = 8 << 20  # and their bytes (parameters, peer, answer), as counted by ``_size``
ENTRY_OVERHEAD = 200  # the tuples and the dict slot of one entry, roughly
MAX_HEADS = 64  # reply headers kept by body length

# What ``FastServer.respond`` sets as ``last``: the metrics cell of a hit, or the labels of a
# computed answer (counted once already).
Last = Tally | tuple[str, str, tuple[Answer, ...]]
# deps, plaintext answer body padded (PKCS#7), metrics cell
_Entry = tuple[tuple[tuple[str, object], ...], bytes, Tally]
# account, decrypted dn, decrypted ip (None: not sent), both still padded, the other
# parameters, peer, forwarded-for: all bytes as they came (the hex parameters decrypted)
_Key = tuple[bytes, bytes, bytes | None, tuple[tuple[bytes, bytes], ...], str | None, bytes | None]
_OK = b"HTTP/1.1 200 OK\r\n"


class Host(Protocol):
    """What a lane uses of its fast server (``httpdns.fasthttp.FastServer``)."""

    @property
    def context(self) -> Context:
        """The dialects' context (its table records answers: ``recorder``)."""

    @property
    def table(self) -> RoutingTable:
        """The routing table itself, for the validity checks."""

    @property
    def recorder(self) -> Recorder:
        """Notes the decisions a dialect makes (``httpdns_answers_total``)."""

    @property
    def stats(self) -> QueryStats:
        """The query counters."""


class Lane:
    """AES-encrypted ``/d`` requests of one fast server (see the module docstring)."""

    def __init__(
        self,
        host: Host,
        route: Route,
        plain: Plain,
        max_entries: int = MAX_ENTRIES,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        from ..routes import reply_headers  # routes imports the dialects

        self.host = host
        self.table = host.table
        self.stats = host.stats
        self.dialect = route.metric
        self.plain = plain
        accounts = host.context.config.dnspod.values()
        self.codecs = {  # an id with an escape or "+" in it is sent escaped: the full path's
            a.id.encode("latin-1"): _aes(a.aes_key)
            for a in accounts
            if a.aes_key is not None and "%" not in a.id and "+" not in a.id
        }
        self.cache: BoundedCache[_Key, _Entry] = BoundedCache(max_entries, max_bytes)
        # Everything of the response but the Date line, the Content-Length value and the
        # body, in the order FastServer._parts writes it.
        headers = reply_headers(route, Reply(200, "", b"", NO_STORE))
        self._before = b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: "
        self._after = b"\r\n" + b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers)
        self._heads: dict[int, bytes] = {}  # all of that, by body length: ``_head``

    def __call__(
        self, query: bytes, peer: str | None, forwarded: bytes | None
    ) -> tuple[bytes, bytes, Last] | None:
        """``(status line, the rest less Date, metrics)`` of the answer to an AES request
        with query string ``query``, or None when the dialect's own path should answer."""
        if b"alg=" not in query:  # plain /d, the common case: one search
            return None
        # The query string split once, each parameter's first value (as ``fasthttp._params``).
        # Escapes are not decoded here: an escaped hex parameter is not hex, an escaped id
        # is no account's (ids with escapable characters are left out of ``codecs``) and an
        # escaped alg is not "aes", so each of those goes to the full path (whose parse_qsl
        # unquotes); any other parameter with an escape sends the request there too.
        fields: dict[bytes, bytes] = {}
        for part in query.split(b"&"):
            k, _, v = part.partition(b"=")
            if part and k not in fields:
                fields[k] = v
        alg = fields.pop(b"alg", b"")
        if alg != b"aes" and alg.lower() != b"aes":
            return None
        account = fields.pop(b"id", b"")
        c = self.codecs.get(account)
        if c is None:  # unknown, or no AES key
            return None
        dn_hex, ip_hex = fields.pop(b"dn", b""), fields.pop(b"ip", b"")
        rest: tuple[tuple[bytes, bytes], ...] = ()
        if fields:
            rest = tuple(fields.items())
            for k, v in rest:
                if b"%" in k or b"+" in k or b"%" in v or b"+" in v:
                    return None
        try:  # one decryptor call: both parameters (padded) and the reply's chaining block
            dn, ip, chain = c.decrypt_request(dn_hex, ip_hex)
        except CipherError:
            return None
        # Keyed by the padded texts: a key in the cache had its padding checked (_compute),
        # and a padded text stands for one text only.
        key = (account, dn, ip, rest, peer, forwarded)
        hit = self.cache.get(key)
        last: Last
        if hit is not None and self.table.still_valid(hit[0]):
            last = hit[2]
            last.n += 1
        else:
            computed = self._compute(key)
            if computed is None:
                return None
            hit, last = computed
        body = hexlify(c.seal(chain, hit[1]))
        head = self._heads.get(len(body)) or self._head(len(body))
        return _OK, head + body, last

    def _head(self, length: int) -> bytes:
        """The headers of a reply whose body has ``length`` bytes (kept by length: a body
        is 32 hex digits a block, so there are few lengths)."""
        head = b"%s%d%s\r\n" % (self._before, length, self._after)
        if len(self._heads) < MAX_HEADS:
            self._heads[length] = head
        return head

    def _compute(self, key: _Key) -> tuple[_Entry, Last] | None:
        """Answer a decrypted request with the plain dialect, keep and count it; None when
        it is not a served name or not text (the full path answers it, errors included)."""
        _, padded_dn, padded_ip, rest, peer, forwarded = key
        try:
            dn = unpad(padded_dn, AES_BLOCK)
            ip = None if padded_ip is None else unpad(padded_ip, AES_BLOCK)
        except CipherError:  # a wrong key, most likely
            return None
        if not dn.isascii() or (ip is not None and not ip.isascii()):
            return None  # the full path's CipherError (400)
        params = {k.decode("latin-1"): v.decode("latin-1") for k, v in rest}
        params["dn"] = dn.decode("ascii")
        if ip is not None:
            params["ip"] = ip.decode("ascii")
        recorder = self.host.recorder
        recorder.reset()
        q = Query(
            params=params,
            peer=peer,
            forwarded_for=forwarded.decode("latin-1") if forwarded else None,
        )
        try:
            reply = self.plain(q, self.host.context)
        except Exception:  # the full path answers it through the one error mapping (and logs it)
            return None
        if reply.status != 200 or not reply.body or not reply.deps:
            return None
        answers = tuple(recorder.answers)
        rcode = rcode_of(self.dialect, 200, reply.body, recorder.unanswered)
        self.stats.count(self.dialect, rcode, answers)
        padded = pad(reply.body, AES_BLOCK)  # what every reply encrypts
        entry = (reply.deps, padded, self.stats.tally(self.dialect, rcode, answers))
        self.cache.put(key, entry, _size(key, padded))
        return entry, (self.dialect, rcode, answers)


def _aes(key: bytes) -> AesCodec:
    """The account's AES codec (shared with the full path: ``codec``)."""
    c = codec("aes", key)
    assert isinstance(c, AesCodec)
    return c


def _size(key: _Key, body: bytes) -> int:
    """The bytes one entry holds, roughly: its strings and a fixed overhead."""
    account, dn, ip, rest, peer, forwarded = key
    params = len(account) + len(dn) + len(ip or b"") + sum(len(k) + len(v) for k, v in rest)
    return ENTRY_OVERHEAD + params + len(peer or "") + len(forwarded or b"") + len(body)


def lane(host: Host, route: Route, plain: Plain) -> Lane:
    """The lane of one fast server's ``/d`` route."""
    return Lane(host, route, plain)
