"""Fixtures for the registry tests.

``store`` runs every test that uses it once per backend in ``STORE_FACTORIES``,
so test_store_contract.py is the contract each backend must pass.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

import registry

# A store factory takes the test's request and tmp_path and returns an async context manager
# that yields an open, EMPTY store (revision 0) and closes and cleans it up on exit.
StoreFactory = Callable[
    [pytest.FixtureRequest, Path], contextlib.AbstractAsyncContextManager[registry.Store]
]
_prefixes = itertools.count()


@contextlib.asynccontextmanager
async def sqlite_memory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[registry.Store]:
    store = await registry.open_store("sqlite://:memory:")
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def sqlite_file(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[registry.Store]:
    store = await registry.open_store(f"sqlite:///{tmp_path}/r.db")
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def redis_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[registry.Store]:
    """A real redis-server (session-wide); each test gets its own key prefix."""
    server = request.getfixturevalue("redis_server")
    store = await registry.open_store(f"{server.url}?prefix=t{next(_prefixes)}:")
    try:
        yield store
    finally:
        await store.close()


# Every backend the contract suite runs against. To add one, write a factory like those above
# and append it here; nothing else changes.
STORE_FACTORIES: list[object] = [
    pytest.param(sqlite_memory, id="sqlite-memory"),
    pytest.param(sqlite_file, id="sqlite-file"),
    pytest.param(redis_db, id="redis"),
]


@pytest.fixture(params=STORE_FACTORIES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[registry.Store]:
    """An open, empty store of each backend in turn."""
    factory: StoreFactory = request.param
    async with factory(request, tmp_path) as s:
        yield s
