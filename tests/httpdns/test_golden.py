"""Frozen steering: the same registry gives every client the same answer on every
version of the node (a fleet mid-upgrade must agree).

``golden/steering.json`` holds a registry and, for 300 fixed client addresses and
device ids, the datacenter, version, cohort and addresses each got — recorded once
by ``golden/record.py`` and never computed by the code under test. If this test
fails, the change moved clients: revert it, or make the new hashing an explicit,
versioned registry setting (``httpdns.hashing.STEERING_VERSION``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from httpdns.hashing import STEERING_VERSION
from httpdns.table import AAAA, A, Client, RoutingTable
from registry import Snapshot

GOLDEN = json.loads((Path(__file__).parent / "golden" / "steering.json").read_text())


def _rows() -> list[dict[str, Any]]:
    return [dict(zip(GOLDEN["columns"], row, strict=True)) for row in GOLDEN["answers"]]


@pytest.fixture(scope="module")
def table() -> RoutingTable:
    return RoutingTable(Snapshot.load(GOLDEN["state"]))


def test_the_golden_file_covers_every_kind_of_decision() -> None:
    rows = _rows()
    assert len(rows) == 2400
    assert {r["status"] for r in rows} == {"ok", "failover-open", "closed", "empty"}
    assert {r["cohort"] for r in rows} == {"stable", "canary"}
    assert {r["dc"] for r in rows} >= {"idc", "cloud"}
    assert sum(r["uid"] is not None for r in rows) == 720


def test_steering_version_is_the_recorded_one() -> None:
    assert STEERING_VERSION == 1


def test_every_client_gets_its_recorded_answer(table: RoutingTable) -> None:
    moved = []
    for r in _rows():
        qtype = AAAA if r["type"] == "AAAA" else A
        choice = table.resolve(r["name"], qtype, Client.of(r["ip"], r["uid"]))
        assert choice is not None
        got = [choice.dc, choice.version, choice.cohort, choice.status, list(choice.addresses)]
        want = [r["dc"], r["version"], r["cohort"], r["status"], r["addresses"]]
        if got != want:
            moved.append((r["name"], r["type"], r["ip"] or r["uid"], want, got))
    assert not moved, f"{len(moved)} answers moved, e.g. {moved[:3]}"


def test_explain_reports_the_recorded_answer(table: RoutingTable) -> None:
    for r in _rows()[::7]:
        qtype = AAAA if r["type"] == "AAAA" else A
        trace = table.explain(r["name"], qtype, Client.of(r["ip"], r["uid"]))
        assert trace is not None
        assert [trace["datacenter"], trace["version"], trace["answer"]] == [
            r["dc"], r["version"], r["addresses"]
        ]  # fmt: skip
