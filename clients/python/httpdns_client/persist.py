"""A cache that survives app restarts (opt-in): answers are saved to a store and put
back when the next resolver starts, each with the time it was fetched, so that

- an answer still within its TTL is served fresh for what is left of it;
- an older one is served stale while a refresh runs (revalidated on first use);
- none is ever served more than ``max_age`` seconds after it was fetched.

A store is anything with ``load() -> iterable of dicts`` and ``save(list of dicts)``;
``FileStore`` keeps them in a JSON file (written atomically, mode 0600).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from .core import Cache, normalize_name, normalize_qtype

log = logging.getLogger("httpdns_client")
FORMAT = 1


class CacheStore(Protocol):
    """Where persisted answers live between runs."""

    def load(self) -> Iterable[Mapping[str, Any]]:
        """The records saved last (none when there is nothing)."""

    def save(self, records: list[dict[str, Any]]) -> None:
        """Replace the saved records."""


class FileStore:
    """Records in one JSON file; a missing or unreadable file is an empty store."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> list[dict[str, Any]]:
        """The records in the file (``[]`` if it is missing or not ours)."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.warning("httpdns cache file %s is unreadable, ignored: %s", self.path, exc)
            return []
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return []
        records = data.get("answers")
        return [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []

    def save(self, records: list[dict[str, Any]]) -> None:
        """Write the records to a temporary file and rename it over the old one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".httpdns-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump({"format": FORMAT, "answers": records}, out, separators=(",", ":"))
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def as_store(store: str | os.PathLike[str] | CacheStore) -> CacheStore:
    """A store from a path or a store object."""
    if isinstance(store, str | os.PathLike):
        return FileStore(store)
    if not callable(getattr(store, "load", None)) or not callable(getattr(store, "save", None)):
        raise TypeError("cache_store must be a file path or have load() and save(records)")
    return store


def snapshot(cache: Cache, now: float, wall_now: float) -> list[dict[str, Any]]:
    """The positive answers worth keeping, with their fetch time as unix seconds."""
    out = []
    for entry in cache.entries.values():
        a = entry.cached
        if not a.addresses or now >= entry.stale_until:
            continue
        out.append(
            {
                "name": a.name,
                "type": a.qtype,
                "addresses": list(a.addresses),
                "ttl": a.ttl,
                "fetched": round(wall_now - (now - entry.fetched_at), 3),
                "server": a.server,
            }
        )
    return out


def restore(
    cache: Cache,
    records: Iterable[Mapping[str, Any]],
    now: float,
    wall_now: float,
    max_age: float,
) -> int:
    """Put saved records back into ``cache``; how many were restored. Records that are
    malformed, negative, from the future or older than ``max_age`` are skipped."""
    count = 0
    for rec in records:
        try:
            name = normalize_name(str(rec["name"]))
            qtype = normalize_qtype(str(rec["type"]))
            addresses = [str(ipaddress.ip_address(str(a))) for a in rec["addresses"]]
            ttl = float(rec["ttl"])
            age = wall_now - float(rec["fetched"])
            server = rec.get("server")
        except (KeyError, TypeError, ValueError):
            continue
        if age < 0 or ttl < 0 or not addresses:
            continue  # a clock that went back cannot vouch for the answer's age
        server_text = str(server) if server is not None else None
        entry = cache.restore(name, qtype, addresses, ttl, now - age, now, max_age, server_text)
        count += entry is not None
    return count
