"""The Store contract: every backend in conftest.STORE_FACTORIES must pass the first part.

The second part covers what only a SQLite file can do: survive a reopen and be
shared by several stores (processes) that see each other's writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import registry
from registry import Change, ChangeSet, Datacenter, Endpoint, Region, Release, Service, Store

SVC = "api.example.com"
WEB = "web.example.com"
WAIT = 5.0  # upper bound for anything awaited; a healthy store answers in milliseconds
QUIET = 0.2  # how long a watcher must stay silent when nothing was written


def dc(name: str, **body: Any) -> Change:
    return Change.put(Datacenter.from_dict(name, body))


def svc(name: str = SVC, traffic: dict[str, dict[str, int]] | None = None) -> Change:
    return Change.put(Service.from_dict(name, {"traffic": traffic or {"default": {"dc1": 100}}}))


def ep(eid: str, dc: str = "dc1", address: str = "10.0.0.1", service: str = SVC) -> Change:
    return Change.put(Endpoint.from_dict(service, eid, {"dc": dc, "address": address}))


def seed() -> list[Change]:
    return [
        dc("dc1"),
        dc("dc2", kind="cloud", writable=False),
        Change.put(Region.from_dict("eu", {"cidrs": ["10.0.0.0/8", "2001:db8::/32"]})),
        svc(SVC, {"default": {"dc1": 100, "dc2": 0}, "eu": {"dc2": 100}}),
        ep("e1", "dc1", "10.0.0.1"),
        ep("e2", "dc2", "2001:db8::2"),
        Change.put(Release.from_dict(SVC, {"stable": "v1", "canary": "v2", "canary_percent": 5})),
    ]


async def next_batch(feed: AsyncIterator[ChangeSet]) -> ChangeSet:
    return await asyncio.wait_for(anext(feed), WAIT)


async def assert_quiet(pending: asyncio.Task[ChangeSet]) -> None:
    """Nothing arrives while nothing is written.

    This is an assertion, not a pause: but it also means the watcher has caught up and is
    waiting, so the write that follows must wake it rather than be found by its first read.
    """
    done, _ = await asyncio.wait({pending}, timeout=QUIET)
    assert not done, pending.result()


# -- the contract: every backend --------------------------------------------------------------


async def test_new_store_is_empty(store: Store) -> None:
    snap = await store.snapshot()
    assert snap == registry.Snapshot()
    assert await store.audit() == []


async def test_apply_returns_changeset_with_next_revision(store: Store) -> None:
    changes = seed()
    cs = await store.apply(changes, actor="alice")
    assert cs.revision == 1
    assert cs.changes == tuple(changes)
    assert cs.actor == "alice"
    cs2 = await store.apply([ep("e3", address="10.0.0.3")])
    assert cs2.revision == 2
    assert cs2.services == frozenset({SVC})
    assert (await store.snapshot()).revision == 2


async def test_snapshot_reflects_applied_changes(store: Store) -> None:
    await store.apply(seed())
    snap = await store.snapshot()
    assert snap.revision == 1
    assert set(snap.datacenters) == {"dc1", "dc2"}
    assert snap.datacenters["dc2"].writable is False
    assert snap.regions["eu"].cidrs == ("10.0.0.0/8", "2001:db8::/32")
    assert snap.services[SVC].traffic == {"default": {"dc1": 100, "dc2": 0}, "eu": {"dc2": 100}}
    assert snap.endpoints_of(SVC)["e2"].address == "2001:db8::2"
    assert snap.releases[SVC].canary_percent == 5

    await store.apply([Change.delete("endpoint", f"{SVC}/e1"), ep("e2", "dc1", "10.0.0.2")])
    snap = await store.snapshot()
    assert set(snap.endpoints_of(SVC)) == {"e2"}
    assert snap.endpoints_of(SVC)["e2"].dc == "dc1"


async def test_snapshot_taken_earlier_does_not_change(store: Store) -> None:
    await store.apply(seed())
    old = await store.snapshot()
    before = old.to_dict()
    await store.apply([ep("e3", address="10.0.0.3"), Change.delete("endpoint", f"{SVC}/e1")])
    assert old.to_dict() == before
    assert (await store.snapshot()).revision == 2


async def test_service_delete_reports_its_cascade(store: Store) -> None:
    await store.apply(seed())
    cs = await store.apply([Change.delete("service", SVC)])
    assert set(cs.changes) == {
        Change.delete("endpoint", f"{SVC}/e1"),
        Change.delete("endpoint", f"{SVC}/e2"),
        Change.delete("release", SVC),
        Change.delete("service", SVC),
    }
    snap = await store.snapshot()
    assert SVC not in snap.services
    assert snap.endpoints_of(SVC) == {}
    assert SVC not in snap.releases
    assert (await store.audit(since=1)) == [cs]


async def test_stale_expected_revision_conflicts_and_stores_nothing(store: Store) -> None:
    await store.apply(seed())
    await store.apply([ep("e3", address="10.0.0.3")])
    before = await store.snapshot()
    with pytest.raises(registry.ConflictError) as info:
        await store.apply([dc("dc9")], expected_revision=1)
    assert type(info.value) is registry.ConflictError
    assert info.value.status == 409
    after = await store.snapshot()
    assert after.revision == 2
    assert after == before
    assert "dc9" not in after.datacenters
    assert [cs.revision for cs in await store.audit()] == [1, 2]


async def test_expected_revision_ahead_of_the_store_conflicts(store: Store) -> None:
    await store.apply(seed())
    with pytest.raises(registry.ConflictError):
        await store.apply([dc("dc9")], expected_revision=5)
    assert (await store.snapshot()).revision == 1


async def test_current_expected_revision_succeeds(store: Store) -> None:
    cs1 = await store.apply(seed(), expected_revision=0)
    assert cs1.revision == 1
    cs2 = await store.apply([dc("dc9")], expected_revision=1)
    assert cs2.revision == 2
    assert "dc9" in (await store.snapshot()).datacenters


async def test_concurrent_compare_and_set_has_exactly_one_winner(store: Store) -> None:
    await store.apply(seed())
    results = await asyncio.gather(
        *(store.apply([dc(f"dc{i}")], expected_revision=1, actor=f"w{i}") for i in range(3, 7)),
        return_exceptions=True,
    )
    wins = [r for r in results if isinstance(r, ChangeSet)]
    assert len(wins) == 1, results
    assert all(isinstance(r, registry.ConflictError) for r in results if r not in wins), results
    snap = await store.snapshot()
    assert snap.revision == 2
    assert set(snap.datacenters) == {"dc1", "dc2", f"dc{wins[0].actor[1:]}"}


async def test_service_can_be_replaced_wholesale_in_one_batch(store: Store) -> None:
    await store.apply(seed())
    cs = await store.apply([Change.delete("service", SVC), svc(SVC), ep("n1", "dc1", "10.0.0.5")])
    assert cs.revision == 2
    snap = await store.snapshot()
    assert set(snap.endpoints_of(SVC)) == {"n1"}
    assert SVC not in snap.releases


BAD_LAST = [
    pytest.param(ep("x1", dc="dc9", service="new.example.com"), registry.ValidationError, id="dc"),
    pytest.param(ep("x1", service="nope.example.com"), registry.NotFoundError, id="service"),
    pytest.param(Change.delete("endpoint", f"{SVC}/e9"), registry.NotFoundError, id="delete"),
    pytest.param(Change.delete("datacenter", "dc1"), registry.InUseError, id="in-use"),
    pytest.param(
        svc(WEB, {"default": {"dc1": 1}, "asia": {"dc1": 1}}), registry.ValidationError, id="region"
    ),
]


@pytest.mark.parametrize("expected_revision", [None, 1])
@pytest.mark.parametrize(("bad", "error"), BAD_LAST)
async def test_batch_with_an_invalid_last_item_stores_nothing(
    store: Store, bad: Change, error: type[Exception], expected_revision: int | None
) -> None:
    await store.apply(seed())
    before = await store.snapshot()
    batch = [
        dc("dc3", kind="cloud"),
        svc("new.example.com", {"default": {"dc3": 1}}),
        ep("n1", "dc3", "10.0.0.7", service="new.example.com"),
        Change.delete("endpoint", f"{SVC}/e1"),
        bad,
    ]
    with pytest.raises(error):
        await store.apply(batch, expected_revision=expected_revision)
    after = await store.snapshot()
    assert after == before
    assert after.revision == 1
    assert "dc3" not in after.datacenters
    assert "e1" in after.endpoints_of(SVC)
    assert len(await store.audit()) == 1
    # The failed batch did not use up a revision either.
    assert (await store.apply([dc("dc4")], expected_revision=1)).revision == 2


async def test_watch_yields_later_batches_in_order_then_new_ones(store: Store) -> None:
    first = await store.apply(seed())
    second = await store.apply([ep("e3", address="10.0.0.3")], actor="bob")
    third = await store.apply([Change.delete("endpoint", f"{SVC}/e1")])
    async with contextlib.aclosing(store.watch(first.revision)) as feed:
        assert await next_batch(feed) == second
        assert await next_batch(feed) == third
        pending = asyncio.create_task(next_batch(feed))
        await assert_quiet(pending)
        fourth = await store.apply([ep("e4", address="10.0.0.4")], actor="carol")
        assert await pending == fourth
        fifth = await store.apply([dc("dc9")])
        assert await next_batch(feed) == fifth


async def test_watch_from_zero_replays_everything(store: Store) -> None:
    applied = [await store.apply([dc(f"dc{i}")]) for i in range(1, 6)]
    async with contextlib.aclosing(store.watch(0)) as feed:
        assert [await next_batch(feed) for _ in applied] == applied


async def test_every_watcher_gets_each_new_batch(store: Store) -> None:
    await store.apply(seed())
    async with (
        contextlib.aclosing(store.watch(1)) as feed_a,
        contextlib.aclosing(store.watch(1)) as feed_b,
    ):
        pending = [asyncio.create_task(next_batch(f)) for f in (feed_a, feed_b)]
        for p in pending:
            await assert_quiet(p)
        cs = await store.apply([ep("e3", address="10.0.0.3")])
        assert await asyncio.gather(*pending) == [cs, cs]


async def test_audit_returns_actor_time_changes_revision(store: Store) -> None:
    t0 = time.time()
    changes1 = seed()
    cs1 = await store.apply(changes1, actor="alice")
    changes2 = [Change.delete("endpoint", f"{SVC}/e2"), dc("dc3")]
    cs2 = await store.apply(changes2, actor="bob")
    t1 = time.time()

    log = await store.audit()
    assert [(cs.revision, cs.actor, cs.changes) for cs in log] == [
        (1, "alice", tuple(changes1)),
        (2, "bob", tuple(changes2)),
    ]
    assert all(t0 - 1 <= cs.time <= t1 + 1 for cs in log)
    assert log[0].time <= log[1].time
    assert log == [cs1, cs2]
    assert await store.audit(since=1) == [cs2]
    assert await store.audit(since=2) == []
    assert await store.audit(since=0, limit=1) == [cs1]


async def test_close_releases_the_store_and_its_watchers(store: Store) -> None:
    await store.apply(seed())
    feed = store.watch(1)
    pending = asyncio.create_task(next_batch(feed))
    await assert_quiet(pending)
    await store.close()
    # A watcher waiting for news ends instead of hanging.
    with pytest.raises((StopAsyncIteration, registry.StoreUnavailableError)):
        await pending
    with pytest.raises(registry.StoreUnavailableError):
        await store.snapshot()
    with pytest.raises(registry.StoreUnavailableError):
        await store.apply([dc("dc9")])
    await store.close()  # closing twice is harmless
    await feed.aclose()


# -- SQLite file only -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def opened(url: str) -> AsyncIterator[Store]:
    s = await registry.open_store(url)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/r.db"


async def test_reopening_a_file_store_keeps_everything(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/not/yet/there/r.db"  # missing directories are created
    async with opened(url) as a:
        await a.apply(seed(), actor="alice")
        await a.apply([svc(WEB), ep("w1", address="10.0.0.8", service=WEB)], actor="bob")
        await a.apply([Change.delete("endpoint", f"{SVC}/e1"), dc("dc3", drained=True)])
        await a.apply([Change.delete("service", SVC)])  # cascades to e2 and the release
        before = await a.snapshot()
        history = await a.audit()
    assert (tmp_path / "not/yet/there/r.db").is_file()

    async with opened(url) as b:
        after = await b.snapshot()
        assert after == before
        assert after.to_dict() == before.to_dict()
        assert after.revision == 4
        assert await b.audit() == history
        cs = await b.apply([dc("dc4")], expected_revision=4)
        assert cs.revision == 5


async def test_second_store_sees_writes_through_snapshot(url: str) -> None:
    async with opened(url) as a, opened(url) as b:
        await a.apply(seed())
        assert await b.snapshot() == await a.snapshot()
        # Both share one revision: b writes on top of a's write, and a sees it.
        cs = await b.apply([ep("e3", address="10.0.0.3")], expected_revision=1)
        assert cs.revision == 2
        snap_a = await a.snapshot()
        assert snap_a.revision == 2
        assert "e3" in snap_a.endpoints_of(SVC)
        assert snap_a == await b.snapshot()


async def test_second_store_sees_writes_through_watch(url: str) -> None:
    async with opened(url) as a, opened(url) as b:
        first = await a.apply(seed())
        async with contextlib.aclosing(b.watch(0)) as feed:
            assert await next_batch(feed) == first
            pending = asyncio.create_task(next_batch(feed))
            await assert_quiet(pending)
            second = await a.apply([ep("e3", address="10.0.0.3")], actor="other-process")
            assert await pending == second
            # b's own writes and a's interleave in revision order on b's feed.
            third = await b.apply([dc("dc3")])
            fourth = await a.apply([dc("dc4")])
            assert [await next_batch(feed), await next_batch(feed)] == [third, fourth]
        assert await b.snapshot() == await a.snapshot()


async def test_compare_and_set_across_stores_has_exactly_one_winner(url: str) -> None:
    async with opened(url) as a, opened(url) as b:
        await a.apply(seed())
        for round_ in range(5):
            rev = (await a.snapshot()).revision
            results = await asyncio.gather(
                a.apply([dc(f"a{round_}")], expected_revision=rev, actor="a"),
                b.apply([dc(f"b{round_}")], expected_revision=rev, actor="b"),
                return_exceptions=True,
            )
            wins = [r for r in results if isinstance(r, ChangeSet)]
            conflicts = [r for r in results if isinstance(r, registry.ConflictError)]
            assert len(wins) == 1, results
            assert len(conflicts) == 1, results
            assert wins[0].revision == rev + 1
            loser = "b" if wins[0].actor == "a" else "a"
            for s in (a, b):
                snap = await s.snapshot()
                assert snap.revision == rev + 1
                assert f"{wins[0].actor}{round_}" in snap.datacenters
                assert f"{loser}{round_}" not in snap.datacenters
        assert [cs.revision for cs in await b.audit()] == list(range(1, 7))


async def test_concurrent_writes_across_stores_without_cas_are_serialised(url: str) -> None:
    async with opened(url) as a, opened(url) as b:
        results = await asyncio.gather(
            *(s.apply([dc(f"{name}{i}")]) for i in range(5) for name, s in (("a", a), ("b", b)))
        )
        assert sorted(cs.revision for cs in results) == list(range(1, 11))
        snap = await a.snapshot()
        assert snap.revision == 10
        assert len(snap.datacenters) == 10
        assert snap == await b.snapshot()


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("", id="a-directory"),
        pytest.param("/plain-file/sub/r.db", id="under-a-file"),
        pytest.param("/plain-file", id="not-a-database"),
    ],
)
async def test_unusable_file_is_store_unavailable(tmp_path: Path, path: str) -> None:
    (tmp_path / "plain-file").write_text("this is not an SQLite database\n" * 200)
    with pytest.raises(registry.StoreUnavailableError):
        await registry.open_store(f"sqlite:///{tmp_path}{path}")
    assert (tmp_path / "plain-file").read_text().startswith("this is not")


@pytest.mark.parametrize(
    "bad_url",
    ["sqlite:/x", "postgres://x", "sqlite://x", "sqlite:///", "file:///tmp/r.db", ""],
)
async def test_bad_store_url_is_a_validation_error(bad_url: str) -> None:
    with pytest.raises(registry.ValidationError) as info:
        await registry.open_store(bad_url)
    assert info.value.field == "store"
