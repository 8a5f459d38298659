"""The report's arithmetic: requests attributed to the stage running at their time,
failures listed, shares per dc/version."""

from __future__ import annotations

import json
from pathlib import Path

from lab.report import StageRun, build, markdown, read_records, series, shares


def rec(t: float, ok: bool = True, dc: str = "idc", version: str = "v1",
        name: str = "quotes.lab.example") -> dict[str, object]:  # fmt: skip
    base: dict[str, object] = {"t": t, "client": "north-001", "name": name, "ok": ok}
    if ok:
        base.update(dc=dc, version=version)
    else:
        base["error"] = "FetchError: 10.201.1.10: ConnectionRefusedError"
    return base


def test_shares_count_successes_only() -> None:
    records = [rec(1), rec(2, dc="cloud"), rec(3, dc="cloud", version="v2"), rec(4, ok=False)]
    assert shares(records) == {"cloud/v1": 0.3333, "cloud/v2": 0.3333, "idc/v1": 0.3333}
    assert shares([rec(1, ok=False)]) == {}


def test_build_attributes_requests_to_stages_and_lists_failures() -> None:
    stages = [
        StageRun("stage 1: access", "a", 10.0, 20.0),
        StageRun("market rush", "b", 20.0, 30.0),
    ]
    records = [rec(5), rec(10), rec(19.9, dc="cloud"), rec(20, ok=False), rec(25), rec(31)]
    report = build(stages, records, {"quick": True})
    assert report["requests"] == 6 and report["failed_requests"] == 1 and report["quick"]
    first, second = report["stages"]
    assert (first["requests"], first["failed"]) == (2, 0)
    assert first["shares"] == {"cloud/v1": 0.5, "idc/v1": 0.5}
    assert (second["requests"], second["failed"], second["shares"]) == (2, 1, {"idc/v1": 1.0})
    assert report["failures"] == [{"time": 20, "client": "north-001", "name": "quotes.lab.example",
                                   "error": "FetchError: 10.201.1.10: ConnectionRefusedError"}]  # fmt: skip
    text = markdown(report)
    assert "| market rush | 10 | 2 | 1 | idc/v1 100 % |" in text
    assert "## Failed requests" in text and "ConnectionRefusedError" in text


def test_series_bins_shares_over_time() -> None:
    xs, ys = series([rec(0.5), rec(1.0, dc="cloud"), rec(2.5, dc="cloud"), rec(2.6, ok=False)],
                    0.0, 3.0, width=2.0)  # fmt: skip
    assert xs == [1.0, 3.0]
    assert ys == {"cloud/v1": [0.5, 1.0], "idc/v1": [0.5, 0.0]}


def test_read_records_skips_a_cut_line_and_sorts(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(json.dumps(rec(3)) + "\n" + json.dumps(rec(1)) + "\n")
    b.write_text(json.dumps(rec(2)) + "\n" + '{"t": 4, "cli')
    assert [r["t"] for r in read_records([a, b])] == [1, 2, 3]
