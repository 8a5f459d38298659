"""``httpdns.shares``: the observed split of answers across nodes between two readings of
their counters, next to the configured one (pure; the counters are written out by hand)."""

from __future__ import annotations

import pytest

from httpdns.shares import (
    Observed,
    configured_dcs,
    configured_versions,
    max_delta,
    observe,
    report,
)

S = "shop.example.org"


def test_deltas_are_summed_over_nodes_per_dc_and_version() -> None:
    before = {
        "a": {(S, "idc", "v1", "stable"): 100, (S, "cloud", "v1", "stable"): 50},
        "b": {(S, "idc", "v1", "stable"): 10},
    }
    after = {
        "a": {
            (S, "idc", "v1", "stable"): 160,
            (S, "cloud", "v1", "stable"): 90,
            (S, "idc", "v2", "canary"): 10,
            ("other.example.org", "idc", "v1", "stable"): 999,
        },
        "b": {(S, "idc", "v1", "stable"): 40, (S, "cloud", "v1", "stable"): 20},
    }
    o = observe(S, before, after, 60)
    assert dict(o.counts) == {("idc", "v1"): 90, ("cloud", "v1"): 60, ("idc", "v2"): 10}
    assert o.total == 160 and o.nodes == 2 and o.seconds == 60


def test_restarted_new_and_gone_nodes() -> None:
    before = {"a": {(S, "idc", "v1", "stable"): 500}, "gone": {(S, "idc", "v1", "stable"): 7}}
    after = {"a": {(S, "idc", "v1", "stable"): 30}, "new": {(S, "cloud", "v1", "stable"): 5}}
    o = observe(S, before, after, 10)
    # a restarted (counter went down): everything since; new: from zero; gone: nothing
    assert dict(o.counts) == {("idc", "v1"): 30, ("cloud", "v1"): 5}


@pytest.mark.parametrize(
    ("traffic", "usable", "expected"),
    [
        ({"idc": 70, "cloud": 30}, ["idc", "cloud"], {"idc": 70.0, "cloud": 30.0}),
        ({"idc": 70, "cloud": 30}, ["idc"], {"idc": 100.0}),  # cloud drained
        ({"idc": 0, "cloud": 30}, ["idc", "cloud"], {"cloud": 100.0}),
        ({"idc": 1, "cloud": 3}, ["idc", "cloud"], {"idc": 25.0, "cloud": 75.0}),
        ({"idc": 50}, [], {}),
    ],
)
def test_configured_dcs(
    traffic: dict[str, int], usable: list[str], expected: dict[str, float]
) -> None:
    assert configured_dcs(traffic, usable) == expected


@pytest.mark.parametrize(
    ("stable", "canary", "percent", "expected"),
    [
        ("v1", None, 0, {"v1": 100.0}),
        ("v1", "v2", 10, {"v1": 90.0, "v2": 10.0}),
        ("v1", "v2", 0, {"v1": 100.0}),
        ("v1", "v2", 100, {"v2": 100.0}),
        ("v1", "v1", 50, {"v1": 100.0}),
        (None, None, 0, {"none": 100.0}),
    ],
)
def test_configured_versions(
    stable: str | None, canary: str | None, percent: float, expected: dict[str, float]
) -> None:
    assert configured_versions(stable, canary, percent) == expected


def test_report_sets_observed_next_to_configured() -> None:
    o = Observed(S, {("idc", "v1"): 630, ("cloud", "v1"): 270, ("idc", "v2"): 100}, 60.0, 3)
    doc = report(o, {"idc": 70.0, "cloud": 30.0}, {"v1": 90.0, "v2": 10.0})
    assert doc["answers"] == 1000 and doc["nodes"] == 3 and doc["window_seconds"] == 60
    dcs = {r["name"]: r for r in doc["datacenters"]}
    assert dcs["idc"]["percent"] == 73.0 and dcs["idc"]["configured"] == 70.0
    assert dcs["idc"]["delta"] == 3.0 and dcs["cloud"]["delta"] == -3.0
    versions = {r["name"]: r for r in doc["versions"]}
    assert versions["v2"]["percent"] == 10.0 and versions["v2"]["delta"] == 0.0
    assert max_delta(doc, "datacenters") == 3.0
    assert max_delta(doc) == 0.0
    assert {(r["dc"], r["version"]) for r in doc["by_dc_version"]} == {
        ("idc", "v1"),
        ("cloud", "v1"),
        ("idc", "v2"),
    }


def test_no_answers_is_no_data_not_zero() -> None:
    doc = report(Observed(S, {}, 60.0, 2), {"idc": 100.0}, {"v1": 100.0})
    assert doc["answers"] == 0
    assert doc["datacenters"] == [
        {"name": "idc", "answers": 0, "percent": None, "configured": 100.0, "delta": None}
    ]
    assert max_delta(doc) is None
