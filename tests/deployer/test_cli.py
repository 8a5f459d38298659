"""The ``rolling`` CLI over a SQLite registry file (no Docker: only the controller needs it)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

import registry
from deployer.cli import main
from registry import Change, Datacenter, Service

SERVICE = "api.example.com"
CONFIG = """
[datacenters.idc]
hosts = ["unix:///var/run/docker.sock"]
network = "n-idc"
pool = "10.1.0.10-10.1.0.20"
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
        await store.apply([Change.put(Datacenter("idc")),
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


def test_plan_prints_containers_per_datacenter() -> None:
    out = CliRunner().invoke(main, ["plan", "--qps", "20000", "--cpu-per-kqps", "1.5",
                                    "--mem-per-kqps", "2", "--container", "4c8g", "--headroom",
                                    "0.3", "--split", "idc=70,cloud=30", "--json"], env={})  # fmt: skip
    assert out.exit_code == 0, out.output
    rows = {r["dc"]: r["containers"] for r in json.loads(out.output)}
    assert rows == {"idc": 8, "cloud": 4}
    text = CliRunner().invoke(main, ["plan", "--qps", "20000", "--cpu-per-kqps", "1.5",
                                     "--mem-per-kqps", "2"], env={}).output  # fmt: skip
    assert "total: 11 containers of 4c8g" in text
    bad = CliRunner().invoke(main, ["plan", "--qps", "1", "--cpu-per-kqps", "1",
                                    "--mem-per-kqps", "1", "--split", "idc"], env={})  # fmt: skip
    assert bad.exit_code == 2


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
