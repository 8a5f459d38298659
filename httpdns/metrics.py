"""Prometheus metrics of a node (``GET /metrics``), counted at almost no cost per query.

The query hot paths (the HTTP repeat cache in ``fasthttp``, the exact-bytes DNS
cache in ``dnsserver``) answer a repeated query in about a microsecond of
Python, so they never call prometheus-client per query. Instead every kept
reply carries a ``Tally``: a counter cell shared by all kept replies with the
same labels (dialect, rcode, and the (service, dc, version, cohort) of each
name answered); a cache hit is ``tally.n += 1``. A cell that is no longer kept
anywhere folds its count into the totals as it is freed (``Tally.__del__``), so
evicted entries lose nothing. Answers that are computed (cache misses, the
aiohttp path) are counted straight into the totals with ``QueryStats.count``, or,
when a miss lane reuses a reply it encoded once, in a miss cell of that reply
(``QueryStats.miss_cell``: the same cell, counted as front-cache misses).

Latency is sampled: one request in ``SAMPLE`` is timed (per front end), the
others are not (``perf_counter`` twice per request would cost more than the
counting). The histogram's help says so.

At scrape time ``NodeMetrics.totals`` turns all of it into plain dicts
(``Totals``: label tuples to numbers) and ``Collector`` renders them as metric
families for prometheus-client — the exposition format is never written by
hand. With ``--workers N`` each worker writes its totals to a per-node
directory once a second (``WorkerFiles``) and the worker that is scraped sums
every worker's (counters and histograms summed, no ``worker`` label; gauges as
``SPECS`` says: revision the lowest, staleness the highest, connections summed).

Cardinality is bounded by the registry, never by clients: ``dialect`` (5) x
``rcode`` (a dozen values); ``service x dc x version x cohort`` for answers;
client error kinds are the node's own constants. No label ever holds a client
address, a query name that is not a registered service, or a request path.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import time
import weakref
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .logs import client_log
from .table import RoutingTable

log = logging.getLogger("httpdns.metrics")

SAMPLE = 64  # one request in SAMPLE is timed
BUCKETS = (2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 0.01, 0.05, 0.25)
WRITE_EVERY = 1.0  # seconds between two writes of a worker's totals
# What generate_latest writes (names are plain ASCII, so 0.0.4 and 1.0.0 read the same);
# the 0.0.4 type is the one every Prometheus 2.x scraper knows.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RENDER_TTL = 0.5  # seconds a rendered /metrics body is reused (bounds the cost of scrapes)

DIALECTS = ("dnspod", "aliyun", "google", "doh", "dns")
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
STATUSES = ("ok", "degraded", "unavailable")

Answer = tuple[str, str, str, str]  # service, dc, version, cohort
Labels = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Spec:
    """One exported metric: its type, help, label names and how workers combine."""

    kind: str  # counter | gauge | histogram
    help: str
    labels: tuple[str, ...] = ()
    merge: str = "sum"  # gauges: sum | min | max


SPECS: dict[str, Spec] = {
    "httpdns_queries_total": Spec(
        "counter",
        "Queries answered, by dialect and response code (DNS rcode; http_NNN for HTTP errors).",
        ("dialect", "rcode"),
    ),
    "httpdns_query_seconds": Spec(
        "histogram",
        f"Time to answer a query, by dialect: SAMPLED, one request in {SAMPLE} is timed "
        "(fast path and aiohttp path alike); _count is the number of samples, not of queries.",
        ("dialect",),
    ),
    "httpdns_front_cache_hits_total": Spec(
        "counter", "Queries answered from a front cache (kept encoded replies).", ("dialect",)
    ),
    "httpdns_front_cache_misses_total": Spec(
        "counter", "Queries whose answer was computed (not from a front cache).", ("dialect",)
    ),
    "httpdns_answers_total": Spec(
        "counter",
        "Names answered, by service, datacenter, version and cohort (one per name and address "
        "family in a reply): what clients were actually told.",
        ("service", "dc", "version", "cohort"),
    ),
    "httpdns_registry_revision": Spec(
        "gauge", "Registry revision the answers reflect (lowest worker).", merge="min"
    ),
    "httpdns_registry_stale_seconds": Spec(
        "gauge", "Seconds since the store stopped answering (0 when reachable).", merge="max"
    ),
    "httpdns_node_status": Spec(
        "gauge", "1 for the node's health status (workers in that status).", ("status",)
    ),
    "httpdns_store_errors_total": Spec("counter", "Store operations that failed."),
    "httpdns_follow_resyncs_total": Spec(
        "counter", "Snapshots reloaded because the change feed skipped a revision."
    ),
    "httpdns_connections_open": Spec("gauge", "HTTP connections open (handed-off included)."),
    "httpdns_connections_shed_total": Spec(
        "counter", "HTTP connections closed or refused at --max-connections."
    ),
    "httpdns_http_timeouts_total": Spec(
        "counter", "HTTP connections closed by the header or keep-alive timeout."
    ),
    "httpdns_dns_rrl_limited_total": Spec(
        "counter", "DNS responses dropped or truncated by response rate limiting."
    ),
    "httpdns_rollouts": Spec(
        "gauge", "Rollout records in the registry, by phase (the deployer's).", ("phase",), "max"
    ),
    "httpdns_release_canary_percent": Spec(
        "gauge",
        "Configured canary percentage of services with a canary version.",
        ("service",),
        "max",
    ),
    "httpdns_client_errors_total": Spec(
        "counter",
        "Client errors by kind (http_framing, header_timeout, dns_formerr, dns_rrl, ...).",
        ("kind",),
    ),
}


class Tally:
    """A counter cell shared by every kept reply with the same labels (``QueryStats.tally``).

    ``n`` counts cache hits; when the last kept reply holding it goes, the count is
    folded into the totals, so nothing is lost to eviction.
    """

    __slots__ = ("__weakref__", "answers", "dialect", "hit", "n", "rcode", "stats")

    def __init__(
        self,
        stats: QueryStats,
        dialect: str,
        rcode: str,
        answers: tuple[Answer, ...],
        hit: bool = True,
    ):
        self.n = 0
        self.stats = stats
        self.dialect = dialect
        self.rcode = rcode
        self.answers = answers
        self.hit = hit  # counts front-cache hits, else misses (``QueryStats.miss_cell``)

    def __del__(self) -> None:
        if self.n:
            self.stats.add(self.dialect, self.rcode, self.answers, self.n, hit=self.hit)


class QueryStats:
    """Query counters of one process: plain integers, rendered at scrape time."""

    def __init__(self) -> None:
        self.queries: dict[tuple[str, str], int] = {}
        self.answers: dict[Answer, int] = {}
        self.hits: dict[str, int] = {}
        self.misses: dict[str, int] = {}
        # dialect -> per-bucket counts (not cumulative; the last one is +Inf), then the sum
        self.latency: dict[str, list[float]] = {}
        self._cells: weakref.WeakValueDictionary[tuple[str, str, tuple[Answer, ...]], Tally] = (
            weakref.WeakValueDictionary()
        )
        self._miss_cells: weakref.WeakValueDictionary[
            tuple[str, str, tuple[Answer, ...]], Tally
        ] = weakref.WeakValueDictionary()

    def tally(self, dialect: str, rcode: str, answers: tuple[Answer, ...]) -> Tally:
        """The shared cell for these labels (a kept reply holds it; a hit increments it)."""
        key = (dialect, rcode, answers)
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = Tally(self, dialect, rcode, answers)
        return cell

    def miss_cell(self, dialect: str, rcode: str, answers: tuple[Answer, ...]) -> Tally:
        """The shared cell of computed answers with these labels that a miss lane answers
        again and again from one encoded reply: ``n += 1`` is ``count`` of one."""
        key = (dialect, rcode, answers)
        cell = self._miss_cells.get(key)
        if cell is None:
            cell = self._miss_cells[key] = Tally(self, dialect, rcode, answers, hit=False)
        return cell

    def count(self, dialect: str, rcode: str, answers: Iterable[Answer] = ()) -> None:
        """One query answered without a front cache."""
        self.add(dialect, rcode, answers, 1, hit=False)

    def add(
        self, dialect: str, rcode: str, answers: Iterable[Answer], n: int, *, hit: bool
    ) -> None:
        """Add ``n`` queries with these labels to the totals."""
        q = (dialect, rcode)
        self.queries[q] = self.queries.get(q, 0) + n
        for a in answers:
            self.answers[a] = self.answers.get(a, 0) + n
        side = self.hits if hit else self.misses
        side[dialect] = side.get(dialect, 0) + n

    def observe(self, dialect: str, seconds: float) -> None:
        """One sampled latency."""
        row = self.latency.get(dialect)
        if row is None:
            row = self.latency[dialect] = [0.0] * (len(BUCKETS) + 2)
        row[bisect.bisect_left(BUCKETS, seconds)] += 1
        row[-1] += seconds

    def live(self) -> list[Tally]:
        """The cells still held by kept replies (hits) and miss lanes (misses)."""
        return [*self._cells.values(), *self._miss_cells.values()]


def rcode_of(dialect: str, status: int, body: bytes, unanswered: int) -> str:
    """The ``rcode`` label of an HTTP reply: DNS rcode for DoH and the JSON API, NOERROR /
    NXDOMAIN (a name not served) for the text and Aliyun dialects, ``http_NNN`` for errors."""
    if status != 200:
        return f"http_{status}"
    if dialect == "doh":
        return RCODES.get(body[3] & 0xF, "other") if len(body) >= 4 else "other"
    if dialect == "google":
        i = body.find(b'"Status":')
        if i >= 0:
            j = i + 9
            while j < len(body) and body[j : j + 1].isdigit():
                j += 1
            return RCODES.get(int(body[i + 9 : j] or b"0"), "other")
    return "NXDOMAIN" if unanswered else "NOERROR"


class Recorder:
    """The routing table as the dialects see it: every decision is also noted in
    ``answers`` (and names not served in ``unanswered``) for ``httpdns_answers_total``.

    Used only on the miss path; the front ends' cache checks use the table itself.
    Dialects are synchronous, so one recorder per front end is enough: reset, call, read.
    """

    def __init__(self, table: RoutingTable) -> None:
        self.table = table
        self.answers: list[Answer] = []
        self.unanswered = 0

    def reset(self) -> None:
        """Forget the previous query's decisions."""
        self.answers = []
        self.unanswered = 0

    def resolve(self, name: str, qtype: int, client: Any, deps: Any = None) -> Any:
        """``RoutingTable.resolve``, noting the decision."""
        choice = self.table.resolve(name, qtype, client, deps)
        if choice is None:
            self.unanswered += 1
        else:
            self.answers.append(
                (name, choice.dc or "none", choice.version or "none", choice.cohort)
            )
        return choice

    def __getattr__(self, name: str) -> Any:
        return getattr(self.table, name)


# -- totals: what a scrape exports, as plain data ------------------------------------


@dataclass
class Totals:
    """Every exported value: ``values[metric][labels]`` (a number, or for histograms the
    per-bucket counts followed by the sum)."""

    values: dict[str, dict[Labels, Any]] = field(default_factory=dict)

    def put(self, metric: str, labels: Labels, value: Any) -> None:
        """Set one value."""
        self.values.setdefault(metric, {})[labels] = value

    def merge(self, other: Totals) -> None:
        """Combine another worker's totals into these (``Spec.merge``)."""
        for metric, rows in other.values.items():
            spec = SPECS.get(metric)
            if spec is None:
                continue
            mine = self.values.setdefault(metric, {})
            for labels, value in rows.items():
                old = mine.get(labels)
                if old is None:
                    mine[labels] = list(value) if isinstance(value, list) else value
                elif spec.kind == "histogram":
                    mine[labels] = [a + b for a, b in zip(old, value, strict=True)]
                elif spec.merge == "min":
                    mine[labels] = min(old, value)
                elif spec.merge == "max":
                    mine[labels] = max(old, value)
                else:
                    mine[labels] = old + value

    def dumps(self) -> bytes:
        """JSON for a worker file."""
        return orjson.dumps(
            {m: [[list(k), v] for k, v in rows.items()] for m, rows in self.values.items()}
        )

    @classmethod
    def loads(cls, raw: bytes) -> Totals:
        """From ``dumps``."""
        data = orjson.loads(raw)
        return cls({m: {tuple(k): v for k, v in rows} for m, rows in data.items()})


class NodeMetrics:
    """Everything one process exports: its query counters and what it reads at scrape time
    (the node's health, the HTTP and DNS front ends' limits, the client error counts)."""

    def __init__(self, stats: QueryStats | None = None) -> None:
        self.stats = stats or QueryStats()
        self.health: Callable[[], Mapping[str, Any]] | None = None
        self.node: Any = None  # httpdns.node.Node: store errors, resyncs
        self.fast: Any = None  # httpdns.fasthttp.FastServer: connections, timeouts
        self.dns: Any = None  # httpdns.dnsserver.DnsEngine: RRL
        self.base = Totals()  # carried over from a previous run of this worker
        self.workers: WorkerFiles | None = None
        self.history = AnswerHistory()
        self._published: tuple[float, dict[str, Any]] | None = None

    def answers(self) -> dict[Answer, int]:
        """This process's ``answers_total`` now, by (service, dc, version, cohort).

        Read from the counters alone (no ``totals``: heartbeats ask every second, and the
        totals read the node's health too)."""
        stats = self.stats
        out = dict(stats.answers)
        for cell in stats.live():
            n = cell.n
            if n:
                for a in cell.answers:
                    out[a] = out.get(a, 0) + n
        for k, v in self.base.values.get("httpdns_answers_total", {}).items():
            a = (k[0], k[1], k[2], k[3])
            out[a] = out.get(a, 0) + int(v)
        return out

    def published_answers(self) -> dict[str, Any]:
        """What this process publishes with its heartbeat (``AnswerHistory.windows``),
        computed at most once per ``PUBLISH_EVERY`` (heartbeats follow every revision)."""
        now = time.monotonic()
        if self._published is None or now - self._published[0] >= PUBLISH_EVERY:
            answers = self.answers()
            self.history.record(answers)
            self._published = (now, self.history.windows(answers))
        return self._published[1]

    def totals(self) -> Totals:
        """This process's values now."""
        t = Totals()
        stats = self.stats
        queries, answers = dict(stats.queries), dict(stats.answers)
        hits, misses = dict(stats.hits), dict(stats.misses)
        for cell in stats.live():
            n = cell.n
            if not n:
                continue
            q = (cell.dialect, cell.rcode)
            queries[q] = queries.get(q, 0) + n
            for a in cell.answers:
                answers[a] = answers.get(a, 0) + n
            side = hits if cell.hit else misses
            side[cell.dialect] = side.get(cell.dialect, 0) + n
        for q, n in queries.items():
            t.put("httpdns_queries_total", q, n)
        for a, n in answers.items():
            t.put("httpdns_answers_total", a, n)
        for d, n in hits.items():
            t.put("httpdns_front_cache_hits_total", (d,), n)
        for d, n in misses.items():
            t.put("httpdns_front_cache_misses_total", (d,), n)
        for d, row in stats.latency.items():
            t.put("httpdns_query_seconds", (d,), list(row))
        for kind, n in client_log.counts.items():
            t.put("httpdns_client_errors_total", (kind,), n)
        if self.health is not None:
            h = self.health()
            t.put("httpdns_registry_revision", (), h.get("revision", 0))
            t.put("httpdns_registry_stale_seconds", (), h.get("stale_seconds", 0.0))
            status = str(h.get("status", "ok"))
            for s in STATUSES:
                t.put("httpdns_node_status", (s,), 1 if s == status else 0)
        if self.node is not None:
            snap = self.node.table.snapshot
            phases: dict[str, int] = {}
            for r in snap.rollouts.values():
                phases[r.phase] = phases.get(r.phase, 0) + 1
            for phase, n in phases.items():
                t.put("httpdns_rollouts", (phase,), n)
            for name, rel in snap.releases.items():
                if rel.canary and rel.canary != rel.stable:
                    t.put("httpdns_release_canary_percent", (name,), rel.canary_percent)
            t.put("httpdns_store_errors_total", (), getattr(self.node, "store_errors", 0))
            t.put("httpdns_follow_resyncs_total", (), getattr(self.node, "resyncs", 0))
        if self.fast is not None:
            t.put("httpdns_connections_open", (), self.fast.open_connections())
            t.put("httpdns_connections_shed_total", (), self.fast.shed)
            t.put("httpdns_http_timeouts_total", (), self.fast.timeouts)
        if self.dns is not None:
            t.put("httpdns_dns_rrl_limited_total", (), self.dns.limited)
        if self.base.values:
            t.merge(_counters_only(self.base))
        return t

    def node_totals(self) -> Totals:
        """The whole node's values: this process's plus every other worker's last write."""
        mine = self.totals()
        if self.workers is None:
            return mine
        for other in self.workers.others():
            mine.merge(other)
        return mine


def _counters_only(t: Totals) -> Totals:
    """A previous run's counters and histograms (its gauges are not current)."""
    return Totals({m: rows for m, rows in t.values.items() if SPECS[m].kind != "gauge"})


class TotalsCollector(Collector):
    """Renders a node's ``Totals`` as prometheus-client metric families."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        """The families, one per ``SPECS`` entry (empty ones included: the names exist)."""
        totals = self.metrics.node_totals()
        for name, spec in SPECS.items():
            rows = totals.values.get(name, {})
            if spec.kind == "counter":
                c = CounterMetricFamily(name, spec.help, labels=spec.labels)
                for labels, value in sorted(rows.items()):
                    c.add_metric(list(labels), value)
                yield c
            elif spec.kind == "gauge":
                g = GaugeMetricFamily(name, spec.help, labels=spec.labels)
                for labels, value in sorted(rows.items()):
                    g.add_metric(list(labels), value)
                yield g
            else:
                h = HistogramMetricFamily(name, spec.help, labels=spec.labels)
                for labels, row in sorted(rows.items()):
                    cumulative, buckets = 0.0, []
                    for le, n in zip((*map(repr, BUCKETS), "+Inf"), row[:-1], strict=True):
                        cumulative += n
                        buckets.append((le, cumulative))
                    h.add_metric(list(labels), buckets, row[-1])
                yield h


class Exposition:
    """The ``/metrics`` body of a node, rendered by prometheus-client, reused for
    ``RENDER_TTL`` seconds so that frequent scrapes cost little."""

    def __init__(self, metrics: NodeMetrics, clock: Callable[[], float] = time.monotonic):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(TotalsCollector(metrics))
        self.clock = clock
        self._body = b""
        self._at = -RENDER_TTL

    def render(self) -> bytes:
        """The exposition text (version 0.0.4)."""
        now = self.clock()
        if now - self._at >= RENDER_TTL:
            self._body = generate_latest(self.registry)
            self._at = now
        return self._body


# -- answer history, for the fleet's shares --------------------------------------------------

WINDOWS = (10, 60, 300)  # seconds: the windows a node publishes its answer increments over
KEEP_EVERY = 5.0  # seconds between two kept readings
PUBLISH_EVERY = (
    5.0  # seconds a published set of windows is reused (KEEP_EVERY: readings move no faster)
)


class AnswerHistory:
    """This process's ``answers_total`` over the last ``max(WINDOWS)`` seconds, so that a node
    can publish (with its heartbeat) what it answered in each of ``WINDOWS``.

    A reading is an array of counts, one slot per (service, dc, version, cohort) ever seen:
    8 bytes an answer (a dict per reading held ~70; 62 readings of 20,000 answers were
    ~90 MB)."""

    def __init__(
        self, initial: Mapping[Answer, int] | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.clock = clock
        self._slots: dict[Answer, int] = {}
        self._keys: list[Answer] = []
        # the counters when the history began (zero at process start): a first window
        # counts from there
        self._readings: list[tuple[float, array[int]]] = [(clock(), self._array(initial or {}))]

    def _array(self, answers: Mapping[Answer, int]) -> array[int]:
        """``answers`` as counts by slot (new answers get the next slots)."""
        slots, keys = self._slots, self._keys
        for key in answers:
            if key not in slots:
                slots[key] = len(keys)
                keys.append(key)
        out = array("q", bytes(8 * len(keys)))
        for key, n in answers.items():
            out[slots[key]] = n
        return out

    def record(self, answers: Mapping[Answer, int]) -> None:
        """Keep a reading of the counters (at most one per ``KEEP_EVERY``; old ones drop)."""
        now = self.clock()
        if self._readings and now - self._readings[-1][0] < KEEP_EVERY:
            return
        self._readings.append((now, self._array(answers)))
        horizon = now - max(WINDOWS) - 2 * KEEP_EVERY
        while len(self._readings) > 2 and self._readings[1][0] <= horizon:
            self._readings.pop(0)

    def windows(self, answers: Mapping[Answer, int]) -> dict[str, Any]:
        """For each window: the reading closest to its start and the non-zero increments
        since (``[service, dc, version, cohort, n]`` rows), against ``answers`` (now)."""
        now = self.clock()
        current = self._array(answers)
        keys = self._keys
        out: dict[str, Any] = {"at": round(now, 3), "windows": {}}
        for w in WINDOWS:
            then = self._reading_at(now - w)
            base = then[1] if then is not None else array("q")
            known = len(base)
            rows = []
            for i, n in enumerate(current):
                d = n - base[i] if i < known else n
                if d < 0:  # a restarted process: its counters began again
                    d = n
                if d:
                    rows.append([*keys[i], d])
            since = then[0] if then is not None else None
            out["windows"][str(w)] = {
                "seconds": round(now - since, 3) if since is not None else None,
                "rows": rows,
            }
        return out

    def _reading_at(self, t: float) -> tuple[float, array[int]] | None:
        best = None
        for reading in self._readings:
            if reading[0] <= t + KEEP_EVERY / 2:
                best = reading
        return best if best is not None else (self._readings[0] if self._readings else None)


# -- workers -----------------------------------------------------------------------------


class WorkerFiles:
    """Per-node directory of worker totals (``--workers``): each worker writes
    ``worker-ID.json`` every ``WRITE_EVERY`` seconds; the scraped one reads the others."""

    def __init__(self, directory: str | os.PathLike[str], worker: int) -> None:
        self.dir = Path(directory)
        self.worker = worker
        self.path = self.dir / f"worker-{worker}.json"

    def previous(self) -> Totals:
        """What this worker exported before it was restarted (counters carry on)."""
        try:
            return Totals.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return Totals()

    def write(self, totals: Totals) -> None:
        """Replace this worker's file atomically."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(totals.dumps())
        tmp.replace(self.path)

    def others(self) -> list[Totals]:
        """The other workers' last writes."""
        out = []
        for p in sorted(self.dir.glob("worker-*.json")):
            if p == self.path:
                continue
            with contextlib.suppress(OSError, ValueError):
                out.append(Totals.loads(p.read_bytes()))
        return out


async def publish(metrics: NodeMetrics, stop: asyncio.Event) -> None:
    """Write this worker's totals every ``WRITE_EVERY`` seconds until ``stop`` is set."""
    files = metrics.workers
    assert files is not None
    while not stop.is_set():
        try:
            files.write(metrics.totals())
        except OSError as exc:  # a full disk must not stop the worker answering
            client_log.note("metrics_write", str(exc), logging.WARNING)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), WRITE_EVERY)
    with contextlib.suppress(OSError):
        files.write(metrics.totals())


async def keep_history(metrics: NodeMetrics, stop: asyncio.Event) -> None:
    """Take a reading of this process's answers every ``KEEP_EVERY`` seconds (the windows
    published with heartbeats start from these) until ``stop`` is set."""
    while not stop.is_set():
        metrics.history.record(metrics.answers())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), KEEP_EVERY)
