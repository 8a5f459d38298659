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
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import OutOfMemoryError, ReadOnlyError, RedisError, ResponseError

from .changes import Change, ChangeSet
from .digest import SEP, Digest, RunningDigest, digest_of, mismatch, split_field
from .errors import (
    ConflictError,
    StoreDamagedError,
    StoreFullError,
    StoreRegressedError,
    StoreResyncError,
    StoreUnavailableError,
    ValidationError,
)
from .retry import retry_conflicts
from .snapshot import RecordsDecoder, Snapshot
from .store import APART, split_apart

log = logging.getLogger("registry.redis")

# -- key schema ---------------------------------------------------------------
# Every key starts with PREFIX (default "httpdns:").
KEY_REVISION = "revision"  # string: the store-wide revision, an integer
KEY_RECORDS = "records"  # hash: "<kind>\x1f<key>" -> the record's JSON (the current state)
KEY_CHANGES = "changes"  # stream: one entry per batch, ID "<revision>-1", field "cs" =
#                          the ChangeSet JSON; the feed's backlog and the audit log
CHANNEL_FEED = "feed"  # pub/sub channel: the ChangeSet JSON of each commit
KEY_DIGEST = "digest"  # string "REVISION COUNT SUM": the records' digest (registry/digest.py),
#                        written by the same script as the records and the revision
KEY_DAMAGED = "damaged"  # string: why a node's full load found the records damaged (set by that
#                          node, so that every node sees it in its O(1) check and the script
#                          refuses writes); removed by ``restore`` or once a full check passes
KEY_NODES = "nodes"  # sorted set: node id -> expiry (unix ms); an index of the node keys
KEY_NODE = "node:"  # string per node id: its heartbeat JSON, with a TTL (expires by itself)
KEY_APART = "node-apart:"  # string per node id: its heartbeat's APART part, with its own TTL
STREAM_MAXLEN = 1_000_000  # approximate cap on kept history (audit)
# ------------------------------------------------------------------------------

RETRY_FOR = 10.0  # seconds of re-validation while other writers move the revision (no If-Match)
REPLAY_LIMIT = 100  # behind by more revisions than this, reload instead of replaying
SCAN_BATCH = 20_000  # records per HSCAN call of a streamed load (a hint; a few MB raw)
SCAN_ATTEMPTS = 3  # streamed loads tried while writers move the revision, then one atomic read
POLL = 1.0  # seconds between revision checks while the feed is quiet (regression, lost messages)

# KEYS: revision, records, changes, feed channel, digest, damage marker.
# ARGV: base revision, ChangeSet JSON, stream maxlen, then (op, field, value) triples.
# Returns {1, new revision}, {0, current revision} when the base moved, or {-1, why} when the
# stored content is damaged (nothing written): a damage marker left by a node's full load, or
# a count that does not match the digest, is checked on every write (O(1)); the digest itself
# is kept up to date per change.
_APPLY = """
local M = 281474976710656  -- registry.digest.MODULUS, 2^48
local function h(f, v)
  return tonumber(string.sub(redis.sha1hex(f .. '\\n' .. v), 1, 12), 16)
end
local marked = redis.call('GET', KEYS[6])
if marked then return {-1, marked} end
local raw = redis.call('GET', KEYS[1])
local cur = tonumber(raw or '0')
if cur == nil then return {-1, 'the revision key holds ' .. string.sub(raw, 1, 40) .. ', not a number'} end
if cur ~= tonumber(ARGV[1]) then return {0, cur} end
local n, d = 0, 0
local dg = redis.call('GET', KEYS[5])
local unverified = not dg
if dg then
  local r, c, s = string.match(dg, '^(%d+) (%d+) (%d+)$')
  if r == nil then return {-1, 'the digest key is unreadable'} end
  if tonumber(r) > cur then
    return {-1, 'the digest was written at revision ' .. r .. ', the revision is ' .. cur}
  end
  -- Older than the revision: a writer that keeps no digest (an older version) wrote since.
  unverified = tonumber(r) < cur
  n, d = tonumber(c), tonumber(s)
  local have = redis.call('HLEN', KEYS[2])
  if not unverified and have ~= n then
    return {-1, have .. ' records where revision ' .. cur .. ' has ' .. n}
  end
end
if unverified then
  -- No digest for this revision (written before digests existed): compute it once.
  n, d = 0, 0
  local all = redis.call('HGETALL', KEYS[2])
  if cur ~= 0 and #all == 0 then return {-1, 'revision ' .. cur .. ' has no records'} end
  for j = 1, #all, 2 do
    n = n + 1
    d = (d + h(all[j], all[j + 1])) % M
  end
end
local rev = cur + 1
local i = 4
while i <= #ARGV do
  local old = redis.call('HGET', KEYS[2], ARGV[i + 1])
  if old then
    n = n - 1
    d = (d - h(ARGV[i + 1], old)) % M
  end
  if ARGV[i] == 'put' then
    redis.call('HSET', KEYS[2], ARGV[i + 1], ARGV[i + 2])
    n = n + 1
    d = (d + h(ARGV[i + 1], ARGV[i + 2])) % M
  else
    redis.call('HDEL', KEYS[2], ARGV[i + 1])
  end
  i = i + 3
end
redis.call('SET', KEYS[1], rev)
redis.call('SET', KEYS[5], string.format('%d %d %.0f', rev, n, d))
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], rev .. '-1', 'cs', ARGV[2])
redis.call('PUBLISH', KEYS[4], ARGV[2])
return {1, rev}
"""

# KEYS: damage marker. ARGV: the marker as read. Removes it unless another node replaced it.
_CLEAR_MARK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
MARK_RECHECK = 2.0  # seconds between full checks of a store another node marked damaged

# Policies under which Redis may evict keys without a TTL (the registry's) when it is full.
EVICTING = ("allkeys-lru", "allkeys-lfu", "allkeys-random")
_BAD_FEED_LOG_EVERY = (
    10.0  # seconds: garbage on the feed, refused writes: logged at most this often
)


def store_error(exc: RedisError, what: str = "Redis") -> StoreUnavailableError:
    """The registry error for a Redis failure, by kind: refused writes (OOM, MISCONF), keys of
    the wrong type, or unreachable."""
    text = str(exc)
    if isinstance(exc, ResponseError):
        # redis-py strips the error code into the class for some (OOM, READONLY) but not all.
        if isinstance(exc, OutOfMemoryError) or text.startswith("OOM") or "maxmemory" in text:
            return StoreFullError(
                f"Redis refuses writes: maxmemory reached ({text}); nothing was applied"
            )
        if "MISCONF" in text:
            return StoreFullError(
                f"Redis refuses writes: it cannot persist to disk (MISCONF: {text}); "
                "nothing was applied"
            )
        if isinstance(exc, ReadOnlyError):
            return StoreUnavailableError(
                f"Redis refuses writes: it is a read-only replica ({text}); nothing was applied"
            )
        if "WRONGTYPE" in text:
            return StoreDamagedError(
                f"{what} has the wrong type ({text}); the registry's keys are damaged: "
                "re-seed them with `httpdns registry restore --from-node URL`"
            )
    return StoreUnavailableError(f"Redis: {text}")


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


class _LostRace(ConflictError):
    """Another writer moved the revision between our read and our script: read again."""


class RedisStore:
    """Store backend over Redis (see the module docstring for the key schema)."""

    def __init__(self, client: aioredis.Redis, prefix: str = "httpdns:", url: str = "") -> None:
        self._r = client
        self._url = url
        self.k_revision = prefix + KEY_REVISION
        self.k_records = prefix + KEY_RECORDS
        self.k_changes = prefix + KEY_CHANGES
        self.channel = prefix + CHANNEL_FEED
        self.k_digest = prefix + KEY_DIGEST
        self.k_damaged = prefix + KEY_DAMAGED
        self._marked_checked = -1e9  # when ``check`` last verified a marked store in full
        self.k_nodes = prefix + KEY_NODES
        self.k_node = prefix + KEY_NODE
        self.k_apart = prefix + KEY_APART
        self._bad_feed_logged = -1e9
        self._refusal_logged: dict[str, float] = {}  # error code -> when last logged
        self._apply_script = client.register_script(_APPLY)
        self._clear_mark_script = client.register_script(_CLEAR_MARK)
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
        try:
            return await self._apply(tuple(changes), expected_revision, actor)
        except (StoreDamagedError, StoreFullError) as exc:
            # An operator must find these in the log, not only in one client's answer.
            now = time.monotonic()
            if now - self._refusal_logged.get(exc.code, -1e9) > _BAD_FEED_LOG_EVERY:
                self._refusal_logged[exc.code] = now
                log.error("write refused: %s", exc.detail)
            raise

    async def _apply(
        self, changes: tuple[Change, ...], expected_revision: int | None, actor: str
    ) -> ChangeSet:
        async with self._lock:
            return await retry_conflicts(
                lambda: self._attempt(changes, expected_revision, actor),
                retry_for=RETRY_FOR,
                retryable=lambda exc: isinstance(exc, _LostRace),
            )

    async def _attempt(
        self, changes: tuple[Change, ...], expected_revision: int | None, actor: str
    ) -> ChangeSet:
        """Validate against the latest state and commit in one script run; _LostRace when
        another writer moved the revision first (``retry_conflicts`` tries again)."""
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
        keys = [self.k_revision, self.k_records, self.k_changes, self.channel, self.k_digest,
                self.k_damaged]  # fmt: skip
        try:
            ok, _rev = await self._apply_script(keys=keys, args=args)
        except ResponseError as exc:
            # Refused by Redis (OOM, MISCONF, WRONGTYPE): the script did not write.
            raise store_error(exc, "a registry key") from exc
        except RedisError as exc:
            # The script may have run before the connection broke: say so.
            raise StoreUnavailableError(
                f"Redis: {exc}; the change may or may not have been committed "
                "(check the revision or the audit log)"
            ) from exc
        if ok == -1:
            detail = _rev.decode(errors="replace") if isinstance(_rev, bytes) else _rev
            raise _damaged(f"{detail}; nothing was applied")
        if ok:
            self._snap = new
            self._high = max(self._high, new.revision)
            return cs
        if expected_revision is not None:
            raise ConflictError(
                f"expected revision {expected_revision}, the registry moved to {_rev}"
            )
        raise _LostRace(f"another writer committed revision {_rev} first")

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
                        fed = self._decode_feed(message["data"])
                        if fed is None:
                            # Not ours (garbage on the channel): the revision check on the next
                            # turn finds any real change in the stream, so nothing is lost.
                            message = await pubsub.get_message(timeout=0)
                            continue
                        cs = fed
                        if cs.revision == last + 1:
                            self._high = max(self._high, cs.revision)
                            yield cs
                            last = cs.revision
                        elif cs.revision > last + 1:
                            break  # a gap: the backlog fills it on the next turn
                    message = await pubsub.get_message(timeout=0)
        except RedisError as exc:
            raise store_error(exc) from exc
        finally:
            closed.cancel()
            with contextlib.suppress(RedisError, OSError, RuntimeError):
                await pubsub.aclose()

    async def audit(self, since: int = 0, limit: int = 1000) -> list[ChangeSet]:
        """Batches after ``since`` from the stream, oldest first."""
        entries = await self._xrange(f"{since + 1}-0", "+", limit)
        try:
            return [ChangeSet.load(orjson.loads(fields[b"cs"])) for _id, fields in entries]
        except Exception as exc:  # a damaged stream entry: say which key, never a 500
            raise StoreDamagedError(
                f"the change history {self.k_changes} has an unreadable entry ({exc!r:.120})"
            ) from exc

    async def restore(self, snap: Snapshot, actor: str = "restore") -> int:
        """Re-seed Redis from a node's snapshot: allowed when Redis is behind it (lost data)
        or when Redis' content does not match its own digest (damaged); refused otherwise.

        Returns the restored revision: the snapshot's, or one past Redis' when Redis is not
        behind (so no node sees the registry go back)."""
        async with self._lock:
            try:
                async with self._r.pipeline(transaction=True) as pipe:
                    await pipe.watch(self.k_revision, self.k_records, self.k_digest, self.k_damaged)
                    try:
                        current = await self._revision(pipe)
                        why = None
                        if current >= snap.revision:
                            why = await self._damage(pipe, current)
                    except StoreDamagedError as exc:
                        current, why = 0, exc.detail  # an unreadable revision: damaged
                    if why is None and current >= snap.revision:
                        marked = cast(bytes | None, await pipe.get(self.k_damaged))
                        if marked is not None:  # a node found it damaged: trust its word
                            why = marked.decode(errors="replace")
                    if current >= snap.revision and why is None:
                        raise ConflictError(
                            f"Redis is at revision {current}, not behind the snapshot's "
                            f"{snap.revision}, and its content matches its digest"
                        )
                    revision = max(snap.revision, current + 1) if why else snap.revision
                    # The history may have outlived the revision key (evicted, deleted): the
                    # restore must come after every revision it already holds.
                    top = await self._stream_top(pipe)
                    if top >= revision:
                        revision = top + 1
                    if why:
                        log.warning("restoring a damaged registry (%s) at revision %d",
                                    why, revision)  # fmt: skip
                    fields = {
                        _field(c): orjson.dumps(c.value.to_dict())
                        for c in _as_changes(snap)
                        if c.value is not None
                    }
                    digest = digest_of(revision, ((f.encode(), v) for f, v in fields.items()))
                    pipe.multi()
                    pipe.delete(self.k_records, self.k_revision, self.k_digest, self.k_damaged)
                    items = list(fields.items())
                    for i in range(0, len(items), 10_000):
                        pipe.hset(self.k_records, mapping=dict(items[i : i + 10_000]))
                    pipe.set(self.k_revision, revision)
                    pipe.set(self.k_digest, digest.encode())
                    cs = ChangeSet(revision, (), actor, time.time())
                    if await self._r.type(self.k_changes) not in (b"stream", b"none"):
                        pipe.delete(self.k_changes)  # a history of the wrong type: start anew
                    pipe.xadd(
                        self.k_changes,
                        {"cs": orjson.dumps(cs.to_dict()), "resync": b"1"},
                        id=f"{revision}-1",
                    )
                    pipe.publish(self.channel, orjson.dumps({**cs.to_dict(), "resync": True}))
                    await pipe.execute()
            except RedisError as exc:
                raise store_error(exc) from exc
            self._snap = _build_checked(revision, {f.encode(): v for f, v in fields.items()})[0]
            self._high = revision
            return revision

    # -- integrity and the fleet ----------------------------------------------

    async def check(self) -> None:
        """A cheap integrity check (O(1)): the revision is a number, the keys have their types,
        the record count matches the digest and no node's full load found the content
        damaged (the marker it leaves). Raises StoreDamagedError (or StoreUnavailableError).

        A full check of the content happens on every load; while the store is marked
        damaged, this check also reloads in full (every ``MARK_RECHECK`` s) so that a
        store repaired by hand is followed again by every node, and the marker goes."""
        self._check_open()
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.get(self.k_revision)
                pipe.get(self.k_digest)
                pipe.hlen(self.k_records)
                pipe.get(self.k_damaged)
                raw_rev, raw_digest, count, marked = await pipe.execute()
        except RedisError as exc:
            raise store_error(
                exc, f"{self.k_revision}, {self.k_digest} or {self.k_records}"
            ) from exc
        if marked is not None:
            now = time.monotonic()
            if now - self._marked_checked < MARK_RECHECK:
                raise StoreDamagedError(marked.decode(errors="replace"))
            self._marked_checked = now
            await self._load()  # raises (and marks again) while damaged, clears once repaired
            return
        revision = self._parse_revision(raw_rev)
        if raw_digest is None:
            if revision and not count:
                raise _damaged(f"revision {revision} has no records ({self.k_records} is gone)")
            return
        try:
            digest = Digest.decode(raw_digest)
        except ValueError as exc:
            raise _damaged(f"{self.k_digest}: {exc}") from None
        if digest.revision > revision:
            raise _damaged(f"the digest was written at revision {digest.revision}, "
                           f"the revision is {revision}")  # fmt: skip
        if digest.revision == revision and digest.count != count:
            raise _damaged(f"{count} records where revision {revision} has {digest.count}")

    async def preflight(self) -> list[str]:
        """Warnings about the Redis configuration (an eviction policy that can drop the
        registry's keys); [] when fine or when CONFIG is not allowed."""
        try:
            policy = (await self._r.config_get("maxmemory-policy")).get("maxmemory-policy")
        except RedisError:
            return []
        if policy in EVICTING:
            return [
                f"Redis maxmemory-policy is {policy}: when Redis is full it may evict the "
                f"registry's keys ({self.k_records}...); set it to noeviction (or volatile-*)"
            ]
        return []

    async def heartbeat(self, node_id: str, info: dict[str, Any], ttl: float) -> None:
        """Record that ``node_id`` is alive with ``info``, expiring after ``ttl`` seconds
        (``info[APART]`` kept apart: ``Store.heartbeat``)."""
        expires = int((time.time() + ttl) * 1000)
        rest, part = split_apart(info)
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.set(self.k_node + node_id, orjson.dumps(rest), px=int(ttl * 1000))
                if part is not None:
                    pipe.set(self.k_apart + node_id, orjson.dumps(part), px=int(ttl * 1000))
                pipe.zadd(self.k_nodes, {node_id: expires})
                await pipe.execute()
        except RedisError as exc:
            raise store_error(exc) from exc

    async def forget(self, node_id: str) -> None:
        """Remove ``node_id``'s heartbeat (a clean stop)."""
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.delete(self.k_node + node_id, self.k_apart + node_id)
                pipe.zrem(self.k_nodes, node_id)
                await pipe.execute()
        except RedisError as exc:
            raise store_error(exc) from exc

    async def nodes(self, apart: bool = True) -> list[dict[str, Any]]:
        """The heartbeats of the live nodes (those whose key has not expired), by id, each
        with its last ``APART`` part (unless ``apart`` is False)."""
        try:
            now = int(time.time() * 1000)
            await self._r.zremrangebyscore(self.k_nodes, "-inf", now - 60_000)
            ids = [i.decode() for i in cast(list[bytes], await self._r.zrange(self.k_nodes, 0, -1))]
            keys = [self.k_node + i for i in ids] + [self.k_apart + i for i in ids if apart]
            values = await self._r.mget(keys) if ids else []
        except RedisError as exc:
            raise store_error(exc) from exc
        out = []
        parts = values[len(ids) :] if apart else [None] * len(ids)
        for raw, part in zip(values[: len(ids)], parts, strict=True):
            if raw is None:
                continue  # expired: the node stopped heartbeating
            with contextlib.suppress(ValueError):
                info = orjson.loads(raw)
                if isinstance(info, dict):
                    if part is not None:
                        info[APART] = orjson.loads(part)
                    out.append(info)
        return sorted(out, key=lambda i: str(i.get("id")))

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
            raise store_error(exc, self.k_changes) from exc
        return cast(list[tuple[bytes, dict[bytes, bytes]]], entries or [])

    async def _stream_top(self, client: Any) -> int:
        """The revision of the last entry of the change history (0 if none or unreadable)."""
        try:
            last = await client.xrevrange(self.k_changes, "+", "-", count=1)
        except ResponseError:  # WRONGTYPE: the restore replaces it
            return 0
        if not last:
            return 0
        try:
            return int(bytes(last[0][0]).split(b"-")[0])
        except ValueError:
            return 0

    async def _revision(self, client: Any = None) -> int:
        self._check_open()
        try:
            raw = await (client or self._r).get(self.k_revision)
        except RedisError as exc:
            raise store_error(exc, self.k_revision) from exc
        return self._parse_revision(cast(bytes | None, raw))

    def _parse_revision(self, raw: bytes | None) -> int:
        try:
            return int(raw or 0)
        except ValueError:
            raise _damaged(
                f"{self.k_revision} holds {raw[:40]!r}, not a revision number"  # type: ignore[index]
            ) from None

    def _decode_feed(self, data: Any) -> ChangeSet | None:
        """A feed message as a ChangeSet; None for garbage (logged, rate-limited);
        StoreResyncError for a restore's resync message."""
        try:
            body = orjson.loads(data)
            if isinstance(body, dict) and body.get("resync"):
                raise StoreResyncError("the registry was restored; reload a snapshot")
            return ChangeSet.load(body)
        except StoreResyncError:
            raise
        except Exception as exc:  # anything undecodable on our channel is ignored, not fatal
            now = time.monotonic()
            if now - self._bad_feed_logged > _BAD_FEED_LOG_EVERY:
                self._bad_feed_logged = now
                log.warning("ignoring an undecodable message on %s (%r: %s)",
                            self.channel, bytes(data)[:80] if isinstance(data, bytes) else data,
                            exc)  # fmt: skip
            return None

    async def _damage(self, client: Any, revision: int) -> str | None:
        """Why the records at ``revision`` do not match the digest (full check), or None."""
        try:
            raw_digest = await client.get(self.k_digest)
            records = await client.hgetall(self.k_records)
        except ResponseError as exc:  # WRONGTYPE: a key replaced by something else
            return f"{self.k_digest} or {self.k_records}: {exc}"
        return self._verify(revision, raw_digest, records)

    def _verify_digest(self, revision: int, raw_digest: bytes | None, found: Digest) -> str | None:
        """Why records whose digest is ``found`` are not the registry at ``revision`` whose
        stored digest is ``raw_digest``, or None."""
        try:
            expected = None if raw_digest is None else Digest.decode(raw_digest)
        except ValueError as exc:
            return f"{self.k_digest}: {exc}"
        if expected is None or expected.revision < revision:
            # No digest for this revision: the registry was written before digests existed,
            # or an older version wrote since (a rolling upgrade). Trusted as it is; the next
            # write by this version adds the digest.
            if revision and not found.count:
                return f"revision {revision} has no records ({self.k_records} is gone)"
            return None
        return mismatch(expected, found)

    def _verify(
        self, revision: int, raw_digest: bytes | None, records: dict[bytes, bytes]
    ) -> str | None:
        why = self._verify_digest(revision, raw_digest, digest_of(revision, records.items()))
        if why is None:
            return None
        _snap, bad = _build_checked(revision, records)
        if bad:
            why += f"; unreadable: {', '.join(bad[:5])}" + (" ..." if len(bad) > 5 else "")
        return why

    async def _since(self, after: int, upto: int) -> list[ChangeSet]:
        """Batches (after, upto] from the stream; StoreResyncError if any is missing."""
        entries = await self._xrange(f"{after + 1}-0", f"{upto}-1")
        out = []
        for _id, fields in entries:
            if b"resync" in fields:
                raise StoreResyncError("the registry was restored; reload a snapshot")
            try:
                out.append(ChangeSet.load(orjson.loads(fields[b"cs"])))
            except Exception as exc:  # a damaged entry: the records are the other copy
                raise StoreResyncError(
                    f"unreadable change history entry {_id!r}: {exc!r:.80}"
                ) from exc
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
        """The whole registry at one revision, checked against its digest.

        Streamed: ``HSCAN`` in batches of ``SCAN_BATCH``, each record hashed into the
        running digest and decoded as it arrives, so the raw hash and the decoded registry
        are never both held (at 100,000 services that is hundreds of MB). A scan is not one
        transaction, so the revision and the digest are read before and after it: when a
        writer moved them meanwhile, the scan is repeated (``SCAN_ATTEMPTS`` times, then one
        atomic read). Anything wrong with a streamed load (a mismatch, an unreadable record,
        a key of the wrong type; and the duplicates ``HSCAN`` may return while Redis resizes
        the hash) is confirmed by one atomic read, which alone decides that the registry is
        damaged and names the records."""
        self._check_open()
        for _ in range(SCAN_ATTEMPTS):
            try:
                snap = await self._load_streamed()
            except (ResponseError, _Doubt):  # WRONGTYPE, a mismatch: the atomic read decides
                break
            if snap is not None:
                return snap
        return await self._load_atomic()

    async def _load_streamed(self) -> Snapshot | None:
        """One streamed load; None when the revision moved during the scan, _Doubt when the
        records read do not match the digest or do not decode."""
        head = await self._head()
        raw_rev, raw_digest, marked = head
        revision = self._parse_revision(raw_rev)
        running = RunningDigest()
        # Records a digest will vouch for are kept raw, decoded on first use
        # (registry/lazy.py); without one every record is decoded now, and an unreadable
        # one sends the load to the atomic read that names it.
        decoder = RecordsDecoder(lazy=_covers(raw_digest, revision))
        try:
            await self._scan_into(decoder, running)
        except ResponseError:
            raise  # the atomic read reports it as it always did
        except RedisError as exc:
            raise store_error(exc, self.k_records) from exc
        if await self._head() != head:
            return None  # a writer committed during the scan: not one revision, scan again
        why = self._verify_digest(revision, raw_digest, running.at(revision))
        snap, bad = decoder.result(revision)
        if why is not None or bad:
            raise _Doubt(why or ", ".join(bad[:5]))
        await self._clear_mark(marked, revision)
        return snap

    async def _scan_into(self, decoder: RecordsDecoder, running: RunningDigest) -> None:
        """``HSCAN`` the records into ``decoder`` and ``running``, on a connection of our
        own: each batch is asked for before the last one is decoded, so Redis gathers it
        while we decode. (Through the client's ``hscan`` in a task, the command went out
        a few loop turns later, after the decoding: at 100,000 services the load took
        2.2 s, of which 1.5 s waiting; now 1.4-1.5 s.)"""
        pool = self._r.connection_pool
        conn = await pool.get_connection()
        try:
            await conn.send_command("HSCAN", self.k_records, 0, "COUNT", SCAN_BATCH)
            while True:
                raw_cursor, flat = await conn.read_response()
                cursor = int(raw_cursor)
                if cursor != 0:
                    await conn.send_command("HSCAN", self.k_records, cursor, "COUNT", SCAN_BATCH)
                if len(flat) % 2:
                    raise _Doubt("an HSCAN reply with a field and no value")
                decoder.add_fields(flat, running)
                if cursor == 0:
                    break
        except BaseException:
            await conn.disconnect()  # a reply may still be on its way: never reuse it as is
            raise
        finally:
            await pool.release(conn)

    async def _head(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """The revision, the digest and the damage marker, read together."""
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.get(self.k_revision)
                pipe.get(self.k_digest)
                pipe.get(self.k_damaged)
                raw_rev, raw_digest, marked = await pipe.execute()
        except RedisError as exc:
            raise store_error(exc, f"{self.k_revision} or {self.k_digest}") from exc
        return raw_rev, raw_digest, marked

    async def _clear_mark(self, marked: bytes | None, revision: int) -> None:
        if marked is not None:
            # The content matches its digest again (repaired by hand): the fleet may go on.
            with contextlib.suppress(RedisError):
                if await self._clear_mark_script(keys=[self.k_damaged], args=[marked]):
                    log.info("the registry in Redis at revision %d matches its digest again; "
                             "writes are accepted again", revision)  # fmt: skip

    async def _load_atomic(self) -> Snapshot:
        """The registry read in one transaction (``HGETALL``): raw records and decoded
        registry held at once. Decides damage for the streamed load."""
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.get(self.k_revision)
                pipe.get(self.k_digest)
                pipe.hgetall(self.k_records)
                pipe.get(self.k_damaged)
                raw_rev, raw_digest, records, marked = await pipe.execute()
        except RedisError as exc:
            raise store_error(
                exc, f"{self.k_revision}, {self.k_digest} or {self.k_records}"
            ) from exc
        revision = self._parse_revision(raw_rev)
        why = self._verify(revision, raw_digest, records)
        if why is not None:
            # Never adopt records that are not the registry that was written (a partial
            # registry moves clients): the caller keeps its last good copy.
            raise await self._mark(
                _damaged(f"the registry in Redis at revision {revision} is damaged: {why}"),
                marked,
            )
        snap, bad = _build_checked(revision, records)
        if bad:  # the digest matched what was written, yet a record does not decode
            raise await self._mark(
                _damaged(f"unreadable records at revision {revision}: {', '.join(bad[:5])}"),
                marked,
            )
        await self._clear_mark(marked, revision)
        return snap

    async def _mark(self, error: StoreDamagedError, marked: bytes | None) -> StoreDamagedError:
        """Leave ``error`` in the store for every node: running nodes, whose tables stay good
        and whose O(1) check cannot see an altered record, then report the damage too, and
        the write script refuses writes on top of it (the fleet would drift apart)."""
        text = error.detail.encode()
        if marked != text:
            try:
                await self._r.set(self.k_damaged, text)
            except RedisError as exc:  # the error itself still reaches the caller
                log.warning("cannot mark the registry damaged for the other nodes: %s", exc)
        return error


def _as_changes(snap: Snapshot) -> list[Change]:
    out = [Change.put(d) for d in snap.datacenters.values()]
    out += [Change.put(r) for r in snap.regions.values()]
    out += [Change.put(s) for s in snap.services.values()]
    out += [Change.put(r) for r in snap.releases.values()]
    out += [Change.put(e) for eps in snap.endpoints.values() for e in eps.values()]
    out += [Change.put(r) for r in snap.rollouts.values()]
    out += [Change.put(a) for a in snap.allocations.values()]
    out += [Change.put(h) for h in snap.heartbeats.values()]
    out += [Change.put(z) for z in snap.zones.values()]
    return out


def _covers(raw_digest: bytes | None, revision: int) -> bool:
    """Whether a stored digest is there to check the records of ``revision``."""
    try:
        return raw_digest is not None and Digest.decode(raw_digest).revision >= revision
    except ValueError:
        return False


def _build_checked(revision: int, records: dict[bytes, bytes]) -> tuple[Snapshot, list[str]]:
    rows = [(*split_field(field), value) for field, value in records.items()]
    return Snapshot.decode_records(revision, rows)


class _Doubt(Exception):
    """A streamed load that does not match its digest: damage, or ``HSCAN`` duplicates."""


def _damaged(why: str) -> StoreDamagedError:
    return StoreDamagedError(
        f"{why}. Writes are refused; re-seed the registry from a good node with "
        "`httpdns registry restore --from-node URL`"
    )
