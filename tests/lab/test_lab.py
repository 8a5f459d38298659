"""``scripts/lab --quick`` end to end: every stage present, no failed client request, a
plot and a summary, and nothing left behind; and the same cleanup when the run is
interrupted with SIGTERM halfway.

Marked ``lab`` (``pytest -m "not lab"`` skips them locally); they need root, ``ip``,
``dockerd``, ``redis-server`` and busybox, which ``scripts/install`` installs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.scenario import REQUIRED

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]


@pytest.fixture(autouse=True)
def _needs() -> None:
    if os.geteuid() != 0:
        pytest.fail("the lab needs root (network namespaces, dockerd)")
    for tool in ("ip", "dockerd", "redis-server", "busybox"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/install installs it)")


def leftovers(out: Path) -> list[str]:
    """What a lab run may leave: hdl-* namespaces and links, its dockerd directories, and
    any process whose command line names its run directory or its dockerd."""
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {line.split()[0]}" for line in netns.splitlines() if line.startswith("hdl-")]
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    found += [f"link {line.split()[0]}" for line in links.splitlines() if line.startswith("hdl-")]
    found += [f"dir {p}" for p in Path("/tmp").glob("hdl-dk-*")]
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = (Path("/proc") / pid / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(out) in cmd or "/tmp/hdl-dk-" in cmd:
            found.append(f"process {pid}: {cmd[:120]}")
    return found


def test_quick_lab_replays_every_stage_with_no_failed_request(tmp_path: Path) -> None:
    out = tmp_path / "lab"
    started = time.monotonic()
    done = subprocess.run([str(REPO / "scripts" / "lab"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=540)  # fmt: skip
    took = time.monotonic() - started
    log = (done.stdout + done.stderr)[-4000:]
    assert (out / "report.json").exists(), log
    report = json.loads((out / "report.json").read_text())
    assert done.returncode == 0, log
    assert report["failed_requests"] == 0, report["failures"][:10]
    assert took < 300, f"the quick lab took {took:.0f}s (the issue allows 5 minutes)"

    stages = report["stages"]
    for word in REQUIRED:  # each word names exactly one stage, in the article's order
        assert sum(word in s["name"] for s in stages) == 1, (word, [s["name"] for s in stages])
    order = [next(i for i, s in enumerate(stages) if word in s["name"]) for word in REQUIRED]
    assert order == sorted(order)
    assert report["requests"] >= sum(s["requests"] for s in stages) > 1000
    for s in stages:
        assert set(s) >= {"name", "started", "ended", "actions", "requests", "failed", "shares"}
        assert s["started"] < s["ended"] and s["requests"] > 0 and s["failed"] == 0, s["name"]
        assert s["actions"], s["name"]
        assert abs(sum(s["shares"].values()) - 1) < 0.01, s["shares"]

    by = {word: next(s for s in stages if word in s["name"]) for word in REQUIRED}
    # stage 1: only the mobile clients' www requests (a sixth of all) go to the cloud
    assert 0.05 < by["access"]["shares"].get("cloud/v1", 0) < 0.3
    assert not any(k.endswith("/v2") for k in by["access"]["shares"])
    # the canary shows v2 before active-active, and the cloud's share grows stage by stage
    assert sum(v for k, v in by["canary"]["shares"].items() if k.endswith("/v2")) > 0.02
    cloud = [sum(v for k, v in by[w]["shares"].items() if k.startswith("cloud/"))
             for w in ("access", "service", "read-only", "rush")]  # fmt: skip
    assert cloud == sorted(cloud), cloud
    # draining the idc sends (nearly) everything to the cloud for part of that stage
    drain = by["drain"]["shares"]
    assert sum(v for k, v in drain.items() if k.startswith("cloud/")) > 0.6, drain
    # every httpdns write was shown with --dry-run first
    for s in stages:
        for action in s["actions"]:
            if action["command"].startswith("httpdns "):
                assert "dry_run" in action, action["command"]

    assert (out / "shares.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (out / "summary.md").read_text()
    assert all(s["name"] in summary for s in stages)
    assert leftovers(out) == []


def test_sigterm_halfway_removes_everything(tmp_path: Path) -> None:
    out = tmp_path / "lab"
    proc = subprocess.Popen([sys.executable, "-m", "lab", "--quick", "--out", str(out)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    assert proc.stdout is not None
    seen = []
    try:
        for line in proc.stdout:  # built, clients running, the first operator action done
            seen.append(line)
            if line.startswith("$ httpdns traffic set www.lab.example --region mobile"):
                break
        else:
            pytest.fail("the lab ended before stage 1:\n" + "".join(seen[-30:]))
        assert leftovers(out), "the lab should be running now"
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, rest[-2000:]
    assert "interrupted (SIGTERM)" in rest and "cleaned up" in rest, rest[-2000:]
    assert leftovers(out) == []
