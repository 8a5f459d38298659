"""``httpdns.tenure``: what survives a full collection is frozen, garbage is not."""

from __future__ import annotations

import gc

from httpdns import tenure


class Node:
    """A tracked object that can be made part of a cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


def _young() -> set[int]:
    return {id(o) for o in gc.get_objects()}


def test_survivors_of_a_full_collection_are_frozen_and_garbage_is_freed() -> None:
    tenure.install()
    tenure.install()  # idempotent: one callback
    frozen_before = gc.get_freeze_count()
    try:
        assert gc.callbacks.count(tenure._after) == 1
        live = [Node() for _ in range(100)]
        dead = Node()
        dead.other = Node()
        dead.other.other = dead  # a cycle nothing refers to once ``dead`` is dropped
        gc.collect(1)  # old now (in the oldest generation); a young collection freezes nothing
        assert id(live[0]) in _young() and id(dead) in _young()
        del dead
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        assert sum(isinstance(o, Node) for o in gc.garbage) == 2  # the cycle was collected
        young = _young()
        assert not any(id(n) in young for n in live)  # the survivors: out of reach now
        assert gc.get_freeze_count() >= frozen_before + 100
        later = Node()
        later.other = later  # a cycle made after the freeze is young: collected as ever
        del later
        gc.garbage.clear()
        gc.collect(0)
        assert sum(isinstance(o, Node) for o in gc.garbage) == 1
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        tenure.uninstall()
        gc.unfreeze()
    assert tenure._after not in gc.callbacks
