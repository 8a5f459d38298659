"""Logging that a hostile client cannot turn into a flood.

Client errors (malformed requests, framing errors, timeouts, rate limits) are
counted per kind and logged as one line per kind per interval with the count;
tracebacks are for genuine bugs only, and even those are capped per interval
(a bug triggered by every request must not fill the disk either).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

INTERVAL = 10.0  # seconds between two lines of one kind
MAX_TRACEBACKS = 5  # per interval; further bugs are counted and summarised


class RateLimitedLog:
    """One line per kind per ``interval``, with how many were seen since the last one."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self.counts: dict[str, int] = {}  # since the process started, per kind (metrics)
        self._pending: dict[str, int] = {}  # not yet logged
        self._last: dict[str, float] = {}
        self._tracebacks = 0
        self._tracebacks_at = 0.0

    def note(self, kind: str, detail: str = "", level: int = logging.INFO) -> None:
        """Count an error of ``kind`` (a client's, or a store outage); log it if its kind was
        quiet for an interval."""
        self.counts[kind] = self.counts.get(kind, 0) + 1
        pending = self._pending.get(kind, 0) + 1
        now = self.clock()
        if now - self._last.get(kind, -self.interval) < self.interval:
            self._pending[kind] = pending
            return
        self._last[kind] = now
        self._pending[kind] = 0
        more = f" ({pending} since the last report)" if pending > 1 else ""
        self.logger.log(level, "%s%s%s", kind, f": {detail}" if detail else "", more)

    def bug(self, what: str) -> None:
        """Log the exception being handled with its traceback, at most ``MAX_TRACEBACKS``
        times per interval (call from an ``except`` block)."""
        now = self.clock()
        if now - self._tracebacks_at >= self.interval:
            if self._tracebacks > MAX_TRACEBACKS:
                self.logger.error(
                    "%d more internal errors were not logged", self._tracebacks - MAX_TRACEBACKS
                )
            self._tracebacks_at, self._tracebacks = now, 0
        self._tracebacks += 1
        self.counts["internal"] = self.counts.get("internal", 0) + 1
        if self._tracebacks <= MAX_TRACEBACKS:
            self.logger.exception("internal error %s", what)


# The node's own: every front end reports here, so one kind is one line whatever the port.
client_log = RateLimitedLog(logging.getLogger("httpdns.clients"))


class ClientErrorsOnly(logging.Filter):
    """For aiohttp's server logger: a request it could not parse is the client's error —
    counted and rate-limited in ``client_log``, without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        status = getattr(exc, "code", None)
        if isinstance(status, int) and 400 <= status < 500:
            client_log.note("http_framing", str(getattr(exc, "message", exc)).strip()[:200])
            return False
        return True
