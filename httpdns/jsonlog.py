"""Structured logs (``serve --log-format json``) and the events worth one line each.

``JsonFormatter`` writes every log record as one JSON object per line: ``time``,
``level``, ``logger``, ``message``, and the record's ``event`` fields when it has
them. The events (logged in either format; in text they read as sentences):

- ``registry_change``: one per batch applied by this node — ``revision``,
  ``actor``, ``verbs`` (``put service/shop.example.org``, ...). Heartbeat records
  are bookkeeping and are left out.
- ``rollout``: one per new entry in a rollout's event history, with the rollout's
  ``service``, ``id``, ``phase``, ``step`` and ``percent``.
- ``health``: an endpoint whose ``healthy`` flag flipped (``service``,
  ``endpoint``, ``healthy``), and the node's own status changing (``status``,
  ``was``).
- ``query``: a sampled query (``--query-log-sample P``): ``dialect``, ``rcode``,
  ``answers`` and ``seconds``. Queries are picked among the ones whose latency is
  sampled (one in ``metrics.SAMPLE``), so P is at most 1/SAMPLE and costs the hot
  path nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from registry.changes import ChangeSet
from registry.model import Endpoint, Rollout
from registry.snapshot import Snapshot

from .metrics import SAMPLE, Answer

log = logging.getLogger("httpdns.events")
query_log = logging.getLogger("httpdns.queries")

_SKIP = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
HEALTH_POLL = 1.0  # seconds between two looks at the node's status


class JsonFormatter(logging.Formatter):
    """One JSON object per record; fields passed with ``extra=`` come along."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self.worker = worker  # with --workers: which one wrote the line

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.worker is not None:
            out["worker"] = self.worker
        for k, v in record.__dict__.items():
            if k not in _SKIP and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


MAX_VERBS = 20  # changes named in one log line; a bulk apply's line says how many more


def verbs(cs: ChangeSet) -> list[str]:
    """``op kind/key`` of each change of a batch, heartbeats left out."""
    return [f"{c.op} {c.kind}/{c.key}" for c in cs.changes if c.kind != "heartbeat"]


def _named(done: list[str]) -> list[str]:
    """The first ``MAX_VERBS`` verbs, then ``... and N more`` (a log line stays short)."""
    if len(done) <= MAX_VERBS:
        return done
    return [*done[:MAX_VERBS], f"... and {len(done) - MAX_VERBS} more"]


class ChangeLog:
    """A ``Node.listeners`` entry: logs each applied batch, new rollout events and endpoint
    health flips."""

    def __call__(self, before: Snapshot, cs: ChangeSet) -> None:
        done = verbs(cs)
        if not done:
            return
        named = _named(done)
        log.info(
            "revision %d by %s: %s",
            cs.revision,
            cs.actor,
            ", ".join(named),
            extra={
                "event": "registry_change",
                "revision": cs.revision,
                "actor": cs.actor,
                "changes": len(done),
                "verbs": named,
            },
        )
        for c in cs.changes:
            if c.op != "put" or c.value is None:
                continue
            if isinstance(c.value, Rollout):
                self._rollout(before.rollouts.get(c.key), c.value)
            elif isinstance(c.value, Endpoint):
                service, _, eid = c.key.partition("/")
                old = before.endpoints_of(service).get(eid)
                if old is not None and old.healthy != c.value.healthy:
                    self._flip(c.key, c.value.healthy)

    @staticmethod
    def _rollout(old: Any, new: Any) -> None:
        seen = len(old.events) if old is not None and old.id == new.id else 0
        for event in new.events[seen:]:
            log.info(
                "rollout %s/%s %s step %d: %s",
                new.service,
                new.id,
                new.phase,
                new.step,
                event.get("message") or event.get("kind") or dict(event),
                extra={
                    "event": "rollout",
                    "service": new.service,
                    "id": new.id,
                    "phase": new.phase,
                    "step": new.step,
                    "percent": new.percent,
                    "detail": dict(event),
                },
            )

    @staticmethod
    def _flip(key: str, healthy: bool) -> None:
        service, _, endpoint = key.partition("/")
        log.info(
            "endpoint %s is now %s",
            key,
            "healthy" if healthy else "unhealthy",
            extra={"event": "health", "service": service, "endpoint": endpoint, "healthy": healthy},
        )


async def watch_health(health: Callable[[], Mapping[str, Any]], stop: asyncio.Event) -> None:
    """Log the node's status each time it changes (looked at every ``HEALTH_POLL`` s)."""
    was = str(health().get("status"))
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), HEALTH_POLL)
        now = health()
        status = str(now.get("status"))
        if status != was:
            log.warning(
                "node status %s (was %s)",
                status,
                was,
                extra={
                    "event": "health",
                    "status": status,
                    "was": was,
                    "revision": now.get("revision"),
                    "store": now.get("store"),
                },
            )
            was = status


class QueryLog:
    """Logs a sampled share of queries; fed from the latency-sampled path only."""

    def __init__(self, share: float, rng: Callable[[], float] = random.random) -> None:
        self.share = share
        self.odds = min(1.0, share * SAMPLE)  # of a latency-sampled query
        self.rng = rng

    def maybe(
        self, dialect: str, rcode: str, answers: Iterable[Answer], seconds: float, peer: str
    ) -> None:
        """Log this (latency-sampled) query with probability ``share * SAMPLE``."""
        if self.share <= 0 or self.rng() >= self.odds:
            return
        listed = [{"service": a[0], "dc": a[1], "version": a[2], "cohort": a[3]} for a in answers]
        query_log.info(
            "%s %s %s in %.1f us",
            dialect,
            rcode,
            " ".join(f"{a['service']}@{a['dc']}/{a['version']}" for a in listed) or "-",
            seconds * 1e6,
            extra={
                "event": "query",
                "dialect": dialect,
                "rcode": rcode,
                "answers": listed,
                "seconds": round(seconds, 9),
                "client": peer,
            },
        )
