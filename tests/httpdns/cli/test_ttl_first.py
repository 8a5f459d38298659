"""``traffic set|shift --ttl-first`` against a real node (old TTL 2 s, floor 1 s, so each
run takes seconds): the TTL is lowered, the change waits one old TTL, the TTL is restored
one floor TTL after it (read back from the audit log's times); clients see the floor
while it holds; ``--dry-run`` shows the steps and writes nothing; an interrupted run
restores at once, a killed one leaves a note that ``traffic restore-ttl`` acts on.

Each test uses its own service."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Node, wait_until

from .conftest import ACTOR, TOKEN, FakeServer, ok, run, state

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def make(node: Node, name: str, ttl: int = 2) -> None:
    ok(node, "service", "set", name, "--ttl", str(ttl), "idc=70", "cloud=30")
    ok(node, "endpoint", "set", name, "a1", "--dc", "idc", "--address", "192.0.2.71")
    ok(node, "endpoint", "set", name, "b1", "--dc", "cloud", "--address", "198.51.100.71")


def service(node: Node, name: str) -> dict[str, Any]:
    req = urllib.request.Request(f"{node.url}/api/v1/state",
                                 headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
    with OPENER.open(req, timeout=5) as r:
        return json.load(r)["services"][name]  # type: ignore[no-any-return]


def answer_ttl(node: Node, name: str) -> int:
    with OPENER.open(f"{node.url}/resolve?name={name}&type=A&ip=10.9.8.7", timeout=5) as r:
        return int(json.load(r)["Answer"][0]["TTL"])


def audit(node: Node, name: str) -> list[dict[str, Any]]:
    """Oldest first: ``(time, [change verbs])`` of the service's history."""
    req = urllib.request.Request(f"{node.url}/api/v1/audit?service={name}",
                                 headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
    with OPENER.open(req, timeout=5) as r:
        return list(reversed(json.load(r)["entries"]))


def start(node: Node, note: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HTTPDNS_")}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
               HTTPDNS_SERVER=node.url, HTTPDNS_ADMIN_TOKEN=TOKEN, HTTPDNS_ACTOR=ACTOR,
               HTTPDNS_TTL_NOTE=str(note))  # fmt: skip
    return subprocess.Popen([sys.executable, "-m", "httpdns.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_interruptible)  # fmt: skip


def _interruptible() -> None:
    """In the child before it runs: Ctrl-C (SIGINT) handled. A suite started as a shell's
    background job (``cmd &``) ignores SIGINT, and the child would inherit that and never
    see the test's Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_set_lowers_the_ttl_waits_one_old_ttl_and_restores_it(
    registry: Node, tmp_path: Path
) -> None:
    name = "ttl-set.example.com"
    make(registry, name)
    note = tmp_path / "note.json"
    proc = start(registry, note, "traffic", "set", name, "idc=0", "cloud=100", "--ttl-first",
                 "--ttl-floor", "1")  # fmt: skip
    wait_until(lambda: service(registry, name)["ttl"] == 1, 10, "the lowered TTL")
    # while it holds: clients get the floor, the traffic is unchanged, the note is written
    assert answer_ttl(registry, name) == 1
    assert service(registry, name)["traffic"]["default"] == {"idc": 70, "cloud": 30}
    assert json.loads(note.read_text())[registry.url][name]["ttl"] == 2
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "ttl-first: waiting 3s for answers cached with the old TTL to expire" in err
    assert "restored the TTL of ttl-set.example.com to 2s" in err
    assert f"service {name} traffic" in out
    svc = service(registry, name)
    assert svc["ttl"] == 2 and svc["traffic"]["default"] == {"idc": 0, "cloud": 100}
    assert answer_ttl(registry, name) == 2 and not note.exists()
    entries = audit(registry, name)[-3:]  # lowered, traffic, restored
    assert [e["changes"][0]["value"]["ttl"] for e in entries] == [1, 1, 2]
    lowered, changed, restored = (float(e["time"]) for e in entries)
    assert changed - lowered >= 2.0  # one old TTL (plus the propagation allowance)
    assert restored - changed >= 1.0  # one floor TTL
    assert [e["revision"] for e in entries] == sorted(e["revision"] for e in entries)


def test_shift_lowers_only_the_services_it_moves(registry: Node, tmp_path: Path) -> None:
    name, other = "ttl-shift.example.com", "ttl-still.example.com"
    make(registry, name)
    make(registry, other)
    proc = start(registry, tmp_path / "note.json", "traffic", "shift", "--from", "idc", "--to",
                 "cloud", "--percent", "50", "--service", name, "--ttl-first",
                 "--ttl-floor", "1")  # fmt: skip
    wait_until(lambda: service(registry, name)["ttl"] == 1, 10, "the lowered TTL")
    assert service(registry, other)["ttl"] == 2
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert service(registry, name)["traffic"]["default"] == {"idc": 35, "cloud": 65}
    assert service(registry, name)["ttl"] == 2 and "shift 50% of idc's weight to cloud" in out
    assert service(registry, other)["traffic"]["default"] == {"idc": 70, "cloud": 30}


def test_dry_run_shows_the_steps_and_writes_nothing(registry: Node, tmp_path: Path) -> None:
    name = "ttl-dry.example.com"
    make(registry, name, ttl=300)
    before = state(registry)["revision"]
    out = ok(registry, "traffic", "set", name, "idc=10", "cloud=90", "--ttl-first", "--dry-run",
             env={"HTTPDNS_TTL_NOTE": str(tmp_path / "note.json")})  # fmt: skip
    assert out.splitlines()[:5] == [
        "ttl-first: lower the TTL of ttl-dry.example.com 300s -> 5s",
        "ttl-first: wait 301s (one old TTL + propagation) for cached answers to expire",
        "ttl-first: set the default traffic of ttl-dry.example.com to idc=10 cloud=90",
        "ttl-first: wait 6s (one floor TTL + propagation)",
        "ttl-first: restore the TTL of ttl-dry.example.com to 300s",
    ]
    assert "dry run" in out
    assert state(registry)["revision"] == before and not (tmp_path / "note.json").exists()


def test_ctrl_c_restores_at_once_and_a_kill_leaves_a_note(registry: Node, tmp_path: Path) -> None:
    name = "ttl-kill.example.com"
    make(registry, name, ttl=30)
    note = tmp_path / "note.json"
    args = ("traffic", "set", name, "idc=0", "cloud=100", "--ttl-first", "--ttl-floor", "1")
    with start(registry, note, *args) as proc:  # killed and closed if a step fails
        wait_until(lambda: service(registry, name)["ttl"] == 1, 10, "the lowered TTL")
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=20)
        finally:
            proc.kill()
    assert proc.returncode == 130 and "the traffic change was not made" in err
    svc = service(registry, name)
    assert svc["ttl"] == 30 and svc["traffic"]["default"] == {"idc": 70, "cloud": 30}
    assert not note.exists()
    proc = start(registry, note, *args)
    wait_until(lambda: service(registry, name)["ttl"] == 1, 10, "the lowered TTL")
    proc.kill()  # nothing runs after SIGKILL: the note is all that is left
    proc.communicate(timeout=10)
    assert service(registry, name)["ttl"] == 1
    assert json.loads(note.read_text())[registry.url][name] == {
        "ttl": 30, "floor": 1, "since": json.loads(note.read_text())[registry.url][name]["since"]
    }  # fmt: skip
    out = ok(registry, "traffic", "restore-ttl", env={"HTTPDNS_TTL_NOTE": str(note)})
    assert f"restored the TTL of {name} to 30s" in out
    assert service(registry, name)["ttl"] == 30 and not note.exists()
    assert "no TTL to restore" in ok(registry, "traffic", "restore-ttl",
                                     env={"HTTPDNS_TTL_NOTE": str(note)})  # fmt: skip


def test_ttl_first_needs_nothing_when_the_ttl_is_at_the_floor(
    server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPDNS_TTL_NOTE", str(tmp_path / "note.json"))
    result = run("traffic", "set", "www.example.com", "idc=1", "--ttl-first", "--ttl-floor", "30")
    assert result.exit_code == 0, result.output
    assert "no TTL above the floor to lower; set the default traffic" in result.stderr
    [put] = server.writes  # the traffic alone: no TTL write around it
    assert put.path == "/api/v1/services/www.example.com/traffic"
