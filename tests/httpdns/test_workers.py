"""``httpdns serve --workers N``: a supervisor and N worker processes sharing the HTTP and DNS
ports with SO_REUSEPORT, each following the store's change feed (SQLite file).

Which worker answered a connection is read from /proc: the server side of the connection is
a socket inode in /proc/net/tcp, and exactly one worker holds a descriptor for it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from httpdns.serve import STARTUP_GRACE  # a worker death before this is a start-up failure
from tests.servers import (
    Node,
    admin_call,
    free_udp_tcp_port,
    httpdns_command,
    seed_test_registry,
    wait_until,
)

from .conftest import SHOP, clean_env

WORKERS = 2


@dataclass
class Cluster:
    node: Node
    dns_port: int
    started: float

    @property
    def pid(self) -> int:
        assert self.node.proc is not None
        return self.node.proc.pid

    @property
    def port(self) -> int:
        return self.node.port


def start_cluster(tmp: Path) -> Cluster:
    dns_port = free_udp_tcp_port()
    node = Node(
        f"sqlite:///{tmp}/registry.db",
        tmp,
        args=("--workers", str(WORKERS), "--dns", f"127.0.0.1:{dns_port}", "--zone", "example.org"),
    )
    node.start()
    # healthy means a worker serves, so the supervisor's own start-up clock began before this
    cluster = Cluster(node, dns_port, time.monotonic())
    try:
        wait_until(lambda: len(listeners(cluster.port)) == WORKERS, 20, "both workers listening")
        assert len(children(cluster.pid)) == WORKERS
    except BaseException:
        node.stop()
        raise
    return cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = start_cluster(tmp_path_factory.mktemp("workers"))
    try:
        seed_test_registry(c.node.url)
        yield c
    finally:
        c.node.stop()


# -- /proc -----------------------------------------------------------------------------------


def children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return {int(p) for p in out.stdout.split()}


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _tcp_table(port: int) -> list[tuple[int, int, str, int]]:
    """(local port, remote port, state, inode) of the IPv4 TCP sockets with local ``port``."""
    rows = []
    needle = f":{port:04X} "
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        if needle not in line:
            continue
        f = line.split()
        lp, rp = int(f[1].split(":")[1], 16), int(f[2].split(":")[1], 16)
        if lp == port:
            rows.append((lp, rp, f[3], int(f[9])))
    return rows


def listeners(port: int) -> list[int]:
    """Inodes of the sockets listening on ``port`` (one per worker with SO_REUSEPORT)."""
    return [inode for _, _, st, inode in _tcp_table(port) if st == "0A"]


def owner(inode: int, pids: set[int]) -> int | None:
    needle = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == needle:
                    return pid
            except OSError:
                continue
    return None


def ask(cluster: Cluster, path: str, kids: set[int] | None = None) -> tuple[int | None, int, bytes]:
    """GET ``path`` on a fresh connection: (pid of the worker that answered, status, body)."""
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            assert chunk, buf
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        size = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < size:
            body += s.recv(65536)
        status = int(head.split(b" ", 2)[1])
        # the connection is still open: find who holds its server side
        mine = s.getsockname()[1]
        inode = next((i for _, rp, _, i in _tcp_table(cluster.port) if rp == mine), None)
        pid = owner(inode, kids if kids is not None else children(cluster.pid)) if inode else None
        return pid, status, body


def dns_a(cluster: Cluster, name: str) -> tuple[int, list[str]]:
    """An A query over UDP from a fresh socket (so a fresh source port)."""
    r = dns.query.udp(
        dns.message.make_query(name, "A"), "127.0.0.1", port=cluster.dns_port, timeout=3
    )
    return r.rcode(), [rd.address for rrset in r.answer for rd in rrset]


# -- tests -----------------------------------------------------------------------------------


def test_both_workers_listen_and_answer(cluster: Cluster) -> None:
    kids = children(cluster.pid)
    assert len(kids) == WORKERS
    assert len(listeners(cluster.port)) == WORKERS
    assert {owner(i, kids) for i in listeners(cluster.port)} == kids  # one listener each
    seen: set[int] = set()
    d_bodies = set()

    def spread() -> bool:
        pid, status, body = ask(cluster, f"/d?dn={SHOP}")
        assert status == 200 and body
        d_bodies.add(body)
        if pid is not None:
            seen.add(pid)
        return seen == kids

    wait_until(spread, 15, "answers from every worker")
    assert len(d_bodies) == 1  # every worker gives the same answer
    log = Path(cluster.node.log).read_text()
    for i in range(WORKERS):
        assert f"w{i} httpdns INFO serving http://127.0.0.1:{cluster.port}" in log
        assert f"w{i} httpdns INFO serving DNS on udp+tcp 127.0.0.1:{cluster.dns_port}" in log


def test_an_admin_write_reaches_every_worker(cluster: Cluster) -> None:
    name = "fresh.example.org"
    api = f"/api/v1/services/{name}"
    body = {"access": "ro", "ttl": 7, "traffic": {"default": {"idc": 100}}}
    assert admin_call(cluster.node.url, "PUT", api, body)[0] == 201
    ep = {"dc": "idc", "address": "192.0.2.123", "port": 443}
    status, data = admin_call(cluster.node.url, "PUT", f"{api}/endpoints/e", ep)
    assert status == 201
    revision = int(data["revision"])  # type: ignore[index]
    kids = children(cluster.pid)

    def everyone_sees_it() -> bool:
        answers = [ask(cluster, f"/d?dn={name}&ttl=1", kids) for _ in range(50)]
        queries = [dns_a(cluster, name) for _ in range(50)]
        ok_http = all(s == 200 and b == b"192.0.2.123,7" for _, s, b in answers)
        ok_dns = all(q == (dns.rcode.NOERROR, ["192.0.2.123"]) for q in queries)
        return ok_http and ok_dns and {p for p, _, _ in answers} == kids

    wait_until(everyone_sees_it, 15, "the write on every worker")
    for _ in range(20):
        _, status, health = ask(cluster, "/healthz", kids)
        assert status == 200 and f'"revision":{revision}'.encode() in health
    assert admin_call(cluster.node.url, "DELETE", api)[0] == 200

    def everyone_forgets_it() -> bool:
        return all(ask(cluster, f"/d?dn={name}", kids)[2] == b"" for _ in range(30)) and all(
            dns_a(cluster, name)[0] == dns.rcode.NXDOMAIN for _ in range(30)
        )

    wait_until(everyone_forgets_it, 15, "the delete on every worker")


def test_a_taken_port_fails_fast_with_one_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        began = time.monotonic()
        out = subprocess.run(
            [*httpdns_command(), "serve", "--workers", str(WORKERS), "--http",
             f"127.0.0.1:{port}", "--store", f"sqlite:///{tmp_path}/registry.db",
             "--dns", f"127.0.0.1:{free_udp_tcp_port()}"],
            capture_output=True, text=True, timeout=40, env=clean_env(), cwd=tmp_path,
            stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
        elapsed = time.monotonic() - began
    assert out.returncode != 0
    assert elapsed < STARTUP_GRACE, elapsed
    assert "Traceback" not in out.stderr + out.stdout
    lines = {line for line in out.stderr.splitlines() if line.strip()}
    # every worker fails alike; they may each print the same line
    assert len(lines) == 1, out.stderr
    line = lines.pop()
    assert line.startswith("Error: cannot listen on 127.0.0.1:") and str(port) in line
    # no worker is left behind
    leftovers = [
        p
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and f"127.0.0.1:{port}".encode() in _cmdline(p)
    ]
    assert leftovers == []


def _cmdline(p: Path) -> bytes:
    try:
        return (p / "cmdline").read_bytes()
    except OSError:
        return b""


def test_a_worker_killed_soon_after_start_is_restarted(tmp_path: Path) -> None:
    began = time.monotonic()
    c = start_cluster(tmp_path)
    try:
        assert ask(c, "/healthz")[1] == 200
        if time.monotonic() - began > STARTUP_GRACE - 3:
            pytest.skip("the machine is too slow to kill a worker inside the start-up window")
        victim = min(children(c.pid))
        os.kill(victim, signal.SIGKILL)
        assert c.node.proc is not None

        def settled() -> bool:
            kids = children(c.pid)
            exited = c.node.proc is not None and c.node.proc.poll() is not None
            return exited or (len(kids) == WORKERS and victim not in kids)

        wait_until(settled, 20, "a replacement worker or the supervisor's exit")
        assert c.node.proc.poll() is None, "the supervisor exited"
        assert ask(c, "/healthz")[1] == 200
    finally:
        c.node.stop()


# -- the supervisor in-process ---------------------------------------------------------------


class FakeWorker:
    """A stand-in for a worker ``subprocess.Popen``: runs until signalled (then exits 0)."""

    made: list[FakeWorker] = []
    on_make: object = None

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.signals: list[int] = []
        self.code: int | None = None
        self.born = time.monotonic()
        FakeWorker.made.append(self)
        if callable(FakeWorker.on_make):
            FakeWorker.on_make(self)

    def poll(self) -> int | None:
        if self.code is None and time.monotonic() - self.born > 1.5:
            self.code = 0  # never signalled: leave on our own so the test stays bounded
        return self.code

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        self.code = 0

    def wait(self, timeout: float | None = None) -> int:
        while self.poll() is None:
            time.sleep(0.01)
        assert self.code is not None
        return self.code


def test_sigterm_during_a_worker_restart_reaches_the_replacement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from httpdns import serve

    FakeWorker.made = []

    def on_make(w: FakeWorker) -> None:
        if len(FakeWorker.made) == 1:
            w.code = -9  # worker 0 dies at once: the supervisor replaces it
        elif len(FakeWorker.made) == 3:  # the replacement is being started: SIGTERM now
            os.kill(os.getpid(), signal.SIGTERM)
            deadline = time.monotonic() + 5
            while not FakeWorker.made[1].signals and time.monotonic() < deadline:
                pass  # the supervisor's handler runs in this thread, at once

    FakeWorker.on_make = on_make
    monkeypatch.setattr(serve.subprocess, "Popen", FakeWorker)
    monkeypatch.setattr(serve, "STARTUP_GRACE", 0.0)
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        assert serve.supervise(2) == 0
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        FakeWorker.on_make = None
    assert len(FakeWorker.made) == 3
    _, survivor, replacement = FakeWorker.made
    assert survivor.signals == [signal.SIGTERM]
    assert replacement.signals == [signal.SIGTERM], "the replacement was never told to stop"


def test_supervisor_replaces_a_dead_worker_and_stops_all_on_sigterm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same fake set-up without the unlucky timing: the replacement gets the SIGTERM."""
    from httpdns import serve

    FakeWorker.made = []

    def on_make(w: FakeWorker) -> None:
        if len(FakeWorker.made) == 1:
            w.code = -9

    def terminate_once_replaced() -> None:
        deadline = time.monotonic() + 10
        while len(FakeWorker.made) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)  # handled by the supervisor, in the main thread

    FakeWorker.on_make = on_make
    monkeypatch.setattr(serve.subprocess, "Popen", FakeWorker)
    monkeypatch.setattr(serve, "STARTUP_GRACE", 0.0)
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    thread = threading.Thread(target=terminate_once_replaced, daemon=True)
    thread.start()
    try:
        assert serve.supervise(2) == 0
    finally:
        thread.join(10)
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        FakeWorker.on_make = None
    assert len(FakeWorker.made) == 3
    assert [w.signals for w in FakeWorker.made] == [[], [signal.SIGTERM], [signal.SIGTERM]]
    assert all(w.argv[-2:] == ["--worker-id", str(i)] for i, w in
               enumerate(FakeWorker.made[:2]))  # fmt: skip
    assert FakeWorker.made[2].argv[-2:] == ["--worker-id", "0"]


# -- the shared cluster's last two tests: a worker killed, then the whole node stopped --


def test_a_killed_worker_is_restarted_and_the_port_keeps_answering(cluster: Cluster) -> None:
    # a death inside the start-up grace period counts as a start-up failure (see below)
    wait_until(
        lambda: time.monotonic() > cluster.started + STARTUP_GRACE + 0.5, 30, "the grace period"
    )
    before = children(cluster.pid)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: not alive(victim), 10, "the worker to die")
    wait_until(lambda: len(listeners(cluster.port)) == 1, 10, "its listener to close")
    for _ in range(20):  # the survivor alone holds the port meanwhile
        _, status, body = ask(cluster, f"/d?dn={SHOP}")
        assert status == 200 and body
        assert dns_a(cluster, SHOP)[0] == dns.rcode.NOERROR

    def replaced() -> bool:
        kids = children(cluster.pid)
        return len(kids) == WORKERS and victim not in kids and len(listeners(cluster.port)) == 2

    wait_until(replaced, 20, "a replacement worker")
    assert cluster.node.proc is not None and cluster.node.proc.poll() is None
    newcomer = (children(cluster.pid) - before).pop()
    answered: set[int] = set()

    def newcomer_answers() -> bool:
        pid, status, body = ask(cluster, f"/d?dn={SHOP}")
        assert status == 200 and body
        if pid is not None:
            answered.add(pid)
        return newcomer in answered

    wait_until(newcomer_answers, 15, "the replacement to answer")
    assert "restarting it" in Path(cluster.node.log).read_text()


def test_sigterm_stops_the_supervisor_and_every_worker(tmp_path: Path) -> None:
    """On a cluster of its own: the module's shared one stays up whatever the test order."""
    cluster = start_cluster(tmp_path)
    try:
        wait_until(lambda: len(children(cluster.pid)) == WORKERS, 20, "both workers")
        proc = cluster.node.proc
        assert proc is not None
        kids = children(cluster.pid)
        assert len(kids) == WORKERS
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        for pid in kids:
            wait_until(lambda pid=pid: not Path(f"/proc/{pid}").exists(), 10, f"worker {pid} gone")
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", cluster.port), timeout=2).close()
    finally:
        cluster.node.stop()
