"""The container spec as the source article runs containers (pure data)."""

from __future__ import annotations

from deployer.container import build, container_name, hostname, replicas
from tests.deployer.fakes import SERVICE, spec


def test_names_are_deterministic_and_bounded() -> None:
    assert container_name(SERVICE, "idc", "v2", 3) == "api.example.com-idc-v2-3"
    assert container_name(SERVICE, "idc", "1.0+build7", 1) == "api.example.com-idc-1.0_build7-1"
    long = container_name("a" * 60 + "." + "b" * 60 + ".example", "idc", "v1", 1)
    assert len(long) == 128 and long == container_name("a" * 60 + "." + "b" * 60 + ".example",
                                                       "idc", "v1", 1)  # fmt: skip
    assert hostname(SERVICE, "cloud", 2) == "api-cloud-2"


def test_replicas_spread_over_hosts() -> None:
    reps = replicas(spec("v1"), "v1")
    assert [(r.dc, r.index, r.host) for r in reps] == [
        ("cloud", 1, "memory://cloud-a"),
        ("idc", 1, "memory://idc-a"),
        ("idc", 2, "memory://idc-b"),
    ]


def test_build_follows_the_article() -> None:
    s = spec("v1")
    rep = replicas(s, "v1")[1]
    c = build(s, "v1", "r9", rep, "10.1.0.10")
    assert (c.cpu_period, c.cpu_quota) == (100_000, 10_000)
    assert c.memory == c.memory_swap == 32 << 20
    assert c.mac == "02:42:0a:01:00:0a"
    assert c.persist == "/srv/persist/10.1.0.10"
    assert (c.network, c.address, c.hostname) == ("net-idc", "10.1.0.10", "api-idc-1")
    assert c.dns == ("10.0.0.2",) and c.extra_hosts == {"db.internal": "10.0.0.5"}
    assert c.labels == {"rolling.service": SERVICE, "rolling.version": "v1", "rolling.dc": "idc",
                        "rolling.rollout": "r9", "rolling.index": "1"}  # fmt: skip
    assert c.env["ROLLING_IP"] == "10.1.0.10" and c.restart == "unless-stopped"
