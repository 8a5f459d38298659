"""One client region: simulated devices that resolve through the Python client library
and fetch from the answered container, one JSON line per request.

Run inside the region's network namespace (``ip netns exec hdl-north python -m
lab.client ...``) so the nodes see the region's addresses and steer by them. Each device
has its own ``AsyncResolver`` with ``uid=DEVICE`` (the stickiness key), the region's
own node first and the other datacenter's node second (failover), and fetches
``http://ADDRESS:PORT/`` whose body is ``SERVICE VERSION DC``. A fetch tries every
address of the answer before it counts as failed; nothing else is retried, so a failure
here is a failure a real app would have seen.

Stops on SIGTERM/SIGINT, flushing what it wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sys
import time
from typing import IO, Any

from httpdns_client import AsyncResolver


class FetchError(Exception):
    """Every address of an answer failed (or the answer was empty)."""


async def fetch(addresses: tuple[str, ...], port: int, timeout: float) -> tuple[str, str, str]:
    """GET / from the first address that answers; ``(service, version, dc)``."""
    if not addresses:
        raise FetchError("empty answer")
    errors = []
    for address in addresses:
        try:
            return await asyncio.wait_for(_get(address, port), timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            errors.append(f"{address}: {type(exc).__name__} {exc}".strip())
    raise FetchError("; ".join(errors))


async def _get(address: str, port: int) -> tuple[str, str, str]:
    reader, writer = await asyncio.open_connection(address, port)
    try:
        writer.write(f"GET / HTTP/1.0\r\nHost: {address}\r\n\r\n".encode())
        await writer.drain()
        raw = await reader.read(65536)  # HTTP/1.0: the server closes after the body
        while chunk := await reader.read(65536):
            raw += chunk
            if len(raw) > 65536:
                raise ValueError("reply over 64 KiB")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
        raise ValueError(f"bad reply {head[:40]!r}")
    parts = body.decode(errors="replace").split()
    if len(parts) != 3:
        raise ValueError(f"bad body {body[:60]!r}")
    return parts[0], parts[1], parts[2]


async def device(
    region: str,
    index: int,
    servers: list[str],
    names: list[str],
    port: int,
    interval: float,
    out: IO[str],
    stop: asyncio.Event,
) -> None:
    """One device's loop: resolve a name (in turn), fetch, write one line; until ``stop``."""
    client = f"{region}-{index:03d}"
    rng = random.Random(client)
    resolver = AsyncResolver(
        servers,
        uid=client,
        timeout=1.0,
        lookup_timeout=3.0,
        backoff=0.5,
        max_backoff=5.0,
        system_fallback=False,  # a system answer would hide a failure of the service
    )
    await asyncio.sleep(rng.uniform(0, interval))  # spread the devices over the interval
    turn = index
    async with resolver:
        while not stop.is_set():
            name = names[turn % len(names)]
            turn += 1
            record: dict[str, Any] = {"t": round(time.time(), 3), "client": client, "name": name}
            try:
                answer = await resolver.resolve(name)
                service, version, dc = await fetch(answer.addresses, port, 1.0)
                if service != name:
                    raise FetchError(f"{answer.addresses} served {service}, not {name}")
                record.update(ok=True, dc=dc, version=version, source=str(answer.source))
            except Exception as exc:  # every failure is data: it goes into the report
                record.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:300])
            out.write(json.dumps(record) + "\n")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval * rng.uniform(0.8, 1.2))


async def run(args: argparse.Namespace) -> None:
    """Start the devices; stop them all on SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with open(args.out, "a", buffering=1) as out:
        await asyncio.gather(
            *(
                device(args.region, i, args.server, args.name, args.port, args.interval, out, stop)
                for i in range(args.devices)
            )
        )


def main(argv: list[str] | None = None) -> int:
    """``python -m lab.client --region R --server URL... --name N... --out FILE``."""
    parser = argparse.ArgumentParser(prog="lab.client")
    parser.add_argument("--region", required=True)
    parser.add_argument("--server", action="append", required=True)
    parser.add_argument("--name", action="append", required=True)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--devices", type=int, default=40)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--out", required=True)
    asyncio.run(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
