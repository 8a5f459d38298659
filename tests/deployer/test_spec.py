"""Release specs, the deployer config and the units they are written in."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from deployer import units
from deployer.config import DeployerConfig, load_spec_file
from deployer.errors import SpecError
from deployer.spec import ReleaseSpec
from tests.deployer.fakes import CONFIG, SPEC, spec

SAMPLE = Path(__file__).resolve().parents[2] / "deployer" / "sample-release.toml"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("1m30s", 90), ("250ms", 0.25), ("2h", 7200), (5, 5), (0.5, 0.5), ("0s", 0)],
)
def test_durations(text: Any, seconds: float) -> None:
    assert units.duration("d", text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "30", "s", "1x", "-1s", True, None, [1]])
def test_bad_durations(bad: Any) -> None:
    with pytest.raises(SpecError, match=r"^d: "):
        units.duration("d", bad)


@pytest.mark.parametrize(
    ("text", "size"), [("8g", 8 << 30), ("512m", 512 << 20), ("64MiB", 64 << 20), (1024, 1024)]
)
def test_sizes(text: Any, size: int) -> None:
    assert units.size("m", text) == size


def test_shapes_and_formatting() -> None:
    assert units.shape("c", "4c8g") == (4.0, 8 << 30)
    assert units.shape("c", "0.5c512m") == (0.5, 512 << 20)
    assert units.shape("c", "2c4") == (2.0, 4 << 30)
    with pytest.raises(SpecError):
        units.shape("c", "4x8")
    assert units.format_size(8 << 30) == "8g" and units.format_duration(90) == "1m30s"


def test_resolve_merges_the_config_under_the_spec() -> None:
    s = spec("v7")
    assert s.image == "app:v7"
    assert s.replicas == {"idc": 2, "cloud": 1}
    assert s.placement["idc"].hosts == ("memory://idc-a", "memory://idc-b")
    assert s.placement["idc"].dns == ("10.0.0.2",)
    assert s.placement["cloud"].extra_hosts == {"db.internal": "10.0.0.5"}
    assert s.placement["cloud"].persist_root == "/srv/persist"
    assert (s.resources.cores, s.resources.memory) == (0.1, 32 << 20)
    assert (s.health.kind, s.health.path, s.health.rise, s.health.fall) == ("http", "/", 2, 2)
    assert [(st.percent, st.pause) for st in s.steps] == [(10, 30), (50, None), (100, 10)]
    assert (s.propagation, s.bake) == (5, 60)


def test_the_stored_form_round_trips() -> None:
    s = spec("v1")
    assert ReleaseSpec.from_dict(s.to_dict()) == s
    assert ReleaseSpec.from_dict(s.to_dict()).to_dict() == s.to_dict()


def test_defaults_are_the_article_container() -> None:
    raw = {k: v for k, v in SPEC.items() if k not in ("resources", "health", "steps", "rollout")}
    s = CONFIG.resolve(raw, "v1")
    assert (s.resources.cores, s.resources.memory) == (4.0, 8 << 30)
    assert s.health.kind == "tcp" and s.steps == () and s.restart == "unless-stopped"


def test_a_spec_may_override_placement_per_datacenter() -> None:
    raw = copy.deepcopy(SPEC)
    raw["datacenters"] = {"cloud": {"pool": "10.9.0.10-10.9.0.12", "dns": ["1.1.1.1"]}}
    s = CONFIG.resolve(raw, "v1")
    assert s.placement["cloud"].pool == "10.9.0.10-10.9.0.12"
    assert s.placement["cloud"].dns == ("1.1.1.1",)
    assert s.placement["cloud"].hosts == ("memory://cloud-a",)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"service": "Not A Name!"}, "service"),
        ({"image": ""}, "image"),
        ({"port": 0}, "port"),
        ({"replicas": {"idc": 0}}, "replicas"),
        ({"replicas": {"mars": 1}}, "datacenters.mars.hosts"),
        ({"resources": {"cores": 0}}, "resources.cores"),
        ({"resources": {"memory": "1m"}}, "resources.memory"),
        ({"health": {"kind": "udp"}}, "health.kind"),
        ({"health": {"http": "healthz"}}, "health.http"),
        ({"steps": [{"percent": 50}, {"percent": 10}]}, "steps[1].percent"),
        ({"steps": [{"percent": 101}]}, "steps[0].percent"),
        ({"steps": [{"percent": 10, "pause": "soon"}]}, "steps[0].pause"),
        ({"restart": "sometimes"}, "restart"),
        ({"colour": "blue"}, "colour"),
        ({"datacenters": {"idc": {"pool": "10.1.0.20-10.1.0.10"}}}, "datacenters.idc.pool"),
        ({"datacenters": {"idc": {"hosts": ["docker.example:2375"]}}}, "datacenters.idc.hosts"),
    ],
)
def test_bad_specs_name_the_key(change: dict[str, Any], field: str) -> None:
    raw = copy.deepcopy(SPEC)
    raw.update(change)
    with pytest.raises(SpecError) as info:
        CONFIG.resolve(raw, "v1")
    assert field in info.value.detail


def test_config_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "rolling.toml"
    path.write_text('store = "sqlite:///x.db"\nbake = "5m"\n[datacenters.idc]\nnetwork = "n"\n')
    cfg = DeployerConfig.load(path, env={})
    assert cfg.store == "sqlite:///x.db" and cfg.defaults["rollout"] == {"bake": "5m"}
    assert DeployerConfig.load(path, env={"ROLLING_STORE": "redis://r:6379/0"}).store.startswith(
        "redis://"
    )
    path.write_text("[datacenters.idc]\ncolour = 1\n")
    with pytest.raises(SpecError, match="colour"):
        DeployerConfig.load(path, env={})
    with pytest.raises(SpecError, match="cannot read"):
        DeployerConfig.load(tmp_path / "missing.toml", env={})


def test_the_sample_spec_is_valid() -> None:
    raw = load_spec_file(SAMPLE)
    cfg = DeployerConfig.from_dict(
        {"datacenters": {dc: {"hosts": ["unix:///var/run/docker.sock"], "network": "n",
                              "pool": f"10.0.{i}.0/24"} for i, dc in enumerate(raw["replicas"])}},
        env={},
    )  # fmt: skip
    s = cfg.resolve(raw, "v2")
    assert s.steps and s.steps[-1].percent == 100
    assert "v2" in s.image
