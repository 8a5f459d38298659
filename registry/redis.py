"""The shared store for many nodes: Redis, optionally behind Redis Sentinel.

URLs: ``redis://HOST:PORT/DB`` and ``redis+sentinel://HOST:PORT,HOST:PORT/MASTER/DB``,
optionally with ``?prefix=NAME:`` to keep several registries in one database.

A batch is validated against this client's cached snapshot and then committed
by one Lua script that checks the revision it was validated at, so a batch is
all or nothing and two writers can never both commit on the same base. The
same script appends the batch to a stream (the feed's backlog and the audit
log) and publishes it, so nodes apply a change without another round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from .changes import Change, ChangeSet
from .errors import (
    ConflictError,
    StoreRegressedError,
    StoreResyncError,
    StoreUnavailableError,
    ValidationError,
)
from .snapshot import Snapshot

# -- key schema ---------------------------------------------------------------
# Every key starts with PREFIX (default "httpdns:").
KEY_REVISION = "revision"  # string: the store-wide revision, an integer
KEY_RECORDS = "records"  # hash: "<kind>\x1f<key>" -> the record's JSON (the current state)
KEY_CHANGES = "changes"  # stream: one entry per batch, ID "<revision>-1", field "cs" =
#                          the ChangeSet JSON; the feed's backlog and the audit log
CHANNEL_FEED = "feed"  # pub/sub channel: the ChangeSet JSON of each commit
STREAM_MAXLEN = 1_000_000  # approximate cap on kept history (audit)
# ------------------------------------------------------------------------------

SEP = "\x1f"
RETRY_FOR = 10.0  # seconds of re-validation while other writers move the revision (no If-Match)
REPLAY_LIMIT = 100  # behind by more revisions than this, reload instead of replaying
POLL = 1.0  # seconds between revision checks while the feed is quiet (regression, lost messages)

# KEYS: revision, records, changes, feed channel.
# ARGV: base revision, ChangeSet JSON, stream maxlen, then (op, field, value) triples.
_APPLY = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur ~= tonumber(ARGV[1]) then return {0, cur} end
local rev = cur + 1
local i = 4
while i <= #ARGV do
  if ARGV[i] == 'put' then
    redis.call('HSET', KEYS[2], ARGV[i + 1], ARGV[i + 2])
  else
    redis.call('HDEL', KEYS[2], ARGV[i + 1])
  end
  i = i + 3
end
redis.call('SET', KEYS[1], rev)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], rev .. '-1', 'cs', ARGV[2])
redis.call('PUBLISH', KEYS[4], ARGV[2])
return {1, rev}
"""


def parse_url(url: str) -> tuple[str, list[tuple[str, int]], str | None, int]:
    """``(scheme, [(host, port)], master name or None, db)`` from a store URL."""
    parts = urlsplit(url)
    try:
        hosts = []
        for item in parts.netloc.split(","):
            host, _, port = item.rpartition(":")
            hosts.append((host.strip("[]") or "127.0.0.1", int(port or 6379)))
        path = [p for p in parts.path.split("/") if p]
        if parts.scheme == "redis":
            if len(hosts) != 1 or len(path) > 1:
                raise ValueError("one host")
            return "redis", hosts, None, int(path[0]) if path else 0
        if parts.scheme == "redis+sentinel":
            if not path or len(path) > 2:
                raise ValueError("master name")
            return "redis+sentinel", hosts, path[0], int(path[1]) if len(path) > 1 else 0
    except ValueError:
        pass
    raise ValidationError(
        "store",
        f"bad Redis URL {url!r}: use redis://HOST:PORT/DB or "
        "redis+sentinel://HOST:PORT,HOST:PORT/MASTER/DB",
    )


def _field(c: Change) -> str:
    return f"{c.kind}{SEP}{c.key}"


class RedisStore:
    """Store backend over Redis (see the module docstring for the key schema)."""

    def __init__(self, client: aioredis.Redis, prefix: str = "httpdns:", url: str = "") -> None:
        self._r = client
        self._url = url
        self.k_revision = prefix + KEY_REVISION
        self.k_records = prefix + KEY_RECORDS
        self.k_changes = prefix + KEY_CHANGES
        self.channel = prefix + CHANNEL_FEED
        self._apply_script = client.register_script(_APPLY)
        self._snap = Snapshot()
        self._lock = asyncio.Lock()  # one writer at a time per client keeps the cache simple
        self._closed = asyncio.Event()
        self._high = 0  # the highest revision seen: Redis below it has lost data

    @classmethod
    async def open(cls, url: str) -> RedisStore:
        """Connect lazily: a Redis that is down now makes calls fail, not ``open``."""
        scheme, hosts, master, db = parse_url(url)
        prefix = parse_qs(urlsplit(url).query).get("prefix", ["httpdns:"])[0]
        opts: dict[str, Any] = {
            "socket_timeout": 2.0,
            "socket_connect_timeout": 0.5,
            "health_check_interval": 5,
            # One quick retry, not the library's default ten with backoff: a node must tell
            # an operator "store unavailable" in about a second, not after many.
            "retry": Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
        }
        if scheme == "redis":
            client = aioredis.Redis(host=hosts[0][0], port=hosts[0][1], db=db, **opts)
        else:
            sentinel = Sentinel(
                hosts, sentinel_kwargs={"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
            )
            client = sentinel.master_for(master or "", db=db, **opts)
        return cls(client, prefix, url)

    # -- protocol -------------------------------------------------------------

    async def snapshot(self) -> Snapshot:
        """The whole registry at the latest revision.

        No lock: readers must not queue behind a writer waiting on an unreachable Redis.
        """
        return await self._catch_up()

    async def apply(
        self,
        changes: Sequence[Change],
        *,
        expected_revision: int | None = None,
        actor: str = "unknown",
    ) -> ChangeSet:
        """Validate against the latest state, then commit atomically (see Store.apply)."""
        changes = tuple(changes)
        async with self._lock:
            deadline = time.monotonic() + RETRY_FOR
            attempt = 0
            while True:
                snap = await self._catch_up()
                if expected_revision is not None and expected_revision != snap.revision:
                    raise ConflictError(
                        f"expected revision {expected_revision}, the registry is at {snap.revision}"
                    )
                new, effective = snap.apply(changes, snap.revision + 1)
                cs = ChangeSet(new.revision, effective, actor, time.time())
                args: list[Any] = [snap.revision, orjson.dumps(cs.to_dict()), STREAM_MAXLEN]
                for c in effective:
                    value = b"" if c.value is None else orjson.dumps(c.value.to_dict())
                    args += [c.op, _field(c), value]
                keys = [self.k_revision, self.k_records, self.k_changes, self.channel]
                try:
                    ok, _rev = await self._apply_script(keys=keys, args=args)
                except RedisError as exc:
                    # The script may have run before the connection broke: say so.
                    raise StoreUnavailableError(
                        f"Redis: {exc}; the change may or may not have been committed "
                        "(check the revision or the audit log)"
                    ) from exc
                if ok:
                    self._snap = new
                    self._high = max(self._high, new.revision)
                    return cs
                if expected_revision is not None:
                    raise ConflictError(
                        f"expected revision {expected_revision}, the registry moved to {_rev}"
                    )
                if time.monotonic() > deadline:
                    raise ConflictError("the registry kept moving; gave up after 10 s of retries")
                # Lost the race to another node: back off a random moment so one node's
                # writers cannot starve another's (each retry re-validates from scratch).
                attempt += 1
                await asyncio.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))

    async def watch(self, from_revision: int) -> AsyncIterator[ChangeSet]:
        """Batches after ``from_revision``: from the stream first, then as published.

        Raises StoreUnavailableError when Redis goes away and StoreRegressedError
        when Redis is found behind ``from_revision`` (data lost); the caller
        keeps its state and calls again later.
        """
        last = from_revision
        self._high = max(self._high, from_revision)  # the caller holds this revision
        self._check_open()
        pubsub = self._r.pubsub(ignore_subscribe_messages=True)
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            # Subscribe before reading the backlog, so nothing slips in between.
            await pubsub.subscribe(self.channel)
            while True:
                current = await self._revision()
                if current < last:
                    raise StoreRegressedError(
                        f"Redis is at revision {current}, behind this node's {last} "
                        "(data lost?); keeping the last table. Re-seed it with "
                        "`httpdns registry restore --from-node URL`."
                    )
                if current > last:
                    for cs in await self._since(last, current):
                        self._high = max(self._high, cs.revision)
                        yield cs
                        last = cs.revision
                    continue
                getter = asyncio.ensure_future(pubsub.get_message(timeout=POLL))
                await asyncio.wait((getter, closed), return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    with contextlib.suppress(asyncio.CancelledError, RedisError):
                        await getter
                    self._check_open()
                message = getter.result()
                while message is not None:
                    if message.get("type") == "message":
                        body = orjson.loads(message["data"])
                        if body.get("resync"):
                            raise StoreResyncError("the registry was restored; reload a snapshot")
                        cs = ChangeSet.load(body)
                        if cs.revision == last + 1:
                            self._high = max(self._high, cs.revision)
                            yield cs
                            last = cs.revision
                        elif cs.revision > last + 1:
                            break  # a gap: the backlog fills it on the next turn
                    message = await pubsub.get_message(timeout=0)
        except RedisError as exc:
            raise StoreUnavailableError(f"Redis: {exc}") from exc
        finally:
            closed.cancel()
            with contextlib.suppress(RedisError, OSError, RuntimeError):
                await pubsub.aclose()

    async def audit(self, since: int = 0, limit: int = 1000) -> list[ChangeSet]:
        """Batches after ``since`` from the stream, oldest first."""
        entries = await self._xrange(f"{since + 1}-0", "+", limit)
        return [ChangeSet.load(orjson.loads(fields[b"cs"])) for _id, fields in entries]

    async def restore(self, snap: Snapshot, actor: str = "restore") -> int:
        """Re-seed a Redis that lost data from a node's snapshot (only if Redis is behind)."""
        async with self._lock:
            try:
                async with self._r.pipeline(transaction=True) as pipe:
                    await pipe.watch(self.k_revision)
                    current = int(await pipe.get(self.k_revision) or 0)
                    if current >= snap.revision:
                        raise ConflictError(
                            f"Redis is at revision {current}, not behind the snapshot's {snap.revision}"
                        )
                    pipe.multi()
                    pipe.delete(self.k_records)
                    fields = {
                        _field(c): orjson.dumps(c.value.to_dict())
                        for c in _as_changes(snap)
                        if c.value is not None
                    }
                    items = list(fields.items())
                    for i in range(0, len(items), 10_000):
                        pipe.hset(self.k_records, mapping=dict(items[i : i + 10_000]))
                    pipe.set(self.k_revision, snap.revision)
                    cs = ChangeSet(snap.revision, (), actor, time.time())
                    pipe.xadd(
                        self.k_changes,
                        {"cs": orjson.dumps(cs.to_dict()), "resync": b"1"},
                        id=f"{snap.revision}-1",
                    )
                    pipe.publish(self.channel, orjson.dumps({**cs.to_dict(), "resync": True}))
                    await pipe.execute()
            except RedisError as exc:
                raise StoreUnavailableError(f"Redis: {exc}") from exc
            self._snap = snap
            self._high = snap.revision
            return snap.revision

    async def close(self) -> None:
        """Close the connection pool; watchers end with StoreUnavailableError."""
        if self._closed.is_set():
            return
        self._closed.set()
        await asyncio.sleep(0)  # let watchers see it before the pool goes
        await self._r.aclose()

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise StoreUnavailableError("the store is closed")

    # -- internals ------------------------------------------------------------

    async def _xrange(
        self, low: str, high: str, count: int | None = None
    ) -> list[tuple[bytes, dict[bytes, bytes]]]:
        try:
            entries = await self._r.xrange(self.k_changes, min=low, max=high, count=count)
        except RedisError as exc:
            raise StoreUnavailableError(f"Redis: {exc}") from exc
        return cast(list[tuple[bytes, dict[bytes, bytes]]], entries or [])

    async def _revision(self) -> int:
        self._check_open()
        try:
            return int(await self._r.get(self.k_revision) or 0)
        except RedisError as exc:
            raise StoreUnavailableError(f"Redis: {exc}") from exc

    async def _since(self, after: int, upto: int) -> list[ChangeSet]:
        """Batches (after, upto] from the stream; StoreResyncError if any is missing."""
        entries = await self._xrange(f"{after + 1}-0", f"{upto}-1")
        out = []
        for _id, fields in entries:
            if b"resync" in fields:
                raise StoreResyncError("the registry was restored; reload a snapshot")
            out.append(ChangeSet.load(orjson.loads(fields[b"cs"])))
        if [cs.revision for cs in out] != list(range(after + 1, upto + 1)):
            raise StoreResyncError(f"the change history between {after} and {upto} is incomplete")
        return out

    async def _catch_up(self) -> Snapshot:
        # Compare with what was seen before asking: a commit seen on the feed while the
        # GET is in flight may be newer than the value it returns.
        high = self._high
        current = await self._revision()
        if current < high:
            # Redis lost data (restarted empty, failed over to a stale replica): never
            # write on top of it, nor hand it out as the registry, until ``restore``.
            raise StoreRegressedError(
                f"Redis is at revision {current}, behind the {high} this client has "
                "seen (data lost?); writes are refused until it is re-seeded with "
                "`httpdns registry restore --from-node URL`."
            )
        if current == self._snap.revision:
            return self._snap
        behind = current - self._snap.revision
        if behind < 0 or behind > REPLAY_LIMIT or self._snap.revision == 0:
            # Far behind (a fresh client), or Redis was restored/replaced: one consistent read
            # of the whole state beats replaying history.
            self._snap = await self._load()
        else:
            try:
                for cs in await self._since(self._snap.revision, current):
                    self._snap, _ = self._snap.apply(cs.changes, cs.revision)
            except StoreResyncError:
                self._snap = await self._load()
        self._high = max(self._high, self._snap.revision)
        return self._snap

    async def _load(self) -> Snapshot:
        self._check_open()
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.get(self.k_revision)
                pipe.hgetall(self.k_records)
                raw_rev, records = await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailableError(f"Redis: {exc}") from exc
        return _build(int(raw_rev or 0), records)


def _as_changes(snap: Snapshot) -> list[Change]:
    out = [Change.put(d) for d in snap.datacenters.values()]
    out += [Change.put(r) for r in snap.regions.values()]
    out += [Change.put(s) for s in snap.services.values()]
    out += [Change.put(r) for r in snap.releases.values()]
    out += [Change.put(e) for eps in snap.endpoints.values() for e in eps.values()]
    out += [Change.put(r) for r in snap.rollouts.values()]
    out += [Change.put(a) for a in snap.allocations.values()]
    out += [Change.put(h) for h in snap.heartbeats.values()]
    return out


def _build(revision: int, records: dict[bytes, bytes]) -> Snapshot:
    rows = []
    for field, value in records.items():
        kind, _, key = field.decode().partition(SEP)
        rows.append((kind, key, value))
    return Snapshot.from_records(revision, rows)
