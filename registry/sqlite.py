"""The embedded store: one SQLite file (WAL), or memory for tests.

Schema: ``records`` holds the current state (one row per record), ``changes``
holds every committed batch (it is both the change feed and the audit log),
``meta`` holds the revision and the records' digest (``count`` and ``digest``,
see registry/digest.py, written in the same transaction as the records),
``nodes`` holds the nodes' heartbeats. All SQLite calls run on one dedicated thread so
the event loop (and the query hot path) never waits on disk. Other processes
writing the same file are noticed by polling ``PRAGMA data_version``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from .changes import Change, ChangeSet
from .digest import (
    MODULUS,
    Digest,
    RunningDigest,
    digest_of,
    field_name,
    mismatch,
    record_hash,
)
from .errors import (
    ConflictError,
    StoreDamagedError,
    StoreFullError,
    StoreUnavailableError,
    ValidationError,
)
from .snapshot import RecordsDecoder, Snapshot
from .store import APART, split_apart

log = logging.getLogger("registry.sqlite")

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, revision INTEGER NOT NULL,
    PRIMARY KEY (kind, key));
CREATE TABLE IF NOT EXISTS changes (
    revision INTEGER PRIMARY KEY, time REAL NOT NULL, actor TEXT NOT NULL, changes BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (id TEXT PRIMARY KEY, info BLOB NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS node_apart (id TEXT PRIMARY KEY, part BLOB NOT NULL, expires REAL NOT NULL);
INSERT OR IGNORE INTO meta (k, v) VALUES ('revision', 0);
"""


POLL_INTERVAL = 0.02  # seconds between PRAGMA data_version checks while someone watches
LOG_EVERY = 10.0  # seconds: the same trouble is logged at most this often


def parse_url(url: str) -> str:
    """``sqlite:///path`` -> ``path``; ``sqlite://:memory:`` -> ``:memory:``."""
    if url in ("sqlite://:memory:", "sqlite:///:memory:"):
        return ":memory:"
    if not url.startswith("sqlite:///") or len(url) <= len("sqlite:///"):
        raise ValidationError("store", f"bad SQLite URL {url!r}: use sqlite:///path/to/registry.db")
    return url[len("sqlite:///") :]


class SQLiteStore:
    """Store backend over one SQLite database."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        executor: ThreadPoolExecutor,
        snap: Snapshot,
        path: str = ":memory:",
        damaged: str | None = None,
    ):
        self._conn = conn
        self._path = path
        self._damaged = damaged  # why the file's records do not match their digest
        self._error_logged: dict[str, float] = {}
        self._executor = executor
        self._snap = snap  # touched only on the executor thread
        self._data_version = 0
        self._changed = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._watchers = 0
        self._closed = False

    @classmethod
    async def open(cls, url: str) -> SQLiteStore:
        """Open (creating if needed) the database named by ``url``."""
        path = parse_url(url)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        loop = asyncio.get_running_loop()
        try:
            conn, snap, damaged = await loop.run_in_executor(executor, _connect, path)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        if damaged:
            log.error("%s", damaged)
        store = cls(conn, executor, snap, path, damaged)
        store._data_version = await store._run(store._read_data_version)
        return store

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StoreUnavailableError("the store is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            error = sqlite_error(exc, self._path)
            now = time.monotonic()
            # Per kind of error, at most every LOG_EVERY s: the poller may fail 50 times a second.
            if now - self._error_logged.get(error.code, -1e9) > LOG_EVERY:
                self._error_logged[error.code] = now
                log.error("%s", error.detail)
            raise error from exc

    def _check_damage(self) -> None:
        if self._damaged is not None:
            raise StoreDamagedError(self._damaged)

    # -- protocol -------------------------------------------------------------

    async def snapshot(self) -> Snapshot:
        """The whole registry at the latest revision."""
        self._check_damage()
        return await self._run(self._snapshot_sync)

    async def apply(
        self,
        changes: Sequence[Change],
        *,
        expected_revision: int | None = None,
        actor: str = "unknown",
    ) -> ChangeSet:
        """Apply a batch atomically (see Store.apply)."""
        self._check_damage()
        cs = await self._run(self._apply_sync, tuple(changes), expected_revision, actor)
        self._notify()
        return cs

    async def watch(self, from_revision: int) -> AsyncIterator[ChangeSet]:
        """Committed batches after ``from_revision``, waiting for new ones forever."""
        last = from_revision
        self._watchers += 1
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll(), name="sqlite-data-version")
        try:
            while True:
                event = self._changed  # taken before reading, so no commit is missed
                batch = await self._run(self._changes_since, last, 500)
                for cs in batch:
                    yield cs
                    last = cs.revision
                if not batch:
                    await event.wait()
        finally:
            self._watchers -= 1

    async def audit(self, since: int = 0, limit: int = 1000) -> list[ChangeSet]:
        """Committed batches after ``since``, oldest first."""
        return await self._run(self._changes_since, since, limit)

    async def check(self) -> None:
        """Raise StoreDamagedError when the file's records did not match their digest."""
        self._check_damage()

    async def heartbeat(self, node_id: str, info: dict[str, Any], ttl: float) -> None:
        """Record that ``node_id`` is alive with ``info``, expiring after ``ttl`` seconds
        (``info[APART]`` kept apart: ``Store.heartbeat``)."""
        rest, part = split_apart(info)
        apart = orjson.dumps(part) if part is not None else None
        await self._run(self._heartbeat_sync, node_id, orjson.dumps(rest), time.time() + ttl, apart)

    async def forget(self, node_id: str) -> None:
        """Remove ``node_id``'s heartbeat (a clean stop)."""
        await self._run(self._forget_sync, node_id)

    async def nodes(self, apart: bool = True) -> list[dict[str, Any]]:
        """The heartbeats of the live nodes, by id, each with its last ``APART`` part
        (unless ``apart`` is False)."""
        rows = await self._run(self._live_nodes, time.time(), apart)
        out = []
        for raw, part in rows:
            with contextlib.suppress(ValueError):
                info = orjson.loads(raw)
                if isinstance(info, dict):
                    if part is not None:
                        info[APART] = orjson.loads(part)
                    out.append(info)
        return out

    async def close(self) -> None:
        """Stop polling and close the database."""
        if self._closed:
            return
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
        self._closed = True
        self._executor.shutdown(wait=True)
        self._notify()

    # -- change notification --------------------------------------------------

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def _poll(self) -> None:
        """Wake watchers when another connection (another process) committed."""
        while not self._closed:
            await asyncio.sleep(POLL_INTERVAL)
            if not self._watchers:
                continue
            try:
                version = await self._run(self._read_data_version)
            except StoreUnavailableError:
                continue
            if version != self._data_version:
                self._data_version = version
                self._notify()

    # -- executor-thread side -------------------------------------------------

    def _heartbeat_sync(
        self, node_id: str, info: bytes, expires: float, apart: bytes | None
    ) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            now = time.time()
            conn.execute("DELETE FROM nodes WHERE expires < ?", (now,))
            conn.execute("DELETE FROM node_apart WHERE expires < ?", (now,))
            conn.execute(
                "INSERT OR REPLACE INTO nodes (id, info, expires) VALUES (?,?,?)",
                (node_id, info, expires),
            )
            if apart is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO node_apart (id, part, expires) VALUES (?,?,?)",
                    (node_id, apart, expires),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _forget_sync(self, node_id: str) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")  # the node and its part go together
        try:
            conn.execute("DELETE FROM nodes WHERE id = ?", (node_id,))
            conn.execute("DELETE FROM node_apart WHERE id = ?", (node_id,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _live_nodes(self, now: float, apart: bool) -> list[tuple[bytes, bytes | None]]:
        if not apart:
            return self._conn.execute(
                "SELECT info, NULL FROM nodes WHERE expires > ? ORDER BY id", (now,)
            ).fetchall()
        return self._conn.execute(
            "SELECT n.info, a.part FROM nodes n LEFT JOIN node_apart a"
            " ON a.id = n.id AND a.expires > ? WHERE n.expires > ? ORDER BY n.id",
            (now, now),
        ).fetchall()

    def _read_data_version(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def _revision(self) -> int:
        return int(self._conn.execute("SELECT v FROM meta WHERE k = 'revision'").fetchone()[0])

    def _catch_up(self) -> None:
        """Bring the cached snapshot to the database's revision (others may have written)."""
        rev = self._revision()
        while self._snap.revision < rev:
            for cs in self._changes_since(self._snap.revision, 1000):
                self._snap, _ = self._snap.apply(cs.changes, cs.revision)

    def _snapshot_sync(self) -> Snapshot:
        self._catch_up()
        return self._snap

    def _apply_sync(
        self, changes: tuple[Change, ...], expected: int | None, actor: str
    ) -> ChangeSet:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._catch_up()
            rev = self._snap.revision
            if expected is not None and expected != rev:
                raise ConflictError(f"expected revision {expected}, the registry is at {rev}")
            new, effective = self._snap.apply(changes, rev + 1)
            cs = ChangeSet(rev + 1, effective, actor, time.time())
            count, total = self._digest(rev)
            for c in effective:
                field = field_name(c.kind, c.key)
                old = conn.execute(
                    "SELECT value FROM records WHERE kind = ? AND key = ?", (c.kind, c.key)
                ).fetchone()
                if old is not None:
                    count -= 1
                    total = (total - record_hash(field, bytes(old[0]))) % MODULUS
                if c.value is None:
                    conn.execute("DELETE FROM records WHERE kind = ? AND key = ?", (c.kind, c.key))
                else:
                    value = orjson.dumps(c.value.to_dict())
                    conn.execute(
                        "INSERT OR REPLACE INTO records (kind, key, value, revision) VALUES (?,?,?,?)",
                        (c.kind, c.key, value, cs.revision),
                    )
                    count += 1
                    total = (total + record_hash(field, value)) % MODULUS
            _set_digest(conn, Digest(cs.revision, count, total))
            conn.execute(
                "INSERT INTO changes (revision, time, actor, changes) VALUES (?,?,?,?)",
                (cs.revision, cs.time, actor, orjson.dumps([c.to_dict() for c in effective])),
            )
            conn.execute("UPDATE meta SET v = ? WHERE k = 'revision'", (cs.revision,))
            conn.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (SQLITE_FULL does): a second ROLLBACK would
            # replace the real error with "no transaction is active".
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._snap = new
        return cs

    def _digest(self, revision: int) -> tuple[int, int]:
        """``(count, sum)`` of the records at ``revision``: stored, or computed when a
        writer that keeps no digest (an older version) wrote since."""
        meta = dict(self._conn.execute("SELECT k, v FROM meta"))
        if meta.get("digest_revision") == revision:
            return int(meta["count"]), int(meta["digest"])
        found = _compute(self._conn, revision)
        return found.count, found.sum

    def _changes_since(self, since: int, limit: int) -> list[ChangeSet]:
        rows = self._conn.execute(
            "SELECT revision, time, actor, changes FROM changes WHERE revision > ? "
            "ORDER BY revision LIMIT ?",
            (since, limit),
        ).fetchall()
        return [
            ChangeSet(rev, tuple(Change.load(c) for c in orjson.loads(body)), actor, t)
            for rev, t, actor, body in rows
        ]


def sqlite_error(exc: sqlite3.Error, path: str) -> StoreUnavailableError:
    """The registry error for a SQLite failure, naming the cause (disk full above all)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_FULL:
        return StoreFullError(
            f"disk full: SQLite cannot write {path} (SQLITE_FULL: {exc}); nothing was applied"
        )
    if code is not None and code & 0xFF == sqlite3.SQLITE_IOERR:
        return StoreUnavailableError(f"SQLite I/O error on {path}: {exc}; nothing was applied")
    if code == sqlite3.SQLITE_READONLY:
        return StoreUnavailableError(f"SQLite: {path} is read-only ({exc}); nothing was applied")
    return StoreUnavailableError(f"SQLite: {exc}")


def _connect(path: str) -> tuple[sqlite3.Connection, Snapshot, str | None]:
    """Open the database, create the schema, load (and verify) the current state."""
    if path != ":memory:":
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailableError(f"cannot create the directory for {path}: {exc}") from exc
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    except sqlite3.Error as exc:
        raise StoreUnavailableError(f"cannot open SQLite database {path}: {exc}") from exc
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(_SCHEMA)
        return (conn, *_load(conn, path))
    except sqlite3.Error as exc:
        conn.close()
        raise StoreUnavailableError(f"cannot open SQLite database {path}: {exc}") from exc


def _compute(conn: sqlite3.Connection, revision: int) -> Digest:
    rows = conn.execute("SELECT kind, key, value FROM records")
    return digest_of(revision, ((field_name(k, key), bytes(v)) for k, key, v in rows))


def _set_digest(conn: sqlite3.Connection, digest: Digest) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)",
        [("digest_revision", digest.revision), ("count", digest.count), ("digest", digest.sum)],
    )


def _load(conn: sqlite3.Connection, path: str) -> tuple[Snapshot, str | None]:
    """The snapshot, and why it is damaged (then the snapshot is empty) or None."""
    conn.execute("BEGIN")  # one transaction: the revision, the digest and the rows agree
    try:
        meta = dict(conn.execute("SELECT k, v FROM meta"))
        revision = int(meta["revision"])
        stored = meta.get("digest_revision")
        running = RunningDigest()
        # Rows that the digest will vouch for are kept raw and decoded on first use
        # (registry/lazy.py); without a digest for this revision every row is decoded
        # now, so that an unreadable one is found and named at the load.
        decoder = RecordsDecoder(lazy=stored is not None and stored >= revision)
        # streamed: each row hashed, then decoded or kept; the query's rows are never
        # all in memory (BLOB values come as bytes)
        decoder.add_hashed(conn.execute("SELECT kind, key, value FROM records"), running)
        snap, bad = decoder.result(revision)
        found = running.at(revision)
        if stored is None or stored < revision:
            # Written before digests existed (or by an older version since): this file is
            # the only copy and is trusted as it is; from now on every write keeps the digest.
            _set_digest(conn, found)
            why = None
        else:
            why = mismatch(Digest(int(stored), int(meta["count"]), int(meta["digest"])), found)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if bad and why is None:
        why = f"unreadable records: {', '.join(bad[:5])}"
    if why is not None:
        return Snapshot(), (
            f"the registry in {path} at revision {revision} is damaged: {why}. Writes are "
            "refused; restore the file from a backup"
        )
    return snap, None
