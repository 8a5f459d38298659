"""The steering hash (httpdns/hashing.py): golden values, ranges and cross-process stability.

The golden numbers below were computed once from the documented function (64-bit
BLAKE2b of the UTF-8 fields joined by U+001F). Every node and every run must agree on
them, so any change to the function, however small, must fail here first.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from httpdns.hashing import BUCKETS, bucket, draw, h64, mix64, score, scores

ROOT = Path(__file__).resolve().parents[2]
M64 = (1 << 64) - 1

H64_GOLDEN: list[tuple[tuple[str, ...], int]] = [
    (("api.example.com",), 14361375902680942227),
    (("api.example.com", "dc", "idc"), 12707844063178147705),
    (("api.example.com", "endpoint", "web-1"), 4428864182400229234),
    (("api.example.com", "canary"), 447009431423509184),
    (("bücher.example", "dc", "云"), 15146962727506329373),
    (("",), 16476032584258269876),
    (("a", "b"), 17891760522800452624),
]

BUCKET_GOLDEN: list[tuple[str, int]] = [
    ("uid:device-1", 53265),
    ("4:655361", 15690),
    ("6:2306139568115548160", 30839),
    ("api.example.com", 51021),
    ("", 58534),
    ("none", 19303),
]

# draw/score for the salt of datacenter "idc" of api.example.com
DC_SALT = 12707844063178147705
DRAW_GOLDEN: list[tuple[int, float, float]] = [
    # bucket, draw, score with weight 70
    (0, 0.9509666071543544, 1392.3052729916556),
    (1, 0.7599406786561153, 254.995263270853),
    (51021, 0.5353845263050884, 112.04122229624843),
    (65535, 0.1845405761297486, 41.422914638495655),
]


def _inv_xorshift(z: int, shift: int) -> int:
    x = z
    for _ in range(64 // shift + 1):
        x = z ^ (x >> shift)
    return x & M64


def inverse_mix64(y: int) -> int:
    """The x with mix64(x) == y (SplitMix64's finaliser is a bijection)."""
    y = _inv_xorshift(y, 31)
    y = (y * pow(0x94D049BB133111EB, -1, 1 << 64)) & M64
    y = _inv_xorshift(y, 27)
    y = (y * pow(0xBF58476D1CE4E5B9, -1, 1 << 64)) & M64
    return _inv_xorshift(y, 30)


# -- golden values ---------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "expected"), H64_GOLDEN)
def test_h64_golden(fields: tuple[str, ...], expected: int) -> None:
    assert h64(*fields) == expected


@pytest.mark.parametrize(("fields", "expected"), H64_GOLDEN)
def test_h64_is_the_documented_blake2b(fields: tuple[str, ...], expected: int) -> None:
    digest = hashlib.blake2b("\x1f".join(fields).encode("utf-8"), digest_size=8).digest()
    assert int.from_bytes(digest, "big") == expected


@pytest.mark.parametrize(("key", "expected"), BUCKET_GOLDEN)
def test_bucket_golden(key: str, expected: int) -> None:
    assert bucket(key) == expected
    assert bucket(key) == h64(key) >> 48  # the documented definition


def test_bucket_matches_definition_and_range_for_many_keys() -> None:
    keys = [f"uid:{i}" for i in range(2000)] + [f"4:{i}" for i in range(2000)]
    seen = set()
    for key in keys:
        b = bucket(key)
        assert 0 <= b < BUCKETS
        assert b == h64(key) >> 48
        seen.add(b)
    assert BUCKETS == 65536
    # 4000 keys over 65,536 buckets: nearly all distinct (about 120 collisions expected)
    assert len(seen) > 3700


def test_h64_fields_are_order_sensitive_and_distinct() -> None:
    assert h64("svc", "dc", "idc") != h64("svc", "dc", "cloud")
    assert h64("svc", "dc", "idc") != h64("idc", "dc", "svc")
    assert h64("svc", "dc", "x") != h64("svc", "endpoint", "x")


def test_mix64_golden_and_bijection_spot_checks() -> None:
    assert mix64(0) == 0
    assert mix64(1) == 6238072747940578789
    assert mix64(0x9E3779B97F4A7C15) == 16294208416658607535
    for x in (1, 2, 12345, M64, 1 << 63, DC_SALT):
        assert inverse_mix64(mix64(x)) == x
        assert 0 <= mix64(x) <= M64


@pytest.mark.parametrize(("b", "expected_draw", "expected_score"), DRAW_GOLDEN)
def test_draw_and_score_golden(b: int, expected_draw: float, expected_score: float) -> None:
    assert h64("api.example.com", "dc", "idc") == DC_SALT
    assert draw(b, DC_SALT) == expected_draw
    assert score(b, DC_SALT, 70) == pytest.approx(expected_score, rel=1e-12)
    assert score(b, DC_SALT, 70) == pytest.approx(-70 / math.log(expected_draw), rel=1e-12)


# -- draw is always in (0, 1) -----------------------------------------------------------------


def test_draw_in_open_interval_every_bucket() -> None:
    for salt in (0, 1, DC_SALT, M64):
        for b in range(BUCKETS):
            d = draw(b, salt)
            assert 0.0 < d < 1.0, (b, salt, d)


def test_draw_in_open_interval_random_inputs() -> None:
    rng = random.Random(20240501)
    for _ in range(50_000):
        b = rng.randrange(BUCKETS)
        salt = rng.getrandbits(64)
        d = draw(b, salt)
        assert 0.0 < d < 1.0


def test_draw_smallest_mix_value_is_above_zero() -> None:
    # bucket 0 spreads to 0, and mix64(0) == 0: the smallest possible draw
    assert draw(0, 0) > 0.0
    assert draw(0, 0) == 0.5 / 2**52  # (top 52 bits + 0.5) / 2**52, exact in a double
    assert math.isfinite(score(0, 0, 100))
    assert score(0, 0, 100) > 0


@pytest.mark.parametrize("top", [M64, M64 - (1 << 11), M64 - (1 << 12), M64 >> 1])
def test_draw_near_the_top_is_below_one(top: int) -> None:
    # A mixed value with (nearly) all bits set: (2**53 - 1) + 0.5 is not a double and would
    # round to 2**53, so a 53-bit draw could reach 1.0 and score() divide by log(1.0) == 0.
    salt = inverse_mix64(top)
    assert mix64(salt) == top  # bucket 0 spreads to 0, so this is the mixed value
    d = draw(0, salt)
    assert 0.0 < d < 1.0, d
    assert math.isfinite(score(0, salt, 100)) and score(0, salt, 100) > 0
    assert scores(0, [salt], [100]) == [score(0, salt, 100)]


def test_score_weight_zero_never_wins() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        b = rng.randrange(BUCKETS)
        s0 = score(b, rng.getrandbits(64), 0)
        s1 = score(b, rng.getrandbits(64), 1)
        assert s0 == 0.0
        assert s1 > s0


def test_scores_matches_score_and_unweighted_ranking() -> None:
    rng = random.Random(99)
    salts = [rng.getrandbits(64) for _ in range(6)]
    weights = [100, 300, 1, 50, 100, 7]
    for b in (0, 1, 777, 40000, 65535):
        batch = scores(b, salts, weights)
        single = [score(b, s, w) for s, w in zip(salts, weights, strict=True)]
        assert batch == pytest.approx(single, rel=1e-12)
        # weights None: equal weights, so the ranking is the draws' ranking
        raw = scores(b, salts, None)
        by_raw = sorted(range(6), key=raw.__getitem__)
        by_score = sorted(range(6), key=lambda i, b=b: score(b, salts[i], 100))
        assert by_raw == by_score


def test_weighted_rendezvous_win_probability_is_weight_share() -> None:
    salts = [h64("svc", "dc", name) for name in ("a", "b", "c")]
    weights = [50, 30, 20]
    wins = [0, 0, 0]
    for b in range(BUCKETS):
        s = scores(b, salts, weights)
        wins[s.index(max(s))] += 1
    shares = [w / BUCKETS for w in wins]
    assert shares == pytest.approx([0.5, 0.3, 0.2], abs=0.01)


# -- the same answers in a separate process ----------------------------------------------------

# Run here (exec) and in child interpreters with other PYTHONHASHSEEDs: the output must match.
CROSS_PROCESS_SCRIPT = r"""
from registry import Change, Datacenter, Endpoint, Release, Service, Snapshot
from httpdns.hashing import bucket, draw, h64
from httpdns.table import A, AAAA, Client, RoutingTable

SVC = "api.example.com"
records = [
    Datacenter("idc"),
    Datacenter("cloud", kind="cloud"),
    Service(SVC, {"default": {"idc": 70, "cloud": 30}}, answers=2),
    Release(SVC, "v1", "v2", 25.0),
]
for i in range(4):
    for dc, net in (("idc", 10), ("cloud", 20)):
        for version in ("v1", "v2"):
            n = len(records)
            records.append(Endpoint(SVC, f"{dc}-{version}-{i}", dc, f"{net}.0.0.{n}",
                                    version=version, weight=100 + 50 * i))
            records.append(Endpoint(SVC, f"{dc}-{version}-{i}-6", dc, f"2001:db8::{n:x}",
                                    version=version))
snap, _ = Snapshot().apply([Change.put(r) for r in records], 42)
table = RoutingTable(snap)
clients = [Client.of(f"198.51.{i}.{i % 250 + 1}") for i in range(40)]
clients += [Client.of(f"2001:db8:{i:x}::1") for i in range(40)]
clients += [Client.of(None, f"device-{i}") for i in range(40)]
answers = []
for c in clients:
    for qtype in (A, AAAA):
        ch = table.resolve(SVC, qtype, c)
        answers.append([c.key, qtype, list(ch.addresses), ch.dc, ch.version, ch.cohort])
result = {
    "h64": [h64(SVC), h64(SVC, "dc", "idc"), h64("bücher.example", "dc", "云")],
    "buckets": [bucket(c.key) for c in clients],
    "draws": [repr(draw(b, h64(SVC, "canary"))) for b in (0, 1, 999, 65535)],
    "answers": answers,
}
"""

CHILD_SUFFIX = r"""
import json, sys
json.dump({"result": result, "builtin_hash": hash(SVC)}, sys.stdout)
"""


def _in_this_process() -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(CROSS_PROCESS_SCRIPT, "<cross-process>", "exec"), namespace)
    return json.loads(json.dumps(namespace["result"]))


def _in_child(seed: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", CROSS_PROCESS_SCRIPT + CHILD_SUFFIX],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def test_same_buckets_and_answers_in_separate_processes() -> None:
    here = _in_this_process()
    child_a = _in_child("1")
    child_b = _in_child("4242")
    # the seeds really differ: Python's own hash() disagrees between the children ...
    assert child_a["builtin_hash"] != child_b["builtin_hash"]
    # ... yet every hash, bucket, draw and answer agrees with this process
    assert child_a["result"] == here
    assert child_b["result"] == here
    assert here["h64"][1] == DC_SALT
    assert here["h64"][2] == 15146962727506329373
    assert len(here["answers"]) == 240
    assert all(a[2] for a in here["answers"])  # every query was answered
