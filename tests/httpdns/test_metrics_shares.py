"""``httpdns.shares``: the observed split of answers across nodes between two readings of
their counters, next to the configured one (pure; the counters are written out by hand)."""

from __future__ import annotations

import re
import subprocess
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from httpdns.errors import BadRequest
from httpdns.metrics import AnswerHistory
from httpdns.shares import (
    Observed,
    configured_dcs,
    configured_versions,
    max_delta,
    observe,
    report,
)
from httpdns.shares_api import parse_window, pick_window
from tests.servers import Node, admin_call, httpdns_command, seed_test_registry, wait_until

from .conftest import ADMIN, PAY, SHOP, SHOP_CANARY_V4, clean_env, dc_of

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


# -- the API and the CLI -------------------------------------------------------------------------


async def test_shares_api_of_one_node(served: TestClient) -> None:
    received: Counter[tuple[str, str]] = Counter()
    for i in range(200):
        resp = await served.get(f"/d?dn={SHOP}&ip=10.9.{i}.1")
        first = (await resp.text()).split(";")[0]
        received[(dc_of(first), "v2" if first in SHOP_CANARY_V4.values() else "v1")] += 1
    resp = await served.get(f"/api/v1/services/{SHOP}/shares?window=60s", headers=ADMIN)
    assert resp.status == 200
    doc = await resp.json()
    assert doc["source"] == "this node" and doc["window"] == 60 and doc["answers"] == 200
    got = {(r["dc"], r["version"]): r["answers"] for r in doc["by_dc_version"]}
    assert got == dict(received)
    dcs = {r["name"]: r for r in doc["datacenters"]}
    assert dcs["idc"]["configured"] == 50.0 and dcs["cloud"]["configured"] == 50.0
    versions = {r["name"]: r for r in doc["versions"]}
    assert versions["v2"]["configured"] == 10.0 and versions["v1"]["configured"] == 90.0
    assert versions["v2"]["answers"] == received[("idc", "v2")] + received[("cloud", "v2")]


async def test_fleet_shares_sum_every_service_per_datacenter(served: TestClient) -> None:
    received: Counter[str] = Counter()
    for name, count in ((SHOP, 120), (PAY, 80)):
        for i in range(count):
            resp = await served.get(f"/d?dn={name}&ip=10.8.{i}.1")
            received[dc_of((await resp.text()).split(";")[0])] += 1
    resp = await served.get("/api/v1/shares?window=60s", headers=ADMIN)
    assert resp.status == 200
    doc = await resp.json()
    assert doc["source"] == "this node" and doc["window"] == 60 and doc["answers"] == 200
    assert {r["name"]: r["answers"] for r in doc["datacenters"]} == dict(received)
    assert sum(r["percent"] for r in doc["datacenters"]) == pytest.approx(100, abs=0.02)
    assert {r["name"] for r in doc["datacenters"]} == {"idc", "cloud"}  # both answered
    resp = await served.get("/api/v1/shares?window=soon", headers=ADMIN)
    assert resp.status == 400 and (await resp.json())["error"] == "bad_request"
    assert (await served.get("/api/v1/shares")).status == 401


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        (f"/api/v1/services/{SHOP}/shares?window=soon", 400, "bad_request"),
        (f"/api/v1/services/{SHOP}/shares?window=0s", 400, "bad_request"),
        ("/api/v1/services/nothing.example.org/shares", 404, "not_found"),
        ("/api/v1/services/bad..name/shares", 400, None),
    ],
)
async def test_shares_api_bad_input(
    served: TestClient, path: str, status: int, code: str | None
) -> None:
    resp = await served.get(path, headers=ADMIN)
    body = await resp.json()
    assert resp.status == status and set(body) >= {"error", "detail"}
    if code is not None:
        assert body["error"] == code


@pytest.mark.parametrize(
    ("text", "seconds", "window"),
    [("5s", 5, 10), ("60s", 60, 60), ("60", 60, 60), ("2m", 120, 300), ("1h", None, None)],
)
def test_windows(text: str, seconds: int | None, window: int | None) -> None:
    if seconds is None:
        with pytest.raises(BadRequest):
            parse_window(text)
        return
    assert parse_window(text) == seconds and pick_window(seconds) == window


def test_answer_history_publishes_increments_per_window() -> None:
    now = [1000.0]
    k = (S, "idc", "v1", "stable")
    h = AnswerHistory({k: 5}, clock=lambda: now[0])
    now[0] = 1030.0
    h.record({k: 20})
    now[0] = 1065.0
    pub = h.windows({k: 50})
    assert pub["windows"]["10"] == {"seconds": 35.0, "rows": [[*k, 30]]}  # the last reading
    assert pub["windows"]["60"] == {"seconds": 65.0, "rows": [[*k, 45]]}
    assert pub["windows"]["300"]["rows"] == [[*k, 45]]


def test_cli_shares(tmp_path: Path) -> None:
    node = Node(f"sqlite:///{tmp_path}/registry.db", tmp_path)
    node.start()
    try:
        seed_test_registry(node.url)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        for i in range(50):
            with opener.open(f"{node.url}/d?dn={SHOP}&ip=10.8.{i}.1", timeout=5) as r:
                r.read()
        # heartbeats carry the answers (published at most once a second): wait for them
        wait_until(
            lambda: (
                admin_call(node.url, "GET", f"/api/v1/services/{SHOP}/shares?window=5m")[1][
                    "answers"
                ]
                == 50
            ),
            10,
            "the heartbeat to carry the answers",
        )
        env = {**clean_env(), "HTTPDNS_SERVER": node.url, "HTTPDNS_ADMIN_TOKEN": "T"}
        out = subprocess.run(
            [*httpdns_command(), "shares", SHOP, "--window", "5m"],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert f"{SHOP}: 50 answers" in out.stdout and "(fleet)" in out.stdout
        assert re.search(r"^\s+v2\s+\d+\s+[\d.]+%\s+10.00%", out.stdout, re.M), out.stdout
        bad = subprocess.run(
            [*httpdns_command(), "shares", "nothing.example.org"],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
        assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    finally:
        node.stop()


def test_shares_sum_every_node_of_the_fleet(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/registry.db"  # two nodes on one store: one fleet
    a = Node(store, tmp_path / "a").start()
    b = Node(store, tmp_path / "b").start()
    try:
        seed_test_registry(a.url)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        for node, count in ((a, 70), (b, 40)):
            for i in range(count):
                url = f"{node.url}/d?dn={SHOP}&ip=10.{7 if node is a else 6}.{i}.1"
                with opener.open(url, timeout=5) as r:
                    r.read()

        def both() -> bool:
            _, doc = admin_call(b.url, "GET", f"/api/v1/services/{SHOP}/shares?window=60s")
            return doc["answers"] == 110 and doc["nodes"] == 2 and doc["source"] == "fleet"

        wait_until(both, 15, "both nodes' answers in one report")
    finally:
        a.stop()
        b.stop()
