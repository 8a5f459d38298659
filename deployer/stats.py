"""Resource figures of many containers at once: cgroup files where the Docker host is
this machine, the Docker stats API (in parallel, bounded) elsewhere.

CPU is a rate, so the cgroup path reads every container twice, ``interval`` apart, and
everything in between is file reads: a thousand containers take one walk of the
cgroup tree and two passes of small reads. The API path costs about a second per
container on the Docker side (it samples twice itself), so it runs ``concurrency``
requests at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

from .cgroup import PROC, Layout, Sample
from .engine import Container, Engine, Stats
from .errors import EngineError

INTERVAL = 0.5  # seconds between the two cgroup samples (the CPU rate's window)
CONCURRENCY = 16  # Docker stats API requests in flight per host
WORKERS = 4  # threads reading cgroup files


def between(a: Sample, b: Sample) -> Stats:
    """The figures of a container from two samples (CPU as a rate over their interval)."""
    elapsed = max(b.time - a.time, 1e-9)
    cpu = max(b.cpu_usage_ns - a.cpu_usage_ns, 0) / 1e9 / elapsed * 100
    return Stats(
        cpu_percent=round(cpu, 2),
        memory_bytes=b.memory_bytes,
        memory_limit_bytes=b.memory_limit,
        net_rx_bytes=b.net_rx_bytes,
        net_tx_bytes=b.net_tx_bytes,
        blkio_read_bytes=b.blkio_read_bytes,
        blkio_write_bytes=b.blkio_write_bytes,
        pids=b.pids,
        tcp_connections=b.tcp_connections,
        cpu_throttled_periods=b.cpu_throttled_periods,
        cpu_throttled_seconds=round(b.cpu_throttled_ns / 1e9, 3),
        oom_kills=b.oom_kills,
        cpu_quota=b.cpu_quota,
        cpu_period=b.cpu_period,
        tcp_states=dict(b.tcp),
    )


def local(host: str) -> bool:
    """Whether the Docker host is this machine (its cgroup files are readable here)."""
    return host.startswith("unix://")


async def read_cgroups(
    layout: Layout,
    paths: dict[str, str],
    *,
    interval: float = INTERVAL,
    proc: str = PROC,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Stats]:
    """Figures for ``name -> cgroup path``: two passes of file reads, ``interval`` apart."""

    names = list(paths)
    chunks = [names[i::WORKERS] for i in range(WORKERS)]

    def first_pass(chunk: list[str]) -> dict[str, Sample]:
        return {n: layout.read_cpu(paths[n], clock()) for n in chunk}

    def second_pass(chunk: list[str]) -> dict[str, Sample]:
        out = {}
        for n in chunk:
            pid = layout.main_pid(paths[n])
            if pid:  # a container without a process has exited meanwhile
                out[n] = layout.read(paths[n], clock(), pid, proc)
        return out

    # threads: the kernel's work behind each read runs without the GIL
    first: dict[str, Sample] = {}
    for part in await asyncio.gather(*(asyncio.to_thread(first_pass, c) for c in chunks)):
        first.update(part)
    await asyncio.sleep(interval)
    second: dict[str, Sample] = {}
    for part in await asyncio.gather(*(asyncio.to_thread(second_pass, c) for c in chunks)):
        second.update(part)
    return {n: between(first[n], second[n]) for n in names if n in second}


async def collect(
    engine: Engine,
    containers: Sequence[Container],
    *,
    interval: float = INTERVAL,
    concurrency: int = CONCURRENCY,
    layout: Layout | None = None,
    proc: str = PROC,
) -> dict[str, Stats]:
    """Figures of the running ``containers`` of one host, by name: from cgroup files for
    those found on this machine, from the Docker stats API for the rest."""
    running = [c for c in containers if c.running]
    paths: dict[str, str] = {}
    if layout is None and local(engine.host):
        layout = await asyncio.to_thread(Layout.detect)
    if layout is not None:
        index = await asyncio.to_thread(layout.index)
        paths = {c.name: index[c.id] for c in running if c.id in index}
    rest = [c for c in running if c.name not in paths]
    gate = asyncio.Semaphore(concurrency)
    out: dict[str, Stats] = {}

    async def api(c: Container) -> None:
        async with gate:
            with contextlib.suppress(EngineError):  # gone meanwhile
                out[c.name] = await engine.stats(c.name)

    async def files() -> None:
        if layout is not None and paths:
            out.update(await read_cgroups(layout, paths, interval=interval, proc=proc))

    await asyncio.gather(files(), *(api(c) for c in rest))
    return out
