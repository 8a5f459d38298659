"""Steering statistics over 100,000 fixed client keys (DESIGN §3.4-§3.6).

The keys mix IPv4 clients (one per /24), IPv6 clients (one per /56) and device ids, and
are fixed, so every share below is a deterministic number; the tolerances say how far a
correct weighted rendezvous hash may plausibly land from the ideal share.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pytest

from httpdns.steering import Choice, in_canary
from httpdns.table import A, Client, RoutingTable
from registry import Change, Datacenter, Endpoint, Release, Service, Snapshot

SVC = "api.example.com"
N_V4, N_V6, N_UID = 40_000, 30_000, 30_000
N = N_V4 + N_V6 + N_UID

IDC_V1 = ("10.0.0.1", "10.0.0.2")
CLOUD_V1 = ("10.1.0.1", "10.1.0.2")
IDC_V2 = ("10.0.1.1", "10.0.1.2")
CLOUD_V2 = ("10.1.1.1", "10.1.1.2")


def v4_client(i: int, host: int | None = None) -> Client:
    """Client i of the IPv4 set: one per /24 (198.x.y.0/24 ... 199.x.y.0/24)."""
    p = 198 * 65536 + i
    h = host if host is not None else i % 200 + 1
    return Client.of(f"{p >> 16}.{(p >> 8) & 0xFF}.{p & 0xFF}.{h}")


def v6_client(i: int, low: int | None = None) -> Client:
    """Client i of the IPv6 set: one per /56; ``low`` varies bits below the /56."""
    lo = low if low is not None else i % 256
    return Client.of(f"2001:db8:{i >> 8:x}:{((i & 0xFF) << 8) | lo:x}::{i % 5 + 1:x}")


def uid_client(i: int, ip: str | None = None) -> Client:
    return Client.of(ip, f"device-{i:06d}")


@pytest.fixture(scope="module")
def clients() -> list[Client]:
    out = [v4_client(i) for i in range(N_V4)]
    out += [v6_client(i) for i in range(N_V6)]
    out += [uid_client(i) for i in range(N_UID)]
    return out


def snapshot(
    traffic: Mapping[str, Mapping[str, int]],
    endpoints: Iterable[Endpoint],
    release: Release | None = None,
    *,
    answers: int = 2,
    revision: int = 1,
) -> Snapshot:
    records: list[Datacenter | Service | Endpoint | Release] = [
        Datacenter("idc"),
        Datacenter("cloud", kind="cloud"),
        Service(SVC, traffic, answers=answers),
        *endpoints,
    ]
    if release is not None:
        records.append(release)
    snap, _ = Snapshot().apply([Change.put(r) for r in records], revision)
    return snap


def v1_endpoints() -> list[Endpoint]:
    eps = [Endpoint(SVC, f"idc-{i}", "idc", a) for i, a in enumerate(IDC_V1)]
    eps += [Endpoint(SVC, f"cloud-{i}", "cloud", a) for i, a in enumerate(CLOUD_V1)]
    return eps


def v2_endpoints() -> list[Endpoint]:
    eps = [Endpoint(SVC, f"idc-v2-{i}", "idc", a, version="v2") for i, a in enumerate(IDC_V2)]
    eps += [
        Endpoint(SVC, f"cloud-v2-{i}", "cloud", a, version="v2") for i, a in enumerate(CLOUD_V2)
    ]
    return eps


def resolve_all(table: RoutingTable, clients: Sequence[Client]) -> list[Choice]:
    out = []
    for c in clients:
        choice = table.resolve(SVC, A, c)
        assert choice is not None
        out.append(choice)
    return out


def pct(count: int, total: int) -> float:
    return 100.0 * count / total


def test_client_set_is_what_it_claims(clients: list[Client]) -> None:
    keys = [c.key for c in clients]
    assert len(set(keys)) == N  # 100,000 distinct steering keys
    assert sum(k.startswith("4:") for k in keys) == N_V4
    assert sum(k.startswith("6:") for k in keys) == N_V6
    assert sum(k.startswith("uid:") for k in keys) == N_UID
    assert {c.prefix_len for c in clients} == {24, 56, 0}


@pytest.fixture(scope="module")
def split_70_30(clients: list[Client]) -> list[str | None]:
    table = RoutingTable(snapshot({"default": {"idc": 70, "cloud": 30}}, v1_endpoints()))
    return [ch.dc for ch in resolve_all(table, clients)]


def test_70_30_split(split_70_30: list[str | None]) -> None:
    assert set(split_70_30) == {"idc", "cloud"}
    assert pct(split_70_30.count("idc"), N) == pytest.approx(70.0, abs=1.0)
    # each kind of key on its own lands near 70 % as well
    parts = {
        "v4": split_70_30[:N_V4],
        "v6": split_70_30[N_V4 : N_V4 + N_V6],
        "uid": split_70_30[N_V4 + N_V6 :],
    }
    for kind, part in parts.items():
        assert pct(part.count("idc"), len(part)) == pytest.approx(70.0, abs=2.0), kind


def test_70_30_answers_come_from_the_chosen_datacenter(clients: list[Client]) -> None:
    table = RoutingTable(snapshot({"default": {"idc": 70, "cloud": 30}}, v1_endpoints()))
    for ch in resolve_all(table, clients[::50]):
        expected = IDC_V1 if ch.dc == "idc" else CLOUD_V1
        assert sorted(ch.addresses) == sorted(expected)
        assert ch.status == "ok"


def test_70_30_to_60_40_moves_only_toward_the_side_that_grew(
    clients: list[Client], split_70_30: list[str | None]
) -> None:
    table = RoutingTable(snapshot({"default": {"idc": 60, "cloud": 40}}, v1_endpoints()))
    after = [ch.dc for ch in resolve_all(table, clients)]
    assert pct(after.count("idc"), N) == pytest.approx(60.0, abs=1.0)
    moved = [(a, b) for a, b in zip(split_70_30, after, strict=True) if a != b]
    assert moved, "a weight change must move someone"
    assert set(moved) == {("idc", "cloud")}  # every moved key went to the side that grew
    assert 9.0 <= pct(len(moved), N) <= 10.5


def test_5_percent_canary_and_nested_cohorts(clients: list[Client]) -> None:
    eps = v1_endpoints() + v2_endpoints()
    traffic = {"default": {"idc": 70, "cloud": 30}}
    t5 = RoutingTable(snapshot(traffic, eps, Release(SVC, "v1", "v2", 5.0)))
    at5 = resolve_all(t5, clients)
    canary5 = {i for i, ch in enumerate(at5) if ch.cohort == "canary"}
    assert pct(len(canary5), N) == pytest.approx(5.0, abs=0.5)
    v2 = set(IDC_V2 + CLOUD_V2)
    for i, ch in enumerate(at5):
        if i in canary5:
            assert ch.version == "v2"
            assert set(ch.addresses) <= v2
        else:
            assert ch.version == "v1"
            assert not set(ch.addresses) & v2
    # the cohort is independent of the datacenter choice: canaries split ~70/30 too
    idc_canaries = sum(at5[i].dc == "idc" for i in canary5)
    assert pct(idc_canaries, len(canary5)) == pytest.approx(70.0, abs=3.0)

    t20 = RoutingTable(snapshot(traffic, eps, Release(SVC, "v1", "v2", 20.0), revision=2))
    at20 = resolve_all(t20, clients)
    canary20 = {i for i, ch in enumerate(at20) if ch.cohort == "canary"}
    assert pct(len(canary20), N) == pytest.approx(20.0, abs=1.0)
    assert canary5 <= canary20  # nested: every 5 % key is still canary at 20 %

    # and the 10 % cohort sits between them (checked with the pure in_canary)
    t10 = RoutingTable(snapshot(traffic, eps, Release(SVC, "v1", "v2", 10.0), revision=3))
    svc10 = t10.services[SVC]
    canary10 = {i for i, c in enumerate(clients) if in_canary(svc10, t10.bucket(c))}
    assert pct(len(canary10), N) == pytest.approx(10.0, abs=0.7)
    assert canary5 <= canary10 <= canary20


def endpoint_weight_snapshot(extra: Iterable[Endpoint] = (), revision: int = 1) -> Snapshot:
    eps = [
        Endpoint(SVC, "heavy", "idc", "10.0.0.1", weight=300),
        Endpoint(SVC, "light", "idc", "10.0.0.2", weight=100),
        Endpoint(SVC, "cloud-0", "cloud", "10.1.0.1"),
        *extra,
    ]
    return snapshot({"default": {"idc": 70, "cloud": 30}}, eps, revision=revision)


def test_endpoint_choice_is_weighted_and_sticky(clients: list[Client]) -> None:
    table = RoutingTable(endpoint_weight_snapshot())
    first = resolve_all(table, clients)
    in_idc = [ch for ch in first if ch.dc == "idc"]
    assert pct(len(in_idc), N) == pytest.approx(70.0, abs=1.0)
    for ch in in_idc:
        assert sorted(ch.addresses) == ["10.0.0.1", "10.0.0.2"]  # both, in some order
    heavy_first = sum(ch.addresses[0] == "10.0.0.1" for ch in in_idc)
    assert pct(heavy_first, len(in_idc)) == pytest.approx(75.0, abs=2.0)

    # sticky: an independently built table over an equal snapshot answers identically
    again = resolve_all(RoutingTable(endpoint_weight_snapshot(revision=7)), clients)
    assert [ch.addresses for ch in again] == [ch.addresses for ch in first]


def test_same_key_same_answer_for_other_addresses_of_the_key(clients: list[Client]) -> None:
    table = RoutingTable(endpoint_weight_snapshot())
    for i in range(0, N_V4, 8):  # another host in the same /24
        assert table.resolve(SVC, A, v4_client(i, host=254)) == table.resolve(SVC, A, clients[i])
    for i in range(0, N_V6, 6):  # other bits below the /56
        other = v6_client(i, low=(i + 101) % 256)
        assert other.key == clients[N_V4 + i].key
        assert table.resolve(SVC, A, other) == table.resolve(SVC, A, clients[N_V4 + i])
    for i in range(0, N_UID, 6):  # a device id wins over whatever address it comes from
        other = uid_client(i, ip=f"203.0.113.{i % 250 + 1}")
        assert table.resolve(SVC, A, other) == table.resolve(SVC, A, clients[N_V4 + N_V6 + i])


def test_adding_an_endpoint_only_moves_first_choices_to_it(clients: list[Client]) -> None:
    before = resolve_all(RoutingTable(endpoint_weight_snapshot()), clients)
    new = Endpoint(SVC, "new", "idc", "10.0.0.3", weight=100)
    after = resolve_all(RoutingTable(endpoint_weight_snapshot([new], revision=2)), clients)
    changed = 0
    in_idc = 0
    new_first = 0
    for b, a in zip(before, after, strict=True):
        assert a.dc == b.dc  # an endpoint change never moves datacenters
        if a.dc != "idc":
            continue
        in_idc += 1
        new_first += a.addresses[0] == "10.0.0.3"
        if a.addresses[0] != b.addresses[0]:
            changed += 1
            assert a.addresses[0] == "10.0.0.3"
    # the new endpoint takes 100 / 500 of first choices, all taken from the others
    assert changed == new_first
    assert pct(new_first, in_idc) == pytest.approx(20.0, abs=1.5)
