"""Steering rules (DESIGN §3) and the compiled routing table (DESIGN §4).

Snapshots are built purely with ``Snapshot().apply``; decisions are checked either
through ``RoutingTable.resolve`` or directly with ``steering.decide`` over client buckets.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pytest

from httpdns.hashing import BUCKETS
from httpdns.steering import Choice, CompiledService, compile_service, decide
from httpdns.steering import in_canary as in_canary_cohort
from httpdns.table import AAAA, A, Client, RoutingTable
from registry import Change, ChangeSet, Datacenter, Endpoint, Region, Release, Service, Snapshot
from registry.model import Record

SVC = "api.example.com"
OTHER = "img.example.com"

IDC = Datacenter("idc", kind="idc", writable=True)
CLOUD_RO = Datacenter("cloud", kind="cloud", writable=False)
CLOUD_RW = Datacenter("cloud", kind="cloud", writable=True)

SAMPLE = range(0, BUCKETS, 7)  # 9,363 buckets: plenty for "never" properties


def build(*records: Record | Iterable[Record], revision: int = 1) -> Snapshot:
    flat: list[Record] = []
    for r in records:
        if isinstance(r, Datacenter | Region | Service | Endpoint | Release):
            flat.append(r)
        else:
            flat.extend(r)
    snap, _ = Snapshot().apply([Change.put(r) for r in flat], revision)
    return snap


def eps(
    dc: str,
    net: str,
    n: int = 2,
    *,
    service: str = SVC,
    version: str = "v1",
    healthy: bool = True,
    prefix: str | None = None,
) -> list[Endpoint]:
    """n endpoints ``{prefix}-{i}`` in ``dc`` at ``{net}{i + 1}``."""
    p = prefix or f"{dc}-{version}"
    return [
        Endpoint(service, f"{p}-{i}", dc, f"{net}{i + 1}", version=version, healthy=healthy)
        for i in range(n)
    ]


def compiled(snap: Snapshot, name: str = SVC) -> CompiledService:
    return compile_service(
        snap.services[name],
        snap.endpoints_of(name).values(),
        snap.releases.get(name),
        snap.datacenters,
    )


def decide_all(
    svc: CompiledService, buckets: Iterable[int] = range(BUCKETS), family: int = 4
) -> list[Choice]:
    return [decide(svc, family, "default", b) for b in buckets]


def share(choices: Sequence[Choice]) -> dict[str | None, float]:
    counts = Counter(ch.dc for ch in choices)
    return {dc: 100.0 * n / len(choices) for dc, n in counts.items()}


def addresses_of(endpoints: Iterable[Endpoint]) -> set[str]:
    return {e.address for e in endpoints}


# -- client keys ---------------------------------------------------------------------------


def test_client_key_forms_match_the_reference() -> None:
    cases = [
        ("10.1.2.3", None, "4:" + str(int(ipaddress.ip_address("10.1.2.0")) >> 8), 24),
        (
            "2001:db8:0:1200::1",
            None,
            "6:" + str(int(ipaddress.ip_address("2001:db8:0:1200::")) >> 72),
            56,
        ),
        ("10.1.2.3", "dev-1", "uid:dev-1", 0),
        (None, "dev-1", "uid:dev-1", 0),
        (None, None, "none", 0),
    ]
    for ip, uid, key, plen in cases:
        c = Client.of(ip, uid)
        assert c.key == key
        assert c.prefix_len == plen
    assert Client.of("10.1.2.3").key == Client.of("10.1.2.250").key
    assert Client.of("10.1.2.3").key != Client.of("10.1.3.3").key
    assert Client.of("2001:db8:0:1200::1").key == Client.of("2001:db8:0:12ff:ffff::9").key
    assert Client.of("2001:db8:0:1200::1").key != Client.of("2001:db8:0:1300::1").key
    assert Client.of("10.1.2.3", "").uid is None
    with pytest.raises(ValueError):
        Client.of("10.1.2")
    with pytest.raises(ValueError):
        Client.of("not-an-ip")


# -- failover --------------------------------------------------------------------------------


def test_idc_all_unhealthy_everyone_goes_to_cloud() -> None:
    cloud = eps("cloud", "10.1.0.", 2)
    snap = build(
        IDC,
        CLOUD_RO,
        Service(SVC, {"default": {"idc": 70, "cloud": 30}}),
        eps("idc", "10.0.0.", 3, healthy=False),
        cloud,
    )
    svc = compiled(snap)
    choices = decide_all(svc)
    assert share(choices) == {"cloud": 100.0}
    for ch in choices[::97]:
        assert ch.status == "ok"
        assert set(ch.addresses) == addresses_of(cloud)
    table = RoutingTable(snap)
    for i in range(300):
        ch = table.resolve(SVC, A, Client.of(f"198.{51 + i // 256}.{i % 256}.1"))
        assert ch is not None and ch.dc == "cloud"


THREE = {"d50": 50, "d30": 30, "d20": 20}


def three_dc_snapshot(failing: str | None) -> Snapshot:
    records: list[Record] = [Service(SVC, {"default": dict(THREE)})]
    for i, dc in enumerate(THREE):
        records.append(Datacenter(dc))
        records += eps(dc, f"10.{i}.0.", 2, healthy=dc != failing)
    return build(records)


@pytest.fixture(scope="module")
def three_dc_baseline() -> list[Choice]:
    return decide_all(compiled(three_dc_snapshot(None)))


def test_three_datacenters_baseline_shares(three_dc_baseline: list[Choice]) -> None:
    got = share(three_dc_baseline)
    for dc, w in THREE.items():
        assert got[dc] == pytest.approx(w, abs=1.0), (dc, got)


@pytest.mark.parametrize("failing", list(THREE))
def test_failed_datacenter_share_spreads_in_proportion(
    failing: str, three_dc_baseline: list[Choice]
) -> None:
    after = decide_all(compiled(three_dc_snapshot(failing)))
    got = share(after)
    assert failing not in got
    survivors = {dc: w for dc, w in THREE.items() if dc != failing}
    total = sum(survivors.values())
    for dc, w in survivors.items():
        assert got[dc] == pytest.approx(100.0 * w / total, abs=1.5), (dc, got)
    # only the failed datacenter's clients move; everyone else stays put
    for b, (old, new) in enumerate(zip(three_dc_baseline, after, strict=True)):
        if old.dc != failing:
            assert new.dc == old.dc, b
            assert new.addresses == old.addresses, b


# -- all down: fail-open and fail-closed ---------------------------------------------------------


def all_down_snapshot(policy: str, healthy: bool) -> Snapshot:
    return build(
        IDC,
        CLOUD_RO,
        Service(SVC, {"default": {"idc": 60, "cloud": 40}}, all_down=policy),  # type: ignore[arg-type]
        eps("idc", "10.0.0.", 3, healthy=healthy),
        eps("cloud", "10.1.0.", 3, healthy=healthy),
    )


def test_fail_open_answers_as_if_all_were_healthy() -> None:
    healthy = decide_all(compiled(all_down_snapshot("fail-open", True)), SAMPLE)
    down = decide_all(compiled(all_down_snapshot("fail-open", False)), SAMPLE)
    assert {ch.status for ch in healthy} == {"ok"}
    assert {ch.status for ch in down} == {"failover-open"}
    for h, d in zip(healthy, down, strict=True):
        assert d.addresses == h.addresses
        assert d.dc == h.dc
        assert len(d.addresses) == 2
    assert share(down)["idc"] == pytest.approx(60.0, abs=2.0)

    table = RoutingTable(all_down_snapshot("fail-open", False))
    ch = table.resolve(SVC, A, Client.of("192.0.2.1"))
    assert ch is not None and ch.status == "failover-open" and len(ch.addresses) == 2


def test_fail_closed_answers_empty() -> None:
    down = decide_all(compiled(all_down_snapshot("fail-closed", False)), SAMPLE)
    assert {ch.status for ch in down} == {"closed"}
    assert all(ch.addresses == () for ch in down)
    # while anything is healthy, fail-closed answers normally
    up = decide_all(compiled(all_down_snapshot("fail-closed", True)), SAMPLE[:500])
    assert {ch.status for ch in up} == {"ok"}
    assert all(len(ch.addresses) == 2 for ch in up)

    table = RoutingTable(all_down_snapshot("fail-closed", False))
    ch = table.resolve(SVC, A, Client.of("192.0.2.1"))
    assert ch is not None and ch.addresses == () and ch.status == "closed"
    trace = table.explain(SVC, A, Client.of("192.0.2.1"))
    assert trace is not None
    assert any(step.get("policy") == "fail-closed" for step in trace["trace"])


# -- rw / ro eligibility ------------------------------------------------------------------------


def rw_ro_snapshot(access: str, idc_healthy: bool = True, policy: str = "fail-open") -> Snapshot:
    return build(
        IDC,
        CLOUD_RO,
        Service(SVC, {"default": {"idc": 50, "cloud": 50}}, access=access, all_down=policy),  # type: ignore[arg-type]
        eps("idc", "10.0.0.", 2, healthy=idc_healthy),
        eps("cloud", "10.1.0.", 2),
    )


def test_ro_service_uses_read_only_datacenters() -> None:
    got = share(decide_all(compiled(rw_ro_snapshot("ro")), SAMPLE))
    assert got["idc"] == pytest.approx(50.0, abs=2.0)
    assert got["cloud"] == pytest.approx(50.0, abs=2.0)


def test_rw_service_never_answers_from_a_read_only_datacenter() -> None:
    cloud_addrs = {"10.1.0.1", "10.1.0.2"}
    ok = decide_all(compiled(rw_ro_snapshot("rw")), SAMPLE)
    assert share(ok) == {"idc": 100.0}
    assert {ch.status for ch in ok} == {"ok"}

    # the writable datacenter is all down: fail-open answers it anyway, never the cloud
    opened = decide_all(compiled(rw_ro_snapshot("rw", idc_healthy=False)), SAMPLE)
    assert {ch.status for ch in opened} == {"failover-open"}
    assert share(opened) == {"idc": 100.0}
    assert all(ch.addresses and not set(ch.addresses) & cloud_addrs for ch in opened)

    closed = decide_all(
        compiled(rw_ro_snapshot("rw", idc_healthy=False, policy="fail-closed")), SAMPLE
    )
    assert {ch.status for ch in closed} == {"closed"}
    assert all(ch.addresses == () for ch in closed)

    table = RoutingTable(rw_ro_snapshot("rw", idc_healthy=False))
    info = table.explain(SVC, A, Client.of("192.0.2.1"))
    assert info is not None
    assert info["datacenter"] == "idc" and info["status"] == "failover-open"
    assert "cloud" in info["trace"][0]["excluded"]


def test_rw_service_may_use_a_writable_cloud() -> None:
    snap = build(
        IDC,
        CLOUD_RW,
        Service(SVC, {"default": {"idc": 50, "cloud": 50}}, access="rw"),
        eps("idc", "10.0.0.", 2),
        eps("cloud", "10.1.0.", 2),
    )
    got = share(decide_all(compiled(snap), SAMPLE))
    assert got["cloud"] == pytest.approx(50.0, abs=2.0)


def test_rw_service_with_only_read_only_datacenters_answers_nothing() -> None:
    snap = build(
        IDC,
        CLOUD_RO,
        Service(SVC, {"default": {"cloud": 100}}, access="rw"),
        eps("idc", "10.0.0.", 2),
        eps("cloud", "10.1.0.", 2),
    )
    choices = decide_all(compiled(snap), SAMPLE[:1000])
    assert all(ch.addresses == () and ch.dc is None for ch in choices)


# -- regions ------------------------------------------------------------------------------------

REGION_DCS = ["ddefault", "dcn", "dbj", "dzz", "dvip", "dv6", "dv6lab", "dnomap"]


def region_snapshot() -> Snapshot:
    regions = [
        Region("cn", ("10.0.0.0/8",)),
        Region("bj", ("10.1.0.0/16",)),  # nested in cn, sorts before it
        Region("zz", ("10.2.0.0/16",)),  # nested in cn, sorts after it
        Region("vip", ("10.1.2.3/32",)),  # nested in bj and cn
        Region("v6", ("2001:db8::/32",)),
        Region("v6lab", ("2001:db8:1::/48", "192.0.2.0/24")),
        Region("nomap", ("172.16.0.0/12",)),  # exists, but the service has no table for it
    ]
    traffic = {
        "default": {"ddefault": 100},
        "cn": {"dcn": 100},
        "bj": {"dbj": 100},
        "zz": {"dzz": 100},
        "vip": {"dvip": 100},
        "v6": {"dv6": 100},
        "v6lab": {"dv6lab": 100},
    }
    records: list[Record] = [*regions, Service(SVC, traffic)]
    for i, dc in enumerate(REGION_DCS):
        records.append(Datacenter(dc))
        records += eps(dc, f"10.99.{i}.", 1, prefix=f"{dc}-4")
        records += eps(dc, f"2001:db8:ffff:{i}::", 1, prefix=f"{dc}-6")
    return build(records)


@pytest.mark.parametrize(
    ("ip", "uid", "region", "dc"),
    [
        ("10.3.4.5", None, "cn", "dcn"),
        ("10.1.9.9", None, "bj", "dbj"),
        ("10.2.0.1", None, "zz", "dzz"),
        ("10.1.2.3", None, "vip", "dvip"),
        ("10.1.2.4", None, "bj", "dbj"),
        ("11.0.0.1", None, "default", "ddefault"),
        ("192.0.2.77", None, "v6lab", "dv6lab"),
        ("2001:db8:5::1", None, "v6", "dv6"),
        ("2001:db8:1:ff::1", None, "v6lab", "dv6lab"),
        ("2001:dead::1", None, "default", "ddefault"),
        ("172.20.0.1", None, "nomap", "ddefault"),  # region without a table uses default
        (None, "dev-1", "default", "ddefault"),
        ("10.1.9.9", "dev-1", "bj", "dbj"),  # the region follows the address, not the uid
    ],
)
def test_region_by_longest_prefix(ip: str | None, uid: str | None, region: str, dc: str) -> None:
    table = RoutingTable(region_snapshot())
    client = Client.of(ip, uid)
    for qtype in (A, AAAA):
        ch = table.resolve(SVC, qtype, client)
        assert ch is not None
        assert ch.dc == dc, (qtype, ch)
        assert len(ch.addresses) == 1
    info = table.explain(SVC, A, client)
    assert info is not None
    assert info["region"] == region
    assert info["trace"][0]["table"] == ("default" if region == "nomap" else region)


def test_ipv4_mapped_client_address_counts_as_ipv4() -> None:
    mapped = Client.of("::ffff:10.1.2.3")
    assert mapped.key == Client.of("10.1.2.3").key
    assert Client.of("::ffff:10.1.2.3").key != Client.of("::ffff:10.9.9.9").key
    table = RoutingTable(region_snapshot())
    ch = table.resolve(SVC, A, mapped)
    assert ch is not None and ch.dc == "dvip"
    assert mapped.prefix_len == 24
    info = table.explain(SVC, A, mapped)
    assert info is not None and info["region"] == "vip"
    assert info["client"]["ip"] == "10.1.2.3"


def test_region_change_by_cidr_order_does_not_matter() -> None:
    # the same nesting with the names swapped: the /16 still wins over the /8
    snap = build(
        Region("aaa", ("10.0.0.0/8",)),
        Region("zzz", ("10.1.0.0/16",)),
        Datacenter("d1"),
        Datacenter("d2"),
        Service(SVC, {"default": {"d1": 100}, "aaa": {"d1": 100}, "zzz": {"d2": 100}}),
        eps("d1", "10.50.0.", 1),
        eps("d2", "10.60.0.", 1),
    )
    table = RoutingTable(snap)
    inner = table.resolve(SVC, A, Client.of("10.1.0.1"))
    outer = table.resolve(SVC, A, Client.of("10.9.0.1"))
    assert inner is not None and inner.dc == "d2"
    assert outer is not None and outer.dc == "d1"


# -- drained datacenters, endpoint weight 0, answers count -----------------------------------------


def test_drained_datacenter_gets_nothing() -> None:
    drained = Datacenter("cloud", kind="cloud", writable=False, drained=True)
    cloud = eps("cloud", "10.1.0.", 2)
    snap = build(
        IDC,
        drained,
        Service(SVC, {"default": {"idc": 50, "cloud": 50}}),
        eps("idc", "10.0.0.", 2),
        cloud,
    )
    assert share(decide_all(compiled(snap))) == {"idc": 100.0}
    # even when the rest is down: fail-open answers the idc, never the drained cloud
    down = build(
        IDC,
        drained,
        Service(SVC, {"default": {"idc": 50, "cloud": 50}}),
        eps("idc", "10.0.0.", 2, healthy=False),
        cloud,
    )
    choices = decide_all(compiled(down), SAMPLE)
    assert share(choices) == {"idc": 100.0}
    assert {ch.status for ch in choices} == {"failover-open"}
    assert not any(set(ch.addresses) & addresses_of(cloud) for ch in choices)
    info = RoutingTable(down).explain(SVC, A, Client.of("192.0.2.1"))
    assert info is not None
    assert info["trace"][0]["excluded"] == {"cloud": "drained"}


def test_datacenter_weight_zero_gets_nothing() -> None:
    snap = build(
        IDC,
        CLOUD_RO,
        Service(SVC, {"default": {"idc": 100, "cloud": 0}}),
        eps("idc", "10.0.0.", 2, healthy=False),
        eps("cloud", "10.1.0.", 2),
    )
    choices = decide_all(compiled(snap), SAMPLE)
    assert share(choices) == {"idc": 100.0}  # fail-open within the table, not the cloud


@pytest.mark.parametrize("healthy", [True, False])
def test_endpoint_weight_zero_is_never_answered(healthy: bool) -> None:
    snap = build(
        IDC,
        Service(SVC, {"default": {"idc": 100}}, answers=3),
        Endpoint(SVC, "zero", "idc", "10.0.0.9", weight=0, healthy=healthy),
        eps("idc", "10.0.0.", 2, healthy=healthy),
    )
    choices = decide_all(compiled(snap), SAMPLE)
    for ch in choices:
        assert "10.0.0.9" not in ch.addresses
        assert sorted(ch.addresses) == ["10.0.0.1", "10.0.0.2"]
    assert {ch.status for ch in choices} == {"ok" if healthy else "failover-open"}


@pytest.mark.parametrize("answers", [1, 2, 3, 5, 8])
def test_answers_limits_the_count(answers: int) -> None:
    def snap(n: int) -> Snapshot:
        return build(
            IDC,
            Service(SVC, {"default": {"idc": 100}}, answers=n),
            eps("idc", "10.0.0.", 5),
        )

    limited = decide_all(compiled(snap(answers)), SAMPLE[:2000])
    full = decide_all(compiled(snap(5)), SAMPLE[:2000])
    for lim, ful in zip(limited, full, strict=True):
        assert len(lim.addresses) == min(answers, 5)
        assert len(set(lim.addresses)) == len(lim.addresses)
        # the top n of the same ranking: a smaller answer is a prefix of a larger one
        assert lim.addresses == ful.addresses[: len(lim.addresses)]
    firsts = Counter(ch.addresses[0] for ch in limited)
    assert len(firsts) == 5  # every endpoint is somebody's first choice


def test_answers_are_sticky_when_an_endpoint_fails() -> None:
    five = eps("idc", "10.0.0.", 5)

    def snap(unhealthy: str | None) -> Snapshot:
        return build(
            IDC,
            Service(SVC, {"default": {"idc": 100}}, answers=2),
            [Endpoint(SVC, e.id, e.dc, e.address, healthy=e.address != unhealthy) for e in five],
        )

    full = build(IDC, Service(SVC, {"default": {"idc": 100}}, answers=5), five)
    ranking = decide_all(compiled(full), SAMPLE[:1500])
    before = decide_all(compiled(snap(None)), SAMPLE[:1500])
    after = decide_all(compiled(snap("10.0.0.1")), SAMPLE[:1500])
    changed = 0
    for rank, b, a in zip(ranking, before, after, strict=True):
        assert b.addresses == rank.addresses[:2]
        # the failed endpoint drops out; the others keep their relative order
        assert a.addresses == tuple(x for x in rank.addresses if x != "10.0.0.1")[:2]
        if "10.0.0.1" not in b.addresses:
            assert a.addresses == b.addresses
        else:
            changed += 1
    assert 0 < changed < len(before)


def test_decisions_are_deterministic_across_compiles() -> None:
    snap = canary_snapshot(25.0)
    first = decide_all(compiled(snap), SAMPLE[:3000])
    second = decide_all(compiled(build(*snap_records(snap), revision=9)), SAMPLE[:3000])
    assert first == second


def snap_records(snap: Snapshot) -> list[Record]:
    out: list[Record] = [*snap.datacenters.values(), *snap.regions.values()]
    out += [*snap.services.values(), *snap.releases.values()]
    for eps_ in snap.endpoints.values():
        out += list(eps_.values())
    return out[::-1]  # a different insertion order must not matter


# -- address families ----------------------------------------------------------------------------


def family_snapshot() -> Snapshot:
    return build(
        IDC,
        CLOUD_RO,
        Service(SVC, {"default": {"idc": 50, "cloud": 50}}, answers=4),
        eps("idc", "10.0.0.", 2, prefix="idc4"),
        eps("idc", "2001:db8::", 2, prefix="idc6"),
        eps("cloud", "10.1.0.", 2, prefix="cloud4"),  # the cloud has no IPv6 endpoint
    )


def test_a_returns_ipv4_and_aaaa_returns_ipv6_only() -> None:
    table = RoutingTable(family_snapshot())
    dcs_a: Counter[str | None] = Counter()
    for i in range(600):
        client = (
            Client.of(f"198.51.{i % 256}.{i // 256 + 1}")
            if i % 2
            else Client.of(f"2001:db8:{i:x}::1")
        )
        a = table.resolve(SVC, A, client)
        aaaa = table.resolve(SVC, AAAA, client)
        assert a is not None and aaaa is not None
        assert a.addresses and aaaa.addresses
        assert all(ipaddress.ip_address(x).version == 4 for x in a.addresses)
        assert all(ipaddress.ip_address(x).version == 6 for x in aaaa.addresses)
        assert aaaa.dc == "idc"  # the only datacenter with IPv6 endpoints
        assert table.resolve(SVC, A, client) == a  # cached per family, not mixed up
        dcs_a[a.dc] += 1
    assert dcs_a["idc"] > 200 and dcs_a["cloud"] > 200


def test_aaaa_without_ipv6_endpoints_is_empty() -> None:
    snap = build(
        IDC,
        Service(SVC, {"default": {"idc": 100}}),
        eps("idc", "10.0.0.", 2),
    )
    table = RoutingTable(snap)
    ch = table.resolve(SVC, AAAA, Client.of("2001:db8::1"))
    assert ch is not None and ch.addresses == ()
    a = table.resolve(SVC, A, Client.of("2001:db8::1"))
    assert a is not None and len(a.addresses) == 2


# -- canary ---------------------------------------------------------------------------------------

V1 = eps("idc", "10.0.0.", 2) + eps("cloud", "10.1.0.", 2)
V2 = eps("idc", "10.0.1.", 2, version="v2") + eps("cloud", "10.1.1.", 2, version="v2")


def canary_snapshot(percent: float, v2: Sequence[Endpoint] = V2) -> Snapshot:
    return build(
        IDC,
        CLOUD_RO,
        Service(SVC, {"default": {"idc": 70, "cloud": 30}}),
        V1,
        v2,
        Release(SVC, "v1", "v2", percent),
    )


def test_canary_endpoints_only_for_the_canary_cohort() -> None:
    svc = compiled(canary_snapshot(30.0))
    v1, v2 = addresses_of(V1), addresses_of(V2)
    choices = decide_all(svc, SAMPLE)
    canaries = 0
    for b, ch in zip(SAMPLE, choices, strict=True):
        assert ch.status == "ok"
        if in_canary_cohort(svc, b):
            canaries += 1
            assert ch.cohort == "canary" and ch.version == "v2"
            assert set(ch.addresses) <= v2
        else:
            assert ch.cohort == "stable" and ch.version == "v1"
            assert set(ch.addresses) <= v1
    assert 100.0 * canaries / len(SAMPLE) == pytest.approx(30.0, abs=1.5)


def test_in_canary_cohorts_are_nested_over_all_buckets() -> None:
    previous: set[int] = set()
    for percent in (0.01, 1.0, 5.0, 10.0, 33.33, 50.0, 99.99):
        svc = compiled(canary_snapshot(percent))
        cohort = {b for b in range(BUCKETS) if in_canary_cohort(svc, b)}
        assert previous <= cohort
        assert 100.0 * len(cohort) / BUCKETS == pytest.approx(percent, abs=0.6)
        previous = cohort


def test_canary_percent_zero_and_hundred() -> None:
    nobody = decide_all(compiled(canary_snapshot(0.0)), SAMPLE[:2000])
    assert {ch.cohort for ch in nobody} == {"stable"}
    assert {ch.version for ch in nobody} == {"v1"}
    everybody = decide_all(compiled(canary_snapshot(100.0)), SAMPLE[:2000])
    assert {ch.cohort for ch in everybody} == {"canary"}
    assert {ch.version for ch in everybody} == {"v2"}


def test_canary_without_healthy_endpoints_gets_stable() -> None:
    down = [Endpoint(e.service, e.id, e.dc, e.address, version="v2", healthy=False) for e in V2]
    svc = compiled(canary_snapshot(30.0, down))
    v1 = addresses_of(V1)
    canaries = 0
    for b, ch in zip(SAMPLE, decide_all(svc, SAMPLE), strict=True):
        assert ch.status == "ok"
        assert ch.version == "v1"
        assert set(ch.addresses) <= v1 and ch.addresses
        canaries += ch.cohort == "canary"
        assert (ch.cohort == "canary") == in_canary_cohort(svc, b)
    assert canaries > 0


def test_canary_goes_where_the_canary_runs() -> None:
    only_cloud = eps("cloud", "10.1.1.", 2, version="v2")
    svc = compiled(canary_snapshot(50.0, only_cloud))
    for b, ch in zip(SAMPLE, decide_all(svc, SAMPLE), strict=True):
        if in_canary_cohort(svc, b):
            assert ch.dc == "cloud" and ch.version == "v2"


# -- explain ------------------------------------------------------------------------------------


def test_explain_trace_contents() -> None:
    snap = build(
        IDC,
        CLOUD_RO,
        Region("cn", ("10.0.0.0/8",)),
        Service(SVC, {"default": {"idc": 100}, "cn": {"idc": 70, "cloud": 30}}, ttl=30),
        V1,
        V2,
        Release(SVC, "v1", "v2", 10.0),
        revision=17,
    )
    table = RoutingTable(snap)
    client = Client.of("10.20.30.40", "dev-42")
    info = table.explain(SVC, A, client)
    assert info is not None
    assert info["revision"] == 17
    assert info["name"] == SVC and info["type"] == "A"
    assert info["region"] == "cn"
    assert info["client"]["key"] == "uid:dev-42"
    assert info["client"]["ip"] == "10.20.30.40"
    assert info["client"]["bucket"] == table.bucket(client)
    assert info["ttl"] == 30

    steps = {s["step"]: s for s in info["trace"]}
    assert steps["table"]["table"] == "cn"
    assert steps["table"]["weights"] == {"idc": 70, "cloud": 30}
    assert steps["cohort"]["cohort"] == info["cohort"]
    assert steps["cohort"]["canary"] == "v2" and steps["cohort"]["canary_percent"] == 10.0
    assert 0.0 < steps["cohort"]["draw"] < 1.0
    dc_step = steps["datacenter"]
    assert set(dc_step["scores"]) == {"idc", "cloud"}
    assert dc_step["chosen"] == info["datacenter"]
    assert max(dc_step["scores"], key=dc_step["scores"].get) == info["datacenter"]
    ep_step = steps["endpoints"]
    assert ep_step["dc"] == info["datacenter"]
    cands: dict[str, Any] = ep_step["candidates"]
    assert len(cands) == 2
    ranked = sorted(cands, key=cands.get, reverse=True)
    assert ep_step["chosen"] == ranked[:2]
    by_id = {e.id: e.address for e in snap.endpoints_of(SVC).values()}
    assert info["answer"] == [by_id[i] for i in ep_step["chosen"]]

    # explain and resolve agree
    ch = table.resolve(SVC, A, client)
    assert ch is not None
    assert list(ch.addresses) == info["answer"]
    assert ch.dc == info["datacenter"] and ch.cohort == info["cohort"]


def test_explain_cohort_both_ways() -> None:
    table = RoutingTable(canary_snapshot(50.0))
    seen = set()
    for i in range(200):
        info = table.explain(SVC, A, Client.of(None, f"d{i}"))
        assert info is not None
        cohort = next(s for s in info["trace"] if s["step"] == "cohort")
        assert cohort["cohort"] == info["cohort"]
        assert (cohort["draw"] < 0.5) == (info["cohort"] == "canary")
        seen.add(info["cohort"])
    assert seen == {"canary", "stable"}


# -- table.update ------------------------------------------------------------------------------


def two_service_snapshot() -> Snapshot:
    return build(
        IDC,
        CLOUD_RO,
        Region("office", ("192.0.2.0/24",)),
        Service(SVC, {"default": {"idc": 70, "cloud": 30}}),
        Service(OTHER, {"default": {"idc": 70, "cloud": 30}, "office": {"cloud": 100}}),
        V1,
        eps("idc", "10.0.2.", 2, service=OTHER),
        eps("cloud", "10.1.2.", 2, service=OTHER),
    )


CLIENTS = [Client.of(f"198.51.{i}.1") for i in range(200)]


def warm(table: RoutingTable, names: Iterable[str] = (SVC, OTHER)) -> None:
    for name in names:
        for c in CLIENTS:
            assert table.resolve(name, A, c) is not None


def commit(snap: Snapshot, *records: Record) -> tuple[Snapshot, frozenset[str] | None]:
    new, effective = snap.apply([Change.put(r) for r in records], snap.revision + 1)
    return new, ChangeSet(new.revision, effective).services


def test_update_one_service_recompiles_only_that_service() -> None:
    snap = two_service_snapshot()
    table = RoutingTable(snap, hot_misses=None)  # the decision cache (maps: test_bucketmap)
    warm(table)
    old_svc, old_other = table.services[SVC], table.services[OTHER]
    other_cache = table.cached_decisions(OTHER)
    assert table.cached_decisions(SVC) and other_cache
    cached_choice = table.resolve(OTHER, A, CLIENTS[0])

    new_snap, services = commit(snap, Service(SVC, {"default": {"cloud": 100}}))
    assert services == frozenset({SVC})
    table.update(new_snap, services)

    assert table.revision == new_snap.revision == 2
    assert table.services[OTHER] is old_other  # untouched, with its cache
    assert table.cached_decisions(OTHER) == other_cache
    assert table.resolve(OTHER, A, CLIENTS[0]) is cached_choice  # served from the old cache
    assert table.services[SVC] is not old_svc
    assert table.cached_decisions(SVC) == {}
    for c in CLIENTS:
        ch = table.resolve(SVC, A, c)
        assert ch is not None and ch.dc == "cloud"
    assert len(table.cached_decisions(SVC)) == len(CLIENTS)
    assert table.cached_decisions(OTHER) == other_cache


def test_update_endpoint_health_recompiles_only_that_service() -> None:
    snap = two_service_snapshot()
    table = RoutingTable(snap)
    warm(table)
    old_other = table.services[OTHER]
    down = [Endpoint(SVC, e.id, e.dc, e.address, healthy=False) for e in V1 if e.dc == "idc"]
    new_snap, services = commit(snap, *down)
    assert services == frozenset({SVC})
    table.update(new_snap, services)
    assert table.services[OTHER] is old_other and table.cached_decisions(OTHER)
    for c in CLIENTS:
        ch = table.resolve(SVC, A, c)
        assert ch is not None and ch.dc == "cloud"


def test_update_adds_and_removes_services() -> None:
    snap = two_service_snapshot()
    table = RoutingTable(snap)
    warm(table)
    new_name = "new.example.com"
    added, services = commit(
        snap,
        Service(new_name, {"default": {"idc": 100}}),
        *eps("idc", "10.7.0.", 1, service=new_name),
    )
    assert services == frozenset({new_name})
    table.update(added, services)
    ch = table.resolve(new_name, A, CLIENTS[0])
    assert ch is not None and ch.addresses == ("10.7.0.1",)

    removed, effective = added.apply([Change.delete("service", OTHER)], added.revision + 1)
    services = ChangeSet(removed.revision, effective).services
    assert services == frozenset({OTHER})
    table.update(removed, services)
    assert table.resolve(OTHER, A, CLIENTS[0]) is None
    assert table.resolve(SVC, A, CLIENTS[0]) is not None
    assert table.cached_decisions(OTHER) == {}


def test_datacenter_change_rebuilds_everything() -> None:
    snap = two_service_snapshot()
    table = RoutingTable(snap)
    warm(table)
    old = dict(table.services)
    new_snap, services = commit(
        snap, Datacenter("cloud", kind="cloud", writable=False, drained=True)
    )
    assert services is None
    table.update(new_snap, services)
    assert table.revision == 2
    for name in (SVC, OTHER):
        assert table.services[name] is not old[name]
        assert table.cached_decisions(name) == {}
    assert table.stats()["cached_answers"] == 0
    for name in (SVC, OTHER):
        for c in CLIENTS:
            ch = table.resolve(name, A, c)
            assert ch is not None and ch.dc == "idc"


def test_region_change_rebuilds_everything() -> None:
    snap = two_service_snapshot()
    table = RoutingTable(snap)
    before_office = table.resolve(OTHER, A, Client.of("192.0.2.9"))
    assert before_office is not None and before_office.dc == "cloud"
    old = dict(table.services)
    new_snap, services = commit(snap, Region("office", ("198.51.100.0/24",)))
    assert services is None
    table.update(new_snap, services)
    for name in (SVC, OTHER):
        assert table.services[name] is not old[name]
    moved_in = table.explain(OTHER, A, Client.of("198.51.100.9"))
    assert moved_in is not None and moved_in["region"] == "office"
    assert moved_in["datacenter"] == "cloud"
    moved_out = table.explain(OTHER, A, Client.of("192.0.2.9"))
    assert moved_out is not None and moved_out["region"] == "default"


def test_small_cache_limit_keeps_answers_correct() -> None:
    snap = two_service_snapshot()
    big = RoutingTable(snap)
    small = RoutingTable(snap, max_cached=50)
    for c in CLIENTS:
        for name in (SVC, OTHER):
            assert small.resolve(name, A, c) == big.resolve(name, A, c)
            assert small.stats()["cached_answers"] <= 50


# -- unknown names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["unknown.example.com", "example.com", "", "api.example.com.x", "x.api.example.com"]
)
def test_unknown_names_resolve_to_none(name: str) -> None:
    table = RoutingTable(two_service_snapshot())
    for qtype in (A, AAAA):
        assert table.resolve(name, qtype, Client.of("192.0.2.1")) is None
        assert table.explain(name, qtype, Client.of("192.0.2.1")) is None
    assert table.resolve(SVC, A, Client.of("192.0.2.1")) is not None


def test_empty_snapshot_serves_nothing() -> None:
    table = RoutingTable(Snapshot())
    assert table.resolve(SVC, A, Client.of("192.0.2.1")) is None
    assert table.stats() == {
        "services": 0,
        "compiled": 0,
        "cached_answers": 0,
        "bucket_maps": 0,
        "bucket_map_bytes": 0,
        "bucket_maps_building": 0,
        "revision": 0,
    }


def test_compiled_tables_leave_out_unusable_datacenters() -> None:
    snap = build(
        IDC,
        CLOUD_RO,
        Datacenter("old", drained=True),
        Service(SVC, {"default": {"idc": 10, "cloud": 20, "old": 30}}, access="rw"),
        eps("idc", "10.0.0.", 1),
    )
    svc = compiled(snap)
    assert [dc for dc, _w, _s in svc.tables["default"]] == ["idc"]
    assert svc.excluded == {
        "cloud": "read-only datacenter, service is rw",
        "old": "drained",
    }
    tables: Mapping[str, Any] = svc.tables
    assert set(tables) == {"default"}


def test_numbered_choices_are_bounded_over_all_services(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpdns.table as table_module

    monkeypatch.setattr(table_module, "MAX_INTERNED_TOTAL", 5)
    snap = two_service_snapshot()
    table = RoutingTable(snap, hot_misses=None)
    warm(table)
    interned = sum(len(table.services[n].seen_list) for n in (SVC, OTHER))
    assert interned == 5  # the table-wide bound, though each service saw more choices
    for name in (SVC, OTHER):
        svc = table.services[name]
        for c in CLIENTS:  # cached or not, numbered or not: the same decisions
            want = decide(
                svc, 4, table.regions.names[table.regions.match(c.ip, 4)], table.bucket(c)
            )
            assert table.resolve(name, A, c) == want
        assert len(table.cached_decisions(name)) == len(CLIENTS)
    # a recompile gives its numbers back
    new_snap, services = commit(snap, Service(SVC, {"default": {"cloud": 100}}))
    table.update(new_snap, services)
    assert table._interned == len(table.services[OTHER].seen_list)
