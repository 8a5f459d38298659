"""Health: rise/fall counting, and the probes against a real listening socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from deployer.health import Monitor, Tracker, probe
from deployer.spec import HealthCheck

T = ("svc.example", "e1", "127.0.0.1", 1)


def test_one_lost_probe_does_not_flap() -> None:
    t = Tracker()
    t.seed(T, True)
    assert t.observe(T, False, rise=2, fall=3) is True
    assert t.observe(T, True, rise=2, fall=3) is True  # the streak restarts
    assert [t.observe(T, False, 2, 3) for _ in range(3)] == [True, True, False]
    assert [t.observe(T, True, 2, 3) for _ in range(2)] == [False, True]


def test_new_targets_start_unhealthy_and_seed_keeps_known_state() -> None:
    t = Tracker()
    assert t.healthy(T) is None
    assert t.observe(T, True, rise=2, fall=1) is False
    t.seed(T, False)  # known already: not reset
    assert t.observe(T, True, rise=2, fall=1) is True
    t.retain(set())
    assert t.healthy(T) is None


@pytest.fixture
async def http_server() -> AsyncIterator[tuple[int, dict[str, int]]]:
    state = {"status": 200}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"HTTP/1.0 {state['status']} X\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, state
    finally:
        server.close()
        await server.wait_closed()


async def test_http_and_tcp_probes(http_server: tuple[int, dict[str, int]]) -> None:
    port, state = http_server
    http = HealthCheck(kind="http", path="/healthz", timeout=1.0)
    assert await probe("127.0.0.1", port, http) is True
    state["status"] = 503
    assert await probe("127.0.0.1", port, http) is False
    assert await probe("127.0.0.1", port, HealthCheck(kind="tcp")) is True
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    closed = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    assert await probe("127.0.0.1", closed, HealthCheck(kind="tcp", timeout=0.5)) is False


async def test_monitor_probes_each_target_at_its_interval() -> None:
    now = [0.0]
    calls: list[str] = []

    async def fake(address: str, port: int, check: HealthCheck) -> bool:
        calls.append(address)
        return True

    m = Monitor(fake, clock=lambda: now[0])
    fast, slow = ("s", "a", "fast", 1), ("s", "b", "slow", 1)
    targets = {fast: HealthCheck(interval=1.0), slow: HealthCheck(interval=5.0)}
    for _ in range(5):
        await m.round(targets)
        now[0] += 1.0
    assert calls.count("fast") == 5 and calls.count("slow") == 1
    assert m.tracker.healthy(fast) is True and m.tracker.healthy(slow) is False  # rise 2
