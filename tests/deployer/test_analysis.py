"""``deployer.analysis``: ``[[analysis]]`` entries validated, each value judged, and what a
step does with the last values (fail aborts, no data holds until the timeout, else proceed).
Pure; ``query_prometheus`` against a real Prometheus is in
``tests/httpdns/test_metrics_prometheus.py``."""

from __future__ import annotations

import math
from typing import Any

import pytest

from deployer.analysis import Check, checks, decide, expand, judge, share_value, vector_value
from deployer.errors import SpecError

ERRORS = {"name": "errors", "prometheus": "http://p:9090", "query": "sum(x)", "max": 0.01}
SHARE = {"name": "share", "share_tolerance": 2}


def test_entries_round_trip() -> None:
    found = checks([{**ERRORS, "timeout": "2m"}, SHARE])
    assert [c.name for c in found] == ["errors", "share"]
    assert found[0].timeout == 120 and found[1].timeout == 300
    assert checks([c.to_dict() for c in found]) == found


@pytest.mark.parametrize(
    ("entry", "where"),
    [
        ({**ERRORS, "maxx": 1}, "analysis[0].maxx"),
        ({"name": "e", "prometheus": "http://p", "max": 1}, "analysis[0].query"),
        ({"name": "e", "query": "x", "max": 1}, "analysis[0].prometheus"),
        ({**ERRORS, "prometheus": "p:9090"}, "analysis[0].prometheus"),
        ({"name": "e", "prometheus": "http://p", "query": "x"}, "analysis[0]"),
        ({**ERRORS, "max": "1%"}, "analysis[0].max"),
        ({**ERRORS, "max": math.inf}, "analysis[0].max"),
        ({"share_tolerance": 2, "query": "x"}, "analysis[0]"),
        ({"share_tolerance": -1}, "analysis[0].share_tolerance"),
        ({**ERRORS, "timeout": "soon"}, "analysis[0].timeout"),
        ("errors", "analysis[0]"),
    ],
)
def test_bad_entries_name_the_key(entry: Any, where: str) -> None:
    with pytest.raises(SpecError) as err:
        checks([entry])
    assert err.value.field == where


def test_two_checks_with_one_name() -> None:
    with pytest.raises(SpecError):
        checks([ERRORS, {**ERRORS}])


@pytest.mark.parametrize(
    ("entry", "value", "verdict"),
    [
        (ERRORS, 0.0, "pass"),
        (ERRORS, 0.01, "pass"),
        (ERRORS, 0.02, "fail"),
        (ERRORS, None, "nodata"),
        (ERRORS, math.nan, "nodata"),
        ({**ERRORS, "max": None, "min": 0.99}, 0.98, "fail"),
        ({**ERRORS, "max": None, "min": 0.99}, 0.995, "pass"),
        (SHARE, 1.5, "pass"),
        (SHARE, 2.5, "fail"),
        (SHARE, None, "nodata"),
    ],
)
def test_judge(entry: dict[str, Any], value: float | None, verdict: str) -> None:
    assert judge(Check.from_dict(0, entry), value) == verdict


def test_decide_fail_aborts_nodata_holds_until_timeout() -> None:
    found = checks([{**ERRORS, "timeout": 60}, SHARE])
    assert decide(found, {"errors": 0.001, "share": 0.5}, 100, 110)[0] == "proceed"
    decision, why = decide(found, {"errors": 0.5, "share": 0.5}, 100, 110)
    assert decision == "abort" and "0.5" in why and "max 0.01" in why
    decision, why = decide(found, {"errors": None, "share": 0.5}, 100, 159)
    assert decision == "hold" and "errors" in why
    decision, why = decide(found, {"errors": None, "share": 0.5}, 100, 160)
    assert decision == "abort" and "no data for 60s" in why
    assert decide((), {}, 0, 0)[0] == "proceed"


def test_share_value_from_a_shares_document() -> None:
    doc = {
        "answers": 100,
        "versions": [{"name": "v1", "delta": 3.0}, {"name": "v2", "delta": -3.0}],
    }
    assert share_value(doc, "v2") == 3.0
    assert share_value({"answers": 0, "versions": [{"name": "v2", "delta": None}]}, "v2") is None
    assert share_value({"answers": 10, "versions": [{"name": "v1", "delta": 0}]}, "v2") == math.inf


def test_vector_value_takes_the_worst_sample() -> None:
    errors, floor = (
        Check.from_dict(0, ERRORS),
        Check.from_dict(0, {**ERRORS, "max": None, "min": 1}),
    )
    vec = {"resultType": "vector", "result": [{"value": [0, "0.5"]}, {"value": [0, "2"]}]}
    assert vector_value(vec, errors) == 2.0 and vector_value(vec, floor) == 0.5
    assert vector_value({"resultType": "vector", "result": []}, errors) is None
    assert vector_value({"resultType": "scalar", "result": [0, "NaN"]}, errors) is None
    assert vector_value({"resultType": "scalar", "result": [0, "3"]}, errors) == 3.0
    assert vector_value({"resultType": "matrix", "result": []}, errors) is None


def test_expand_names_the_rollout_in_the_query() -> None:
    check = Check.from_dict(
        0, {**ERRORS, "query": 'sum(x{s="{service}",v="{version}",p="{previous}"})'}
    )
    assert expand(check, "a.example", "v2", "v1").query == 'sum(x{s="a.example",v="v2",p="v1"})'
    share = Check.from_dict(0, SHARE)
    assert expand(share, "a.example", "v2", None) == share
