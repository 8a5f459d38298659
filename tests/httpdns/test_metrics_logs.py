"""Structured logs: ``serve --log-format json`` writes one JSON object per line, with a line
per registry change applied, per endpoint health flip and per sampled query
(``--query-log-sample``); rollout events from the change log (in-process)."""

from __future__ import annotations

import json
import logging
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from httpdns.jsonlog import ChangeLog, JsonFormatter, QueryLog
from registry.changes import Change, ChangeSet
from registry.model import Rollout
from registry.snapshot import Snapshot
from tests.servers import Node, admin_call, seed_test_registry, wait_until

from .conftest import SHOP


def lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for raw in path.read_text().splitlines():
        if raw.strip():
            out.append(json.loads(raw))  # every line is JSON: this raises otherwise
    return out


def test_json_log_lines_for_changes_flips_and_sampled_queries(tmp_path: Path) -> None:
    node = Node(
        f"sqlite:///{tmp_path}/registry.db",
        tmp_path,
        args=("--log-format", "json", "--query-log-sample", "0.02"),
    )
    node.start()
    try:
        seed_test_registry(node.url)
        status, _ = admin_call(
            node.url,
            "PUT",
            f"/api/v1/services/{SHOP}/endpoints/idc-0",
            {"dc": "idc", "address": "192.0.2.1", "port": 443, "version": "v1", "healthy": False},
        )
        assert status == 200
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        for _ in range(3 * 64):
            with opener.open(f"{node.url}/d?dn={SHOP}&ip=203.0.113.9", timeout=5) as r:
                r.read()

        def logged() -> bool:
            events = [x.get("event") for x in lines(node.log)]
            return "health" in events and events.count("query") >= 2

        wait_until(logged, 10, "health and query lines")
        records = lines(node.log)
        changes = [x for x in records if x.get("event") == "registry_change"]
        assert changes and all({"revision", "actor", "verbs"} <= set(x) for x in changes)
        last = changes[-1]
        assert last["verbs"] == [f"put endpoint/{SHOP}/idc-0"]
        assert [x["revision"] for x in changes] == sorted({x["revision"] for x in changes})
        flip = next(x for x in records if x.get("event") == "health")
        assert flip["service"] == SHOP and flip["endpoint"] == "idc-0"
        assert flip["healthy"] is False
        query = next(x for x in records if x.get("event") == "query")
        assert query["dialect"] == "dnspod" and query["rcode"] == "NOERROR"
        assert query["answers"][0]["service"] == SHOP and query["seconds"] > 0
        assert all({"time", "level", "logger", "message"} <= set(x) for x in records)
    finally:
        node.stop()


def test_rollout_events_are_one_line_each(caplog: pytest.LogCaptureFixture) -> None:
    old = Rollout(SHOP, "r1", "v2", phase="canary", step=0, events=({"message": "started"},))
    new = Rollout(
        SHOP,
        "r1",
        "v2",
        phase="canary",
        step=1,
        percent=10,
        events=({"message": "started"}, {"message": "step 1: 10 %"}),
    )
    before = Snapshot(revision=4, rollouts={old.key: old})
    cs = ChangeSet(5, (Change("put", "rollout", new.key, new),), actor="rolling")
    with caplog.at_level(logging.INFO, logger="httpdns.events"):
        ChangeLog()(before, cs)
    events = [(r.__dict__.get("event"), r.getMessage()) for r in caplog.records]
    assert events[0][0] == "registry_change"
    rollouts = [r for r in caplog.records if r.__dict__.get("event") == "rollout"]
    assert len(rollouts) == 1  # only the new entry
    assert rollouts[0].__dict__["step"] == 1 and rollouts[0].__dict__["percent"] == 10
    line = json.loads(JsonFormatter().format(rollouts[0]))
    assert line["detail"] == {"message": "step 1: 10 %"} and line["id"] == "r1"


def test_heartbeats_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    from registry.model import Heartbeat

    hb = Heartbeat("controller-1")
    cs = ChangeSet(9, (Change("put", "heartbeat", "controller-1", hb),))
    with caplog.at_level(logging.INFO, logger="httpdns.events"):
        ChangeLog()(Snapshot(revision=8), cs)
    assert not caplog.records


def test_query_log_odds(caplog: pytest.LogCaptureFixture) -> None:
    draws = iter([0.5, 0.001, 0.9])
    qlog = QueryLog(0.001, rng=lambda: next(draws))  # 0.001 of all = 0.064 of the sampled
    with caplog.at_level(logging.INFO, logger="httpdns.queries"):
        for _ in range(3):
            qlog.maybe("dns", "NOERROR", [(SHOP, "idc", "v1", "stable")], 1e-5, "192.0.2.1")
    assert len(caplog.records) == 1


def test_a_bulk_change_logs_one_short_line(caplog: pytest.LogCaptureFixture) -> None:
    from httpdns.jsonlog import MAX_VERBS
    from registry import Service, Snapshot

    changes = tuple(
        Change.put(Service(f"s{i}.example.org", {"default": {"idc": 1}})) for i in range(500)
    )
    with caplog.at_level(logging.INFO, logger="httpdns.events"):
        ChangeLog()(Snapshot(), ChangeSet(7, changes, "bulk@ci"))
    (rec,) = [r for r in caplog.records if getattr(r, "event", "") == "registry_change"]
    assert rec.changes == 500  # type: ignore[attr-defined]
    assert len(rec.verbs) == MAX_VERBS + 1 and rec.verbs[-1] == "... and 480 more"  # type: ignore[attr-defined]
    assert len(rec.getMessage()) < 2_000
