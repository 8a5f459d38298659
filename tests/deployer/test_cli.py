"""The ``rolling`` CLI over a SQLite registry file (no Docker: only the controller needs it)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

import registry
from deployer.cli import main
from registry import Change, Datacenter, Heartbeat, Release, Service

SERVICE = "api.example.com"
CONFIG = """
[datacenters.idc]
hosts = ["memory://idc"]
network = "n-idc"
pool = "10.1.0.10-10.1.0.20"

[datacenters.cloud]
hosts = ["memory://cloud"]
network = "n-cloud"
pool = "10.2.0.10-10.2.0.20"
"""
SPEC = f"""
service = "{SERVICE}"
image = "app:{{version}}"
port = 8080
[replicas]
idc = 2
[[steps]]
percent = 10
pause = "manual"
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path}/r.db"

    async def seed() -> None:
        store = await registry.open_store(url)
        await store.apply([Change.put(Datacenter("idc")), Change.put(Datacenter("cloud")),
                           Change.put(Service(SERVICE, {"default": {"idc": 1}}))])  # fmt: skip
        await store.close()

    asyncio.run(seed())
    (tmp_path / "rolling.toml").write_text(CONFIG)
    (tmp_path / "spec.toml").write_text(SPEC)
    return {"ROLLING_STORE": url, "ROLLING_CONFIG": str(tmp_path / "rolling.toml"),
            "ROLLING_ACTOR": "tester", "SPEC": str(tmp_path / "spec.toml"),
            "COLUMNS": "200"}  # fmt: skip


def rolling(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exit_code == code, result.output
    return result.output


def test_deploy_status_and_intents(env: dict[str, str]) -> None:
    out = rolling(env, "deploy", env["SPEC"], "--version", "v1")
    assert "rollout r2" in out and "-> v1" in out
    status = json.loads(rolling(env, "status", SERVICE, "--json"))
    assert (status["phase"], status["version"], status["actor"]) == ("pending", "v1", "tester")
    assert status["datacenters"] == {"idc": {"healthy": 0, "total": 2}}
    assert "pause recorded" in rolling(env, "pause", SERVICE)
    assert json.loads(rolling(env, "status", SERVICE, "--json"))["paused"] is True
    assert "resume recorded" in rolling(env, "resume", SERVICE)
    out = rolling(env, "promote", SERVICE, code=1)
    assert out.startswith("error: intent_refused:")
    assert "promote --full recorded" in rolling(env, "promote", SERVICE, "--full")
    assert "abort recorded" in rolling(env, "abort", SERVICE)
    table = rolling(env, "status")
    assert SERVICE in table and "pending" in table
    history = json.loads(rolling(env, "history", SERVICE, "--json"))
    texts = [e["text"] for e in history[0]["events"]]
    assert texts == ["deploy by tester", "paused by tester", "resumed by tester",
                     "promote-full by tester", "abort by tester"]  # fmt: skip
    assert "deploy by tester" in rolling(env, "history", SERVICE, "-v")


def test_errors_are_one_line_with_exit_status_1(env: dict[str, str]) -> None:
    assert rolling(env, "pause", SERVICE, code=1).startswith("error: no_rollout:")
    out = rolling(env, "--store", "ftp://x", "deploy", env["SPEC"], "--version", "v1", code=1)
    assert out.startswith("error: invalid:")
    env = {**env, "ROLLING_CONFIG": "/nonexistent.toml"}
    assert "cannot read" in rolling(env, "status", code=1)


def test_deploy_of_an_unknown_service_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    spec = tmp_path / "other.toml"
    spec.write_text(SPEC.replace(SERVICE, "other.example.com"))
    assert "error: not_found:" in rolling(env, "deploy", str(spec), "--version", "v1", code=1)


def test_plan_prints_containers_per_datacenter(env: dict[str, str]) -> None:
    out = CliRunner().invoke(main, ["plan", "--qps", "20000", "--cpu-per-kqps", "1.5",
                                    "--mem-per-kqps", "2", "--container", "4c8g", "--headroom",
                                    "0.3", "--split", "idc=70,cloud=30", "--json"], env=env)  # fmt: skip
    assert out.exit_code == 0, out.output
    rows = {r["dc"]: r["containers"] for r in json.loads(out.output)}
    assert rows == {"idc": 8, "cloud": 4}
    text = CliRunner().invoke(main, ["plan", "--qps", "20000", "--cpu-per-kqps", "1.5",
                                     "--mem-per-kqps", "2"], env={}).output  # fmt: skip
    assert "total: 11 containers of 4c8g" in text
    bad = CliRunner().invoke(main, ["plan", "--qps", "1", "--cpu-per-kqps", "1",
                                    "--mem-per-kqps", "1", "--split", "idc"], env={})  # fmt: skip
    assert bad.exit_code == 2


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ("idc=70,moon=30", "error: invalid_spec: split: unknown datacenter 'moon' (configured: cloud, idc)"),
        ("idc=70,cloud=20", "error: invalid_spec: split: the shares add up to 90, not 100 (--normalize rescales them)"),
    ],
)  # fmt: skip
def test_plan_refuses_unknown_datacenters_and_splits_off_100(
    env: dict[str, str], split: str, message: str
) -> None:
    args = ["plan", "--qps", "1000", "--cpu-per-kqps", "1", "--mem-per-kqps", "1", "--split", split]
    assert rolling(env, *args, code=1).strip() == message


def test_plan_normalizes_on_request_and_prints_human_sizes(env: dict[str, str]) -> None:
    out = rolling(env, "plan", "--qps", "1000", "--cpu-per-kqps", "1", "--mem-per-kqps", "700m",
                  "--split", "idc=1,cloud=1", "--normalize", "--min", "0")  # fmt: skip
    assert "50%" in out
    assert "350m" in out  # 700m x 0.5
    out = rolling(env, "plan", "--qps", "1000", "--cpu-per-kqps", "1", "--mem-per-kqps", "1.4",
                  "--min", "0")  # fmt: skip
    assert "1.4g" in out and "1503238553" not in out


@pytest.mark.parametrize(
    ("image", "version", "message"),
    [
        ("app:{version}", None, "version: the image app:{version} has {version}: give --version"),
        ("app:1.4", "v2", "image: app:1.4 has no {version}, so --version v2 would be ignored"),
        # a registry's port is not a tag: the hint keeps it
        ("registry:5000/app:1.4", "v2", "write the image as 'registry:5000/app:{version}'"),
        ("app", None, "image: app has no tag"),
    ],
)
def test_the_version_must_fit_the_image(
    env: dict[str, str], tmp_path: Path, image: str, version: str | None, message: str
) -> None:
    spec = tmp_path / "v.toml"
    spec.write_text(SPEC.replace('image = "app:{version}"', f'image = "{image}"'))
    args = ["deploy", str(spec), *(["--version", version] if version else [])]
    assert message in rolling(env, *args, code=1)
    assert "no rollouts" in rolling(env, "status")  # nothing recorded


def test_an_image_without_version_releases_its_tag(env: dict[str, str], tmp_path: Path) -> None:
    spec = tmp_path / "v.toml"
    spec.write_text(SPEC.replace('image = "app:{version}"', 'image = "app:1.4"'))
    assert "-> 1.4 recorded" in rolling(env, "deploy", str(spec))


def test_a_pool_too_small_is_refused_before_anything_is_recorded(
    env: dict[str, str], tmp_path: Path
) -> None:
    spec = tmp_path / "big.toml"
    spec.write_text(SPEC.replace("idc = 2", "idc = 6"))
    out = rolling(env, "deploy", str(spec), "--version", "v1", code=1)
    assert out.startswith("error: invalid_spec: datacenters.idc.pool: 10.1.0.10-10.1.0.20 holds "
                          "11 addresses; 6 replicas need 12")  # fmt: skip
    assert "no rollouts" in rolling(env, "status")


def test_overlapping_pools_are_refused_when_the_config_loads(env: dict[str, str]) -> None:
    config = Path(env["ROLLING_CONFIG"])
    config.write_text(CONFIG.replace("10.2.0.10-10.2.0.20", "10.1.0.15-10.1.0.30"))
    out = rolling(env, "status", code=1)
    assert out.startswith("error: invalid_spec: datacenters.")
    assert "overlaps the pool of datacenter" in out


@pytest.mark.parametrize("command", [["status", "nosuch.example"], ["ps", "nosuch.example"],
                                     ["history", "nosuch.example"],
                                     ["scale", "nosuch.example", "idc=2"]])  # fmt: skip
def test_an_unknown_service_is_not_found(env: dict[str, str], command: list[str]) -> None:
    out = rolling(env, *command, code=1)
    assert out.strip() == "error: not_found: service 'nosuch.example' does not exist"


def test_status_says_when_no_controller_runs(env: dict[str, str]) -> None:
    rolling(env, "deploy", env["SPEC"], "--version", "v1")
    out = rolling(env, "status", SERVICE)
    assert "controller not running: no controller has reconciled yet" in out

    async def beat(age: float) -> None:  # as ``rolling controller`` records a pass
        store = await registry.open_store(env["ROLLING_STORE"])
        info = {"kind": "controller", "id": "host-1", "time": time.time() - age, "every": 1.0}
        await store.heartbeat("controller:host-1", info, ttl=600)
        await store.close()

    asyncio.run(beat(0.5))
    status = json.loads(rolling(env, "status", SERVICE, "--json"))
    assert status["controller"]["running"] is True
    assert "controller: host-1 reconciled" in rolling(env, "status", SERVICE)
    asyncio.run(beat(3.5))  # 3 periods of 1 s passed without a pass
    status = json.loads(rolling(env, "status", SERVICE, "--json"))
    assert status["controller"]["running"] is False
    assert status["controller"]["controllers"][0]["age"] >= 3.5
    out = rolling(env, "status", SERVICE)
    assert re.search(r"controller not running: the last reconcile was [\d.]+s ago \(host-1\)", out)


def test_status_reads_the_heartbeat_records_of_older_controllers(env: dict[str, str]) -> None:
    """A controller from before liveness entries writes ``heartbeat`` records into the
    registry; while one of those still runs, status must not call it missing."""
    rolling(env, "deploy", env["SPEC"], "--version", "v1")

    async def beat(age: float) -> None:
        store = await registry.open_store(env["ROLLING_STORE"])
        await store.apply([Change.put(Heartbeat("old-1", time.time() - age, 1.0))])
        await store.close()

    asyncio.run(beat(0.5))
    status = json.loads(rolling(env, "status", SERVICE, "--json"))["controller"]
    assert status["running"] is True
    assert [c["id"] for c in status["controllers"]] == ["old-1"]
    asyncio.run(beat(3.5))
    assert "the last reconcile was" in rolling(env, "status", SERVICE)


def test_watch_ends_when_the_rollout_ends(env: dict[str, str]) -> None:
    rolling(env, "deploy", env["SPEC"], "--version", "v1")

    async def finish() -> None:
        store = await registry.open_store(env["ROLLING_STORE"])
        snap = await store.snapshot()
        (r,) = snap.rollouts.values()
        await store.apply([Change.put(replace(r, phase="aborted", message="stopped here"))])
        await store.close()

    asyncio.run(finish())
    out = rolling(env, "status", SERVICE, "--watch", "--interval", "0.05")
    assert "aborted" in out and "stopped here" in out


def test_scale_records_an_intent_on_the_stable_rollout(env: dict[str, str]) -> None:
    rolling(env, "deploy", env["SPEC"], "--version", "v1")

    async def finish() -> None:  # as the controller would have: v1 done and stable
        store = await registry.open_store(env["ROLLING_STORE"])
        snap = await store.snapshot()
        (r,) = snap.rollouts.values()
        await store.apply([Change.put(replace(r, phase="done")),
                           Change.put(Release(SERVICE, "v1"))])  # fmt: skip
        await store.close()

    asyncio.run(finish())
    assert rolling(env, "scale", SERVICE, "idc=3").strip() == f"{SERVICE}: scale idc=3 recorded"
    history = json.loads(rolling(env, "history", SERVICE, "--json"))
    assert history[0]["events"][-1]["text"] == "scale idc 2->3 by tester"
    assert "is not DC=N" in rolling(env, "scale", SERVICE, "idc=many", code=2)
    out = rolling(env, "scale", SERVICE, "cloud=1", code=1)
    assert out.startswith("error: invalid_spec: replicas.cloud: rollout r2 has no placement")
    out = rolling(env, "scale", SERVICE, "idc=9", code=1)
    assert "holds 11 addresses; 9 replicas need 18" in out
