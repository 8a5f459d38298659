"""The embedded store: one SQLite file (WAL), or memory for tests.

Schema: ``records`` holds the current state (one row per record), ``changes``
holds every committed batch (it is both the change feed and the audit log),
``meta`` holds the revision. All SQLite calls run on one dedicated thread so
the event loop (and the query hot path) never waits on disk. Other processes
writing the same file are noticed by polling ``PRAGMA data_version``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from .changes import Change, ChangeSet
from .errors import ConflictError, StoreUnavailableError, ValidationError
from .snapshot import Snapshot

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, revision INTEGER NOT NULL,
    PRIMARY KEY (kind, key));
CREATE TABLE IF NOT EXISTS changes (
    revision INTEGER PRIMARY KEY, time REAL NOT NULL, actor TEXT NOT NULL, changes BLOB NOT NULL);
INSERT OR IGNORE INTO meta (k, v) VALUES ('revision', 0);
"""


POLL_INTERVAL = 0.02  # seconds between PRAGMA data_version checks while someone watches


def parse_url(url: str) -> str:
    """``sqlite:///path`` -> ``path``; ``sqlite://:memory:`` -> ``:memory:``."""
    if url in ("sqlite://:memory:", "sqlite:///:memory:"):
        return ":memory:"
    if not url.startswith("sqlite:///") or len(url) <= len("sqlite:///"):
        raise ValidationError("store", f"bad SQLite URL {url!r}: use sqlite:///path/to/registry.db")
    return url[len("sqlite:///") :]


class SQLiteStore:
    """Store backend over one SQLite database."""

    def __init__(self, conn: sqlite3.Connection, executor: ThreadPoolExecutor, snap: Snapshot):
        self._conn = conn
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
            conn, snap = await loop.run_in_executor(executor, _connect, path)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        store = cls(conn, executor, snap)
        store._data_version = await store._run(store._read_data_version)
        return store

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StoreUnavailableError("the store is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"SQLite: {exc}") from exc

    # -- protocol -------------------------------------------------------------

    async def snapshot(self) -> Snapshot:
        """The whole registry at the latest revision."""
        return await self._run(self._snapshot_sync)

    async def apply(
        self,
        changes: Sequence[Change],
        *,
        expected_revision: int | None = None,
        actor: str = "unknown",
    ) -> ChangeSet:
        """Apply a batch atomically (see Store.apply)."""
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
            for c in effective:
                if c.value is None:
                    conn.execute("DELETE FROM records WHERE kind = ? AND key = ?", (c.kind, c.key))
                else:
                    conn.execute(
                        "INSERT OR REPLACE INTO records (kind, key, value, revision) VALUES (?,?,?,?)",
                        (c.kind, c.key, orjson.dumps(c.value.to_dict()), cs.revision),
                    )
            conn.execute(
                "INSERT INTO changes (revision, time, actor, changes) VALUES (?,?,?,?)",
                (cs.revision, cs.time, actor, orjson.dumps([c.to_dict() for c in effective])),
            )
            conn.execute("UPDATE meta SET v = ? WHERE k = 'revision'", (cs.revision,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._snap = new
        return cs

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


def _connect(path: str) -> tuple[sqlite3.Connection, Snapshot]:
    """Open the database, create the schema, load the current state."""
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
        return conn, _load(conn)
    except sqlite3.Error as exc:
        conn.close()
        raise StoreUnavailableError(f"cannot open SQLite database {path}: {exc}") from exc


def _load(conn: sqlite3.Connection) -> Snapshot:
    conn.execute("BEGIN")  # one read transaction: the revision and the rows agree
    try:
        revision = int(conn.execute("SELECT v FROM meta WHERE k = 'revision'").fetchone()[0])
        rows = conn.execute("SELECT kind, key, value FROM records").fetchall()
    finally:
        conn.execute("COMMIT")
    return Snapshot.from_records(revision, rows)
