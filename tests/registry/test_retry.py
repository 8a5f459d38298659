"""The one compare-and-set retry loop (registry.retry), against a real SQLite store."""

from __future__ import annotations

import pytest

import registry
from registry.changes import Change
from registry.errors import ConflictError
from registry.model import Datacenter
from registry.retry import record, retry_conflicts
from registry.snapshot import Snapshot


async def test_retry_gives_up_after_its_time_naming_the_last_conflict() -> None:
    now = [0.0]
    calls = 0

    async def attempt() -> int:
        nonlocal calls
        calls += 1
        now[0] += 1.0
        raise ConflictError("moved")

    with pytest.raises(ConflictError, match=r"gave up .*moved"):
        await retry_conflicts(attempt, retry_for=3.0, clock=lambda: now[0])
    assert calls == 4


async def test_a_final_conflict_is_not_retried() -> None:
    calls = 0

    async def attempt() -> int:
        nonlocal calls
        calls += 1
        raise ConflictError("if-match")

    with pytest.raises(ConflictError, match="if-match"):
        await retry_conflicts(attempt, retryable=lambda exc: False)
    assert calls == 1


async def test_record_recomputes_when_another_writer_moved_the_registry() -> None:
    store = await registry.open_store("sqlite://:memory:")
    try:
        seen: list[int] = []

        def build(snap: Snapshot) -> list[Change]:
            seen.append(snap.revision)
            return [Change.put(Datacenter("dc1", "idc", True, False))]

        real = store.apply

        async def racing(changes, *, expected_revision=None, actor="x"):  # type: ignore[no-untyped-def]
            if len(seen) == 1:  # someone else commits between our read and our write
                await real([Change.put(Datacenter("other", "idc", True, False))], actor="rival")
            return await real(changes, expected_revision=expected_revision, actor=actor)

        snap, cs = await record(store.snapshot, racing, build, "me")
        assert seen == [0, 1]
        assert snap.revision == 1 and cs.revision == 2
    finally:
        await store.close()


async def test_record_with_if_match_is_final() -> None:
    store = await registry.open_store("sqlite://:memory:")
    try:
        await store.apply([Change.put(Datacenter("dc1", "idc", True, False))])
        with pytest.raises(ConflictError, match="expected revision 0"):
            await record(store.snapshot, store.apply, lambda s: [], "me", expected_revision=0)
    finally:
        await store.close()
