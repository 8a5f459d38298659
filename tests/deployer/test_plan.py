"""Capacity planning: containers per datacenter from the cost per 1,000 QPS."""

from __future__ import annotations

import pytest

from deployer.errors import SpecError
from deployer.plan import capacity

GIB = 1 << 30


def test_cpu_bound_split() -> None:
    rows = capacity(20_000, 1.5, 2 * GIB, (4.0, 8 * GIB), 0.3, {"idc": 70, "cloud": 30})
    by = {r.dc: r for r in rows}
    # idc: 14k QPS x 1.5 = 21 cores; 4 cores at 70 % = 2.8 usable -> 7.5 -> 8
    assert (by["idc"].cores, by["idc"].containers, by["idc"].bound) == (21, 8, "cpu")
    assert (by["cloud"].cores, by["cloud"].containers) == (9, 4)  # 9 / 2.8 = 3.2 -> 4


def test_memory_bound_and_minimum() -> None:
    (row,) = capacity(10_000, 0.1, 4 * GIB, (4.0, 8 * GIB), 0.5)
    assert (row.dc, row.containers, row.bound) == ("total", 10, "memory")  # 40g / 4g usable
    (tiny,) = capacity(10, 0.1, GIB, (4.0, 8 * GIB), 0.3)
    assert (tiny.containers, tiny.bound) == (2, "minimum")
    rows = capacity(1000, 1, GIB, (4.0, 8 * GIB), 0.3, {"idc": 100, "cloud": 0})
    assert [r.containers for r in rows] == [2, 0]  # no traffic, no minimum


@pytest.mark.parametrize(
    "kwargs", [{"headroom": 1.0}, {"headroom": -0.1}, {"split": {"a": 0}}, {"qps": -1}]
)
def test_bad_input(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"qps": 100, "cpu_per_kqps": 1, "mem_per_kqps": GIB,
                               "container": (4.0, 8 * GIB)}  # fmt: skip
    args.update(kwargs)
    with pytest.raises(SpecError):
        capacity(**args)  # type: ignore[arg-type]
