"""Integration tests of the Redis backend: real redis-server / redis-sentinel processes and
``httpdns serve`` nodes as subprocesses, all on free loopback ports (never 6379).

``cluster`` starts servers and nodes on demand and stops every one of them at teardown,
even when the test fails. The helpers below talk to nodes over plain HTTP (urllib).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from registry.changes import Change, ChangeSet
from registry.digest import MODULUS, Digest, record_hash
from registry.model import Endpoint
from registry.redis import KEY_CHANGES, KEY_DIGEST, KEY_RECORDS, KEY_REVISION, SEP
from tests.servers import Node, RedisServer, Sentinel, httpdns_command, need, wait_until

TOKEN = "T"
PREFIX = "httpdns:"
WEB = "web.example.org"  # the service the query load asks for; never changed by the tests
OTHER = "other.example.org"  # the service the tests write to
WEB_ADDRESSES = frozenset({"192.0.2.1", "192.0.2.2", "192.0.2.3"})
OTHER_FIRST = "198.51.100.1"
BURST = "burst.example.org"  # a service a test may create and fill with a stream of writes
DEFAULT_IDC = {"default": {"idc": 100}}
AOF = ("--appendonly", "yes", "--appendfsync", "always")  # data survives a SIGKILL
SNAPSHOT = Path("httpdns-data") / "node-snapshot.json"  # a Redis node's default snapshot file


# -- HTTP ------------------------------------------------------------------------------------


def call(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    if_match: int | None = None,
    actor: str = "it",
    timeout: float = 30.0,
) -> tuple[int, Any]:
    """One request (admin token T, ``X-Actor``): ``(status, decoded JSON or text)``."""
    data = None if body is None else json.dumps(body).encode()
    hdrs = {"Authorization": f"Bearer {TOKEN}", "X-Actor": actor, **(headers or {})}
    if if_match is not None:
        hdrs["If-Match"] = str(if_match)
    if data is not None:
        hdrs["Content-Type"] = "application/json"
    req = urllib.request.Request(base + path, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
        exc.close()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def health(node: Node) -> dict[str, Any]:
    """The node's ``/healthz`` body, or {} when it does not answer."""
    try:
        status, body = call(node.url, "GET", "/healthz", timeout=2)
    except OSError:
        return {}
    return body if status == 200 and isinstance(body, dict) else {}


def answer_d(node: Node, name: str) -> frozenset[str]:
    """The addresses of a ``/d`` answer (raises on an HTTP error)."""
    with urllib.request.urlopen(f"{node.url}/d?dn={name}", timeout=5) as resp:
        text = resp.read().decode()
    return frozenset(a for a in text.split(";") if a)


def answer_resolve(node: Node, name: str) -> frozenset[str]:
    """The A addresses of a JSON ``/resolve`` answer (raises on an HTTP error)."""
    with urllib.request.urlopen(f"{node.url}/resolve?name={name}&type=A", timeout=5) as resp:
        body = json.loads(resp.read())
    return frozenset(a["data"] for a in body.get("Answer", []))


def put_endpoint(
    node: Node,
    service: str,
    eid: str,
    address: str,
    *,
    if_match: int | None = None,
    actor: str = "it",
    timeout: float = 30.0,
) -> tuple[int, Any]:
    return call(
        node.url,
        "PUT",
        f"/api/v1/services/{service}/endpoints/{eid}",
        {"dc": "idc", "address": address, "port": 443},
        if_match=if_match,
        actor=actor,
        timeout=timeout,
    )


def build_registry(node: Node) -> int:
    """A small registry written through ``node``'s admin API; returns its revision.

    ``web`` answers all three of its addresses; ``other`` starts with one endpoint.
    """
    writes: list[tuple[str, dict[str, Any]]] = [
        ("/datacenters/idc", {"kind": "idc"}),
        (f"/services/{WEB}", {"traffic": {"default": {"idc": 100}}, "answers": 8}),
        (f"/services/{OTHER}", {"traffic": {"default": {"idc": 100}}, "answers": 64}),
    ]
    for i, addr in enumerate(sorted(WEB_ADDRESSES)):
        writes.append((f"/services/{WEB}/endpoints/w{i}", {"dc": "idc", "address": addr}))
    writes.append((f"/services/{OTHER}/endpoints/first", {"dc": "idc", "address": OTHER_FIRST}))
    revision = 0
    for path, body in writes:
        status, data = call(node.url, "PUT", "/api/v1" + path, body)
        assert status in (200, 201), (path, status, data)
        revision = int(data["revision"])
    return revision


def wait_nodes(
    nodes: Sequence[Node],
    predicate: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = 20.0,
) -> list[dict[str, Any]]:
    """Poll every node's ``/healthz`` until ``predicate`` holds for all; their bodies."""
    last: list[dict[str, Any]] = []

    def check() -> bool:
        last[:] = [health(n) for n in nodes]
        return all(h and predicate(h) for h in last)

    try:
        wait_until(check, timeout, what)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; last /healthz: {last}") from None
    return last


def wait_revision(
    nodes: Sequence[Node], revision: int, timeout: float = 20.0
) -> list[dict[str, Any]]:
    return wait_nodes(nodes, lambda h: h["revision"] >= revision, f"revision {revision}", timeout)


def wait_store(nodes: Sequence[Node], store: str, timeout: float = 20.0) -> list[dict[str, Any]]:
    return wait_nodes(nodes, lambda h: h["store"] == store, f"store: {store}", timeout)


def node_log(node: Node) -> str:
    return node.log.read_text(errors="replace") if node.log.exists() else ""


# -- Redis -------------------------------------------------------------------------------------


def redis_client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=1)


def redis_revision(port: int) -> int | None:
    """``httpdns:revision`` on the Redis at ``port`` (0 when unset), None if unreachable."""
    try:
        with redis_client(port) as r:
            return int(r.get(PREFIX + KEY_REVISION) or 0)
    except redis.RedisError:
        return None


def commit_silently(port: int, endpoint: Endpoint) -> int:
    """Commit a put of ``endpoint`` as the store's Lua script does (revision, records, digest,
    stream), but without publishing it: the change is in Redis and no node is told."""
    with redis_client(port) as r:
        revision = int(r.get(PREFIX + KEY_REVISION) or 0) + 1
        cs = ChangeSet(revision, (Change.put(endpoint),), "silent", time.time())
        field = f"endpoint{SEP}{endpoint.key}"
        value = orjson.dumps(endpoint.to_dict())
        old = Digest.decode(r.get(PREFIX + KEY_DIGEST))
        previous = r.hget(PREFIX + KEY_RECORDS, field)
        count, total = old.count + 1, old.sum + record_hash(field.encode(), value)
        if previous is not None:
            count, total = count - 1, total - record_hash(field.encode(), previous)
        digest = Digest(revision, count, total % MODULUS)
        with r.pipeline(transaction=True) as pipe:
            pipe.hset(PREFIX + KEY_RECORDS, field, value)
            pipe.set(PREFIX + KEY_REVISION, revision)
            pipe.set(PREFIX + KEY_DIGEST, digest.encode())
            pipe.xadd(PREFIX + KEY_CHANGES, {"cs": orjson.dumps(cs.to_dict())}, id=f"{revision}-1")
            pipe.execute()
    return revision


def restore_from(node: Node) -> subprocess.CompletedProcess[str]:
    """``httpdns --token T registry restore --from-node URL`` (the CLI, as an operator runs it)."""
    return subprocess.run(
        [*httpdns_command(), "--token", TOKEN, "registry", "restore", "--from-node", node.url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


# -- continuous queries ------------------------------------------------------------------------


class QueryLoad:
    """A thread that keeps asking every node for ``WEB`` (``/d`` and ``/resolve``) and records
    every failure: an HTTP error, a timeout, an empty or different answer."""

    def __init__(self, nodes: Sequence[Node], expected: frozenset[str] = WEB_ADDRESSES) -> None:
        self.nodes = list(nodes)
        self.expected = expected
        self.failures: list[str] = []
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="query-load", daemon=True)

    def __enter__(self) -> QueryLoad:
        self._thread.start()
        wait_until(lambda: self.queries >= 2 * len(self.nodes), 10, "the query load to run")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        while not self._stop.is_set():
            for node in self.nodes:
                for kind, ask in (("/d", answer_d), ("/resolve", answer_resolve)):
                    try:
                        got = ask(node, WEB)
                    except Exception as exc:  # any failure counts
                        got = None
                        self.failures.append(f"{node.url}{kind}: {exc!r}")
                    if got is not None and got != self.expected:
                        self.failures.append(f"{node.url}{kind}: answered {sorted(got)}")
                    self.queries += 1
            self._stop.wait(0.005)  # pacing, so the nodes are not starved of CPU

    def assert_clean(self, at_least: int = 1) -> None:
        assert self.failures == [], f"{len(self.failures)} failed queries: {self.failures[:10]}"
        assert self.queries >= at_least, f"only {self.queries} queries ran"


class Writer:
    """A thread that keeps putting new endpoints of ``service`` through the nodes in turn,
    one at a time, until stopped or until a write is refused."""

    def __init__(self, nodes: Sequence[Node], service: str) -> None:
        self.nodes = list(nodes)
        self.service = service
        self.acknowledged: dict[str, int] = {}  # endpoint id -> revision of its 201
        self.refused: list[tuple[str, int, Any]] = []  # (endpoint id, status, body)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        wait_until(lambda: len(self.acknowledged) >= 3 or self.refused, 10, "the writer to run")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self.join()

    def join(self, timeout: float = 45.0) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "a write hung"

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            node = self.nodes[i % len(self.nodes)]
            eid = f"b{i}"
            address = f"10.77.{i // 250}.{i % 250 + 1}"
            try:
                status, body = put_endpoint(node, self.service, eid, address, timeout=30)
            except Exception as exc:  # a hang or a dropped connection is a failure too
                self.refused.append((eid, 0, repr(exc)))
                return
            if status == 201:
                self.acknowledged[eid] = int(body["revision"])
            else:
                self.refused.append((eid, status, body))
                return
            i += 1


# -- processes -------------------------------------------------------------------------------


class Cluster:
    """Redis servers, sentinels and nodes started for one test; ``close`` stops them all."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.redises: list[RedisServer] = []
        self.sentinels: list[Sentinel] = []
        self.nodes: list[Node] = []

    def redis(
        self, name: str, *, port: int | None = None, args: tuple[str, ...] = ()
    ) -> RedisServer:
        server = RedisServer(self.tmp / name, port=port, args=args)
        self.redises.append(server)
        return server.start()

    def sentinel(self, master_port: int) -> Sentinel:
        workdir = self.tmp / "sentinels"
        workdir.mkdir(parents=True, exist_ok=True)
        s = Sentinel(workdir, master_port)
        self.sentinels.append(s)
        return s.start()

    def node(
        self, store: str, name: str, *, snapshot_from: Path | None = None, wait: bool = True
    ) -> Node:
        """A node in its own workdir (so its snapshot file is its own), optionally seeded with
        a copy of a snapshot file."""
        workdir = self.tmp / name
        if snapshot_from is not None:
            (workdir / SNAPSHOT).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(snapshot_from, workdir / SNAPSHOT)
        node = Node(store, workdir)
        self.nodes.append(node)
        return node.start(wait=wait)

    def start_nodes(self, store: str, count: int, prefix: str = "node") -> list[Node]:
        """``count`` nodes started in parallel."""
        nodes = [self.node(store, f"{prefix}{i}", wait=False) for i in range(count)]
        for n in nodes:
            wait_until(n.healthy, 30, f"node {n.url} ({n.log})")
        return nodes

    def close(self) -> None:
        """Stop everything (nodes first), even when one of them fails to stop."""
        errors: list[BaseException] = []
        for proc in [*self.nodes, *self.sentinels, *self.redises]:
            try:
                proc.stop()
            except Exception as exc:
                errors.append(exc)
                if proc.proc is not None:
                    proc.proc.kill()
                    proc.proc.wait(10)
        if errors:
            raise errors[0]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    need("redis-server")
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()
