"""``dnsviz probe`` and ``dnsviz grok`` on a zone served by a real node (issue 14).

dnsviz only talks to port 53, so the node runs inside a network namespace this test
creates (``ip netns``), listening on port 53 of the zone's two nameserver addresses
there. The registry (SQLite) is written by a second node outside the namespace, through
the admin API and ``httpdns zone set``. grok must report no errors (and no warnings) for
the zone, its nameservers and a steered service inside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import Node, admin_call, httpdns_command, need, wait_until

ZONE = "viz.test"
WWW = f"www.{ZONE}"
# Benchmarking-range addresses (RFC 2544): dnsviz skips RFC 1918 ones; they live only in the
# test's namespace.
NAMESERVERS = {f"ns1.{ZONE}": "198.18.0.1", f"ns2.{ZONE}": "198.18.0.2"}


def _ip(*args: str) -> None:
    subprocess.run([need("ip"), *args], check=True, capture_output=True, timeout=20)


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    """A network namespace with the nameserver addresses on its loopback, a default route
    (dnsviz checks for "global connectivity") and a resolv.conf naming the node (so
    dnsviz's own lookups fail fast instead of timing out); all removed after."""
    if os.geteuid() != 0:
        pytest.fail("creating a network namespace needs root (the tests run as root here)")
    name = f"httpdns-viz-{os.getpid()}"
    etc = Path("/etc/netns") / name  # ``ip netns exec`` bind-mounts these files
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        for addr in NAMESERVERS.values():
            _ip("-n", name, "addr", "add", f"{addr}/32", "dev", "lo")
        _ip("-n", name, "route", "add", "default", "dev", "lo")
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(f"nameserver {NAMESERVERS[f'ns1.{ZONE}']}\n")
        yield name
    finally:
        subprocess.run([need("ip"), "netns", "delete", name], capture_output=True, timeout=20)
        (etc / "resolv.conf").unlink(missing_ok=True)
        if etc.exists():
            etc.rmdir()


def _in(
    netns: str, *cmd: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [need("ip"), "netns", "exec", netns, *cmd],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _stop_leftovers(marker: str) -> None:
    """End the processes whose command line names ``marker`` (the ``named`` dnsviz starts
    for -N under its TMPDIR survives dnsviz when dnsviz is killed), by pid."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGTERM)


def _serving(netns: str, node: Node) -> bool:
    if node.proc is not None and node.proc.poll() is not None:
        raise RuntimeError(f"node exited: {node.log.read_text()[-2000:]}")
    out = _in(netns, need("dig"), f"@{NAMESERVERS[f'ns1.{ZONE}']}", WWW, "A", "+short", "+time=1",
              "+tries=1", timeout=10)  # fmt: skip
    return out.stdout.strip() == "192.0.2.80"


@pytest.fixture(scope="module")
def served(netns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("dnsviz")
    store = f"sqlite:///{tmp}/registry.db"
    writer = Node(store, tmp).start()
    try:
        api = "/api/v1"
        for path, body in [
            (f"{api}/datacenters/idc", {"kind": "idc"}),
            (f"{api}/services/{WWW}", {"ttl": 60, "traffic": {"default": {"idc": 100}}}),
            (f"{api}/services/{WWW}/endpoints/w1", {"dc": "idc", "address": "192.0.2.80"}),
            (f"{api}/services/{WWW}/endpoints/w6", {"dc": "idc", "address": "2001:db8::80"}),
        ]:
            status, data = admin_call(writer.url, "PUT", path, body)
            assert status in (200, 201), (path, data)
        ns = [a for host, addr in NAMESERVERS.items() for a in ("--ns", f"{host}={addr}")]
        cmd = [*httpdns_command(), "--server", writer.url, "--token", "T", "zone", "set", ZONE, *ns,
               "--rname", f"hostmaster.{ZONE}", "--minimum", "300"]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        # Inside the namespace: no --zone flag, the zone comes from the registry.
        inner = Node(store, tmp, wrap=(need("ip"), "netns", "exec", netns),
                     args=("--dns", "0.0.0.0:53"))  # fmt: skip
        inner.start(wait=False)
        try:
            wait_until(lambda: _serving(netns, inner), 20, f"the node in {netns} ({inner.log})")
            yield netns
        finally:
            inner.stop()
    finally:
        writer.stop()


def test_dnsviz_grok_finds_no_errors_in_a_served_zone(served: str, tmp_path: Path) -> None:
    servers = ",".join(f"{h}={a}" for h, a in NAMESERVERS.items())
    probe = tmp_path / "probe.json"
    scratch = tmp_path / "dnsviz-tmp"  # dnsviz's own temporary files (named for -N)
    scratch.mkdir()
    try:
        out = _probe(served, servers, probe, scratch)
    finally:
        _stop_leftovers(str(scratch))
    assert out.returncode == 0, out.stderr
    grok = subprocess.run(
        [need("dnsviz"), "grok", "-r", str(probe)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert grok.returncode == 0, grok.stderr
    report = json.loads(grok.stdout)
    problems = list(_problems(report))
    assert problems == [], json.dumps(problems, indent=1)[:4000]
    assert set(report) >= {f"{ZONE}.", f"{WWW}."}
    assert report[f"{ZONE}."]["status"] == "NOERROR"


def _probe(
    netns: str, servers: str, probe: Path, scratch: Path
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TMPDIR": str(scratch)}
    return _in(
        netns, need("dnsviz"), "probe", "-A", "-E", "-a", ZONE, "-x", f"{ZONE}:{servers}",
        "-N", f"{ZONE}:{servers}", "-o", str(probe), ZONE, WWW, f"ns1.{ZONE}", env=env,
    )  # fmt: skip


def _problems(node: object, path: str = "") -> Iterator[tuple[str, object]]:
    """Every ``errors`` and ``warnings`` entry anywhere in grok's report, with where."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("errors", "warnings") and value:
                yield f"{path}/{key}", value
            else:
                yield from _problems(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _problems(value, f"{path}[{i}]")
