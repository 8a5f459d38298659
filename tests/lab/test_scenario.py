"""The scenario as data: the stages the issue names, in order, and the operator commands
they use."""

from __future__ import annotations

import tomllib

from lab.scenario import (
    REQUIRED,
    SETUP,
    SPECS,
    STAGES,
    Hold,
    Op,
    Until,
    registry_toml,
    release_spec,
)


def test_every_required_word_names_one_stage_in_order() -> None:
    names = [s.name for s in STAGES]
    hits = [[i for i, n in enumerate(names) if word in n] for word in REQUIRED]
    assert all(len(h) == 1 for h in hits), dict(zip(REQUIRED, hits, strict=True))
    assert [h[0] for h in hits] == sorted(h[0] for h in hits)


def test_operator_steps_use_the_public_clis() -> None:
    ops = [s for stage in STAGES for s in (*stage.steps, *stage.full_only) if isinstance(s, Op)]
    assert {op.tool for op in ops} == {"httpdns", "rolling"}
    writes = [op for op in ops if op.writes]
    assert {op.args[:2] for op in writes} >= {("traffic", "set"), ("traffic", "shift"),
                                              ("dc", "set"), ("dc", "drain"), ("dc", "undrain")}  # fmt: skip
    assert not Op("rolling", ("scale", "x", "idc=1")).writes  # rolling has no --dry-run
    assert [op for op in ops if op.expect_refusal] == [
        Op("httpdns", ("dc", "drain", "idc"), dry_run_only=True, expect_refusal=True)
    ]
    rolling = {op.args[0] for op in ops if op.tool == "rolling"}
    assert rolling >= {"scale", "plan", "deploy", "pause", "resume", "promote"}


def test_every_stage_lets_the_clients_run() -> None:
    for stage in STAGES:
        assert any(isinstance(s, Hold) for s in stage.steps), stage.name


def test_specs_and_registry_parse_and_match() -> None:
    reg = tomllib.loads(registry_toml())
    assert reg["datacenters"]["cloud"]["writable"] is False
    assert {s: v["access"] for s, v in reg["services"].items()} == {
        "www.lab.example": "ro", "quotes.lab.example": "ro", "trade.lab.example": "rw"}  # fmt: skip
    for service, replicas, steps in SPECS.values():
        spec = tomllib.loads(release_spec(service, replicas, steps))
        assert spec["service"] in reg["services"] and spec["replicas"] == replicas
        assert [(s["percent"], s["pause"]) for s in spec.get("steps", [])] == list(steps)
        assert spec["command"][-1].endswith("exec httpd -f -p 8080 -h /www")
    waited = {s.service for s in SETUP if isinstance(s, Until)}
    assert waited == set(reg["services"])
