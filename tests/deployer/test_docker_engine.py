"""The Docker engine adapter on a private dockerd: two controllers replacing the same
container at once.

Docker forgets a container it removes before it releases the container's name, so a
controller creating a container under that name meanwhile is refused (409, "already in
use") and then finds nothing by that name. The adapter once took that for "created by
someone else meanwhile" and died on an assertion (the lab's two racing controllers).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployer.addresses import mac_for
from deployer.container import ContainerSpec
from deployer.docker_engine import DockerEngine
from deployer.engine import Container
from deployer.errors import EngineError
from tests.deployer.dockerd import Dockerd, free_subnets

pytestmark = pytest.mark.timeout(300)
ROUNDS = 30


@pytest.fixture
def spec(dockerd: Dockerd, tmp_path: Path) -> Iterator[ContainerSpec]:
    image = dockerd.build_image("rolling-race/app", "v1")
    subnet = free_subnets(1, "10.237")[0]
    network = dockerd.network(f"rolling-race-{os.getpid()}", subnet)
    address = str(ipaddress.IPv4Network(subnet).network_address + 10)
    yield ContainerSpec(
        name=f"rolling-race-{os.getpid()}", image=image, command=("/bin/busybox", "sleep", "600"),
        hostname="race", network=network, address=address, mac=mac_for(address),
        cpu_period=100000, cpu_quota=10000, memory=32 << 20, memory_swap=32 << 20,
        persist=str(tmp_path / "persist"), restart="no", stop_timeout=1,
    )  # fmt: skip
    for c in dockerd.api.containers(all=True, filters={"name": f"rolling-race-{os.getpid()}"}):
        dockerd.api.remove_container(c["Id"], force=True)


async def test_racing_replacements_never_crash_and_leave_one_container(
    dockerd: Dockerd, spec: ContainerSpec
) -> None:
    a, b = DockerEngine(dockerd.url), DockerEngine(dockerd.url)
    try:
        await a.run(spec)
        outcomes: dict[str, int] = {}
        for i in range(ROUNDS):
            dockerd.api.kill(spec.name)  # dead: both controllers set out to replace it

            async def replace() -> Container:
                await a.remove(spec.name)
                return await a.run(spec)

            async def start_late(delay: float) -> Container:
                await asyncio.sleep(delay)  # the other one, a little later
                return await b.run(spec)

            # Staggered: the second run lands at every moment of the first one's removal.
            results = await asyncio.gather(
                replace(), start_late((i % 10) * 0.01), return_exceptions=True
            )
            for result in results:
                # Refusals are fine (the next pass tries again); nothing else may escape.
                assert isinstance(result, Container | EngineError), repr(result)
                outcomes[type(result).__name__] = outcomes.get(type(result).__name__, 0) + 1
            found = await a.run(spec)  # the next pass: one running container, as specified
            assert found.running and found.address == spec.address, found
            assert len(dockerd.api.containers(filters={"name": spec.name})) == 1
        print(f"{ROUNDS} racing replacements: {outcomes}")
        assert outcomes.get("Container", 0) >= ROUNDS  # most runs found or made the container
    finally:
        await a.close()
        await b.close()
