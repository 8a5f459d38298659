"""The bounded FIFO cache every query-path cache is made of."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from httpdns.cache import BoundedCache


def test_entries_are_bounded_and_the_oldest_go_first() -> None:
    c: BoundedCache[int, str] = BoundedCache(3)
    for i in range(5):
        c.put(i, str(i))
    assert len(c) == 3 and [k for k, _ in c.items()] == [2, 3, 4]
    assert c.get(1) is None and c.get(4) == "4"
    assert c.evictions == 2


def test_bytes_are_bounded() -> None:
    c: BoundedCache[str, bytes] = BoundedCache(100, 10)
    c.put("a", b"", 4)
    c.put("b", b"", 4)
    c.put("c", b"", 4)  # 12 > 10: "a" goes
    assert "a" not in c and "b" in c and "c" in c and c.bytes == 8
    c.put("d", b"", 11)  # larger than the whole budget: not kept, nothing evicted for it
    assert "d" not in c and c.bytes == 8 and len(c) == 2


def test_replacing_and_popping() -> None:
    c: BoundedCache[str, int] = BoundedCache(3, 100)
    c.put("a", 1, 10)
    c.put("a", 2, 20)
    assert c.get("a") == 2 and len(c) == 1
    c.pop("a")
    c.pop("nothing")
    assert "a" not in c and len(c) == 0
    c.put("x", 9, 101)  # too large: also forgets an older value of the key
    assert c.get("x") is None
    c.clear()
    assert len(c) == 0 and c.bytes == 0
    c.put("b", 3, 5)
    assert c.get("b") == 3 and c.bytes == 5


def test_an_entry_costs_less_than_an_ordered_dict() -> None:
    n = 50_000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        c: BoundedCache[int, int] = BoundedCache(n)
        for i in range(n):
            c.put((i << 20) | 7, i & 63)
        per_entry = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert len(c) == n
    assert per_entry < 110  # an OrderedDict-based one took ~137 bytes for the same entries


ops = st.lists(
    st.tuples(
        st.sampled_from(["put", "put", "put", "pop"]),
        st.integers(0, 12),
        st.integers(0, 40),
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(ops, st.integers(1, 6), st.one_of(st.none(), st.integers(0, 60)))
def test_never_over_a_bound_and_never_a_wrong_value(
    steps: list[tuple[str, int, int]], max_entries: int, max_bytes: int | None
) -> None:
    c: BoundedCache[int, int] = BoundedCache(max_entries, max_bytes)
    last: dict[int, int] = {}
    serial = 0
    for op, key, size in steps:
        if op == "pop":
            c.pop(key)
            last.pop(key, None)
        else:
            serial += 1
            c.put(key, serial, size)
            last[key] = serial
            if max_bytes is None or size <= max_bytes:
                assert c.get(key) == serial  # what was just put is there
        assert len(c) <= max_entries
        if max_bytes is not None:
            assert 0 <= c.bytes <= max_bytes
        for k, v in c.items():
            assert last.get(k) == v  # a kept value is the latest one put


def test_the_doorkeeper_admits_on_the_second_sighting() -> None:
    from httpdns.cache import Doorkeeper

    d = Doorkeeper(1 << 16)
    assert not d.seen_before(("a", 1)) and d.seen_before(("a", 1))
    once = [("once", i) for i in range(1000)]
    assert sum(d.seen_before(k) for k in once) <= 10  # asked once: (almost) never admitted
    # every key asked twice is admitted the second time, whatever it shares bits with
    keys = [("k", i) for i in range(5000)]
    d.clear()
    assert not any(d.seen_before(k) for k in keys[:10])
    for k in keys:
        d.seen_before(k)
    assert all(d.seen_before(k) for k in keys[: 1 << 12])  # within a reset
    d.clear()
    assert not d.seen_before(("a", 1))
    with pytest.raises(ValueError):
        Doorkeeper(3)


def test_a_cache_made_before_a_freeze_is_frozen_with_its_entries() -> None:
    cache: BoundedCache[int, list[int]] = BoundedCache(100)
    assert gc.is_tracked(cache._data)  # tracked while empty: a freeze takes it
    gc.freeze()
    try:
        for i in range(50):
            cache.put(i, [i])  # container values: a dict the collector must visit
        young = {id(o) for o in gc.get_objects()}
        assert id(cache._data) not in young and id(cache._ring) not in young
    finally:
        gc.unfreeze()
