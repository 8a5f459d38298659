"""Fixtures for the deployer tests: an in-memory world for the controller, and (for the
end-to-end tests) a private dockerd; see ``dockerd.py``."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.deployer.dockerd import Dockerd, free_subnets
from tests.deployer.fakes import World


@pytest.fixture
async def world() -> AsyncIterator[World]:
    """A seeded in-memory world: datacenters idc and cloud, service api.example.com."""
    async with World.opened("sqlite://:memory:") as w:
        yield w


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Dockerd]:
    """A private dockerd for the session (skipped only when the binary is absent); every
    container, network and image the tests made is removed before it stops."""
    if shutil.which("dockerd") is None:
        pytest.skip("dockerd is not installed (scripts/install installs docker.io)")
    daemon = Dockerd()
    try:
        daemon.start(free_subnets(1, "10.232")[0])
        yield daemon
    finally:
        daemon.cleanup()
        daemon.stop()
