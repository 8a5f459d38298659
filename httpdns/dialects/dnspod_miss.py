"""Plain ``/d?dn=NAME&ip=IP`` on the fast path's miss: a table lookup and reply bytes
encoded once per answer.

A plain ``/d`` naming its client (``ip=``) from a network no cache holds is the
common request of a real HTTP DNS service: millions of phones, each /24 asked
about once. The full path parses the query string into a dict, builds a
``Query`` and a ``Client``, runs the dialect through the recorder, encodes and
frames a fresh reply: ≈ 18 µs of Python for what, once the service's bucket map
exists (``RoutingTable.mapped``), is one index. ``MissLane`` serves that shape
alone and straight:

* the query string is exactly ``dn=NAME&ip=ADDRESS`` (either order, no escapes,
  no other parameter), optionally followed by ``&ttl=1`` (what DNSPod's SDKs send),
  the address as ``Client.of`` parses it: ``plainget.scan_query`` takes it apart and
  hashes the client's bucket (in C when built; ``FastHTTP._simple`` has it from
  ``plainget.scan`` with the request's framing and calls ``answer`` directly);
* the name as sent maps to its validated form (``base.qname``, memoised);
* ``RoutingTable.mapped`` gives the choice when a current bucket map decides it;
* the reply (status line, headers less Date, body) and its metric labels are
  encoded once per distinct choice (and with or without its TTL) and reused while
  that choice lives.

Anything else — other parameters, escapes, a malformed name or address, a
service without a current map (its first queries, right after a change),
a name not served — returns None and takes the dialect's own path, which
answers, counts the miss towards a map and maps errors. Answers are the same
bytes and labels as the full path's (``tests/httpdns/test_dnspod_miss.py``).

``httpdns.fasthttp`` tries the lane after its front cache missed and before the
dialect; the lane counts nothing itself: the front end counts what it answers
(one increment of the reply's miss cell instead of ``QueryStats.count``) and
keeps it as it keeps the full path's answers.
"""

from __future__ import annotations

from collections.abc import Callable

from ..cache import BoundedCache
from ..errors import BadRequest
from ..metrics import QueryStats, Tally, rcode_of
from ..plainget import scan_query
from ..steering import Choice
from ..table import A, RoutingTable
from .base import Reply, qname, text_reply

MAX_NAMES = 4096  # names as sent -> validated (as base._NAMES)
MAX_REPLIES = 16_384  # encoded replies, one per distinct choice (a few per bucket map)

# What a front cache keeps of an answer: the services it was read from (``deps``, as
# ``RoutingTable.still_valid`` takes them), the status line, the rest but Date, and the
# metrics cell its hits count in; the byte-for-byte cache (``FastServer.repeat``) the same
# with "keep the connection open" before the cell.
Kept = tuple[tuple[tuple[str, object], ...], bytes, bytes, Tally]
Repeat = tuple[tuple[tuple[str, object], ...], bytes, bytes, bool, Tally]
# What the lane gives for a request: status line, the rest but Date, the miss cell the front
# end counts it in (``QueryStats.miss_cell``: its labels are the full path's), and what the
# front cache and the byte-for-byte cache keep of it. The last two are built once per
# encoded reply and shared by every entry holding it: an entry adds no object the garbage
# collector must visit (tens of thousands of kept requests were 25-45 ms full collections).
Answered = tuple[bytes, bytes, Tally, Kept, Repeat]
# one encoded reply: the choice it encodes (held, so its id is not reused), the name, and
# what the lane gives
_Encoded = tuple[Choice, str, Answered]

PARAMS = ("dn", "ip", "ttl")  # the parameters a request the lane answers may carry


class MissLane:
    """Plain ``/d`` requests of one fast server that a bucket map decides (module docstring)."""

    __slots__ = (
        "_mapped",
        "_name_of",
        "_reply_of",
        "dialect",
        "frame",
        "keepable",
        "names",
        "replies",
        "stats",
        "table",
    )

    def __init__(
        self,
        table: RoutingTable,
        stats: QueryStats,
        frame: Callable[[Reply], tuple[bytes, bytes]],
        dialect: str,
        keepable: bool,
        max_replies: int = MAX_REPLIES,
    ) -> None:
        self.table = table
        self.stats = stats
        self.frame = frame  # a reply -> (status line, the rest but Date), as the front end
        self.dialect = dialect
        # whether a front cache may keep what the lane answers (every parameter the lane
        # takes is one of the route's: ``fasthttp._canonical``)
        self.keepable = keepable
        self.names: BoundedCache[bytes, str] = BoundedCache(MAX_NAMES)
        # by the id of the choice (held in the entry: the id stays its own)
        self.replies: BoundedCache[int, _Encoded] = BoundedCache(max_replies)
        # bound once: an attribute lookup less each on the path
        self._name_of, self._reply_of, self._mapped = self.names.get, self.replies.get, table.mapped

    def __call__(self, query: bytes) -> Answered | None:
        """The answer to a ``/d`` request with query string ``query``, or None when the
        dialect's own path should answer it. Counts nothing (the caller counts in the cell
        it gets)."""
        scanned = scan_query(query)
        if scanned is None:
            return None
        return self.answer(*scanned)

    def answer(self, dn: bytes, ip: int, family: int, ttl: bool, bucket: int) -> Answered | None:
        """``__call__`` of a query ``plainget.scan_query`` took apart (as it gives them)."""
        name = self._name_of(dn)
        if name is None:
            name = self._name(dn)
            if name is None:
                return None
        choice = self._mapped(name, A, ip, family, bucket)
        if choice is None:
            return None
        key = id(choice) << 1 | ttl
        done = self._reply_of(key)
        if done is None or done[0] is not choice or done[1] != name:
            done = self._encode(key, name, choice)
        return done[2]

    def _name(self, dn: bytes) -> str | None:
        """The validated name (as the dialect's ``qname``), or None when it is not one."""
        try:
            name = qname("dn", dn.decode())
        except BadRequest:
            return None
        self.names.put(dn, name)
        return name

    def _encode(self, key: int, name: str, choice: Choice) -> _Encoded:
        """The reply to ``dn=name`` answered with ``choice`` (as ``dnspod._resolve_plain``
        writes it for type A, no clientip; ttl=1 when ``key`` is odd), framed, with its
        labels."""
        body = ";".join(choice.addresses)
        if body and key & 1:
            body += f",{choice.ttl}"
        reply = text_reply(body, [])
        head, tail = self.frame(reply)
        answer = (name, choice.dc or "none", choice.version or "none", choice.cohort)
        rcode = rcode_of(self.dialect, 200, reply.body, 0)
        cell = self.stats.miss_cell(self.dialect, rcode, (answer,))
        # the service the choice was read from (``mapped`` checked it is the current one),
        # as ``resolve`` notes it
        deps: tuple[tuple[str, object], ...] = ((name, self.table.by_name.get(name)),)
        tally = self.stats.tally(self.dialect, rcode, (answer,))
        answered = (head, tail, cell, (deps, head, tail, tally), (deps, head, tail, True, tally))
        done = (choice, name, answered)
        self.replies.put(key, done)
        return done
