"""Snapshot.apply is pure: it checks references and returns a new snapshot or raises."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

import registry
from registry import Change, ChangeSet, Datacenter, Endpoint, Region, Release, Service, Snapshot

API = "api.example.com"
WEB = "web.example.com"


def dc(name: str, **body: Any) -> Change:
    return Change.put(Datacenter.from_dict(name, body))


def region(name: str, *cidrs: str) -> Change:
    return Change.put(Region.from_dict(name, {"cidrs": list(cidrs)}))


def svc(name: str, traffic: dict[str, dict[str, int]], **body: Any) -> Change:
    return Change.put(Service.from_dict(name, {"traffic": traffic, **body}))


def ep(service: str, eid: str, dc: str = "dc1", address: str = "10.0.0.1", **body: Any) -> Change:
    return Change.put(Endpoint.from_dict(service, eid, {"dc": dc, "address": address, **body}))


def rel(service: str, **body: Any) -> Change:
    return Change.put(Release.from_dict(service, body))


@pytest.fixture
def base() -> Snapshot:
    """dc1 (idc), dc2 (cloud, read-only), region eu; API on both dcs with a release; WEB on dc1."""
    snap, _ = Snapshot().apply(
        [
            dc("dc1"),
            dc("dc2", kind="cloud", writable=False),
            region("eu", "10.0.0.0/8", "2001:db8::/32"),
            svc(API, {"default": {"dc1": 100, "dc2": 0}, "eu": {"dc2": 100}}),
            ep(API, "e1", "dc1", "10.0.0.1"),
            ep(API, "e2", "dc2", "2001:db8::2"),
            rel(API, stable="v1", canary="v2", canary_percent=10),
            svc(WEB, {"default": {"dc1": 1}}),
            ep(WEB, "w1", "dc1", "10.0.0.9"),
        ],
        1,
    )
    return snap


def test_apply_builds_a_new_snapshot_at_the_revision(base: Snapshot) -> None:
    assert base.revision == 1
    assert set(base.datacenters) == {"dc1", "dc2"}
    assert set(base.regions) == {"eu"}
    assert set(base.services) == {API, WEB}
    assert set(base.endpoints_of(API)) == {"e1", "e2"}
    assert base.endpoints_of(API)["e2"].address == "2001:db8::2"
    assert base.releases[API].canary_percent == 10
    assert base.endpoints_of("nope.example.com") == {}


def test_plain_puts_are_their_own_effective_changes(base: Snapshot) -> None:
    changes = [ep(API, "e3", "dc2", "10.0.0.3"), dc("dc3", kind="cloud")]
    new, effective = base.apply(changes, 2)
    assert effective == tuple(changes)
    assert new.revision == 2
    assert new.endpoints_of(API)["e3"].dc == "dc2"


def test_apply_leaves_the_old_snapshot_untouched_on_success(base: Snapshot) -> None:
    before = base.to_dict()
    new, _ = base.apply(
        [ep(API, "e3"), Change.delete("endpoint", f"{WEB}/w1"), dc("dc3"), region("us")], 2
    )
    assert base.to_dict() == before
    assert "e3" not in base.endpoints_of(API)
    assert "w1" in base.endpoints_of(WEB)
    assert "e3" in new.endpoints_of(API)
    assert new.endpoints_of(WEB) == {}
    assert WEB not in new.endpoints


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param([ep(API, "e3", dc="dc9")], id="alone"),
        pytest.param([dc("dc3"), ep(API, "e3", dc="dc3"), ep(API, "e4", dc="dc9")], id="last"),
        pytest.param([ep(API, "e4", dc="dc9"), dc("dc8")], id="other-dc-created"),
    ],
)
def test_endpoint_in_unknown_datacenter_is_rejected(base: Snapshot, changes: list[Change]) -> None:
    before = base.to_dict()
    with pytest.raises(registry.ValidationError) as info:
        base.apply(changes, 2)
    assert info.value.field == "dc"
    assert "dc9" in str(info.value)
    assert base.to_dict() == before
    assert base.revision == 1
    assert not {"dc3", "dc8"} & set(base.datacenters)


def test_endpoint_whose_datacenter_is_created_in_the_same_batch_is_accepted(
    base: Snapshot,
) -> None:
    new, _ = base.apply([ep(API, "e3", dc="dc3"), dc("dc3")], 2)
    assert new.endpoints_of(API)["e3"].dc == "dc3"


def test_endpoint_of_unknown_service_is_not_found(base: Snapshot) -> None:
    with pytest.raises(registry.NotFoundError, match=re.escape("nope.example.com")):
        base.apply([ep("nope.example.com", "x1")], 2)
    assert "nope.example.com" not in base.endpoints


def test_release_of_unknown_service_is_not_found(base: Snapshot) -> None:
    with pytest.raises(registry.NotFoundError, match=re.escape("nope.example.com")):
        base.apply([rel("nope.example.com", stable="v1")], 2)


@pytest.mark.parametrize(
    ("traffic", "field"),
    [
        pytest.param({"default": {"dc9": 1}}, "traffic.default.dc9", id="default-unknown-dc"),
        pytest.param(
            {"default": {"dc1": 1}, "eu": {"dc1": 1, "dc9": 1}}, "traffic.eu.dc9", id="region-dc"
        ),
        pytest.param({"default": {"dc1": 1}, "asia": {"dc1": 1}}, "traffic.asia", id="region"),
    ],
)
@pytest.mark.parametrize("name", [pytest.param(API, id="update"), pytest.param("new.io", id="new")])
def test_traffic_naming_unknown_datacenter_or_region_is_rejected(
    base: Snapshot, traffic: dict[str, dict[str, int]], field: str, name: str
) -> None:
    before = base.to_dict()
    with pytest.raises(registry.ValidationError) as info:
        base.apply([svc(name, traffic)], 2)
    assert info.value.field == field
    assert base.to_dict() == before


def test_traffic_may_name_a_region_created_in_the_same_batch(base: Snapshot) -> None:
    new, _ = base.apply([svc(WEB, {"default": {"dc1": 1}, "us": {"dc1": 1}}), region("us")], 2)
    assert set(new.services[WEB].traffic) == {"default", "us"}


@pytest.mark.parametrize(
    ("setup", "victim", "user"),
    [
        # dc3 only appears in WEB's endpoints.
        pytest.param([dc("dc3"), ep(WEB, "w2", dc="dc3")], "dc3", f"endpoints of {WEB}", id="ep"),
        # dc3 only appears in WEB's traffic (with weight 0, which still references it).
        pytest.param(
            [dc("dc3"), svc(WEB, {"default": {"dc1": 1, "dc3": 0}})],
            "dc3",
            f"service {WEB}",
            id="traffic",
        ),
        pytest.param([], "dc2", f"service {API}", id="both"),
    ],
)
def test_deleting_a_datacenter_in_use_is_refused(
    base: Snapshot, setup: list[Change], victim: str, user: str
) -> None:
    snap, _ = base.apply(setup, 2)
    before = snap.to_dict()
    with pytest.raises(registry.InUseError) as info:
        snap.apply([Change.delete("datacenter", victim)], 3)
    assert user in str(info.value)
    assert info.value.status == 409
    assert snap.to_dict() == before
    assert victim in snap.datacenters


def test_datacenter_can_be_deleted_once_nothing_uses_it_in_the_same_batch(base: Snapshot) -> None:
    new, _ = base.apply(
        [
            Change.delete("endpoint", f"{API}/e2"),
            svc(API, {"default": {"dc1": 100}}),
            Change.delete("datacenter", "dc2"),
        ],
        2,
    )
    assert "dc2" not in new.datacenters
    assert "dc2" in base.datacenters


def test_deleting_a_region_in_use_is_refused(base: Snapshot) -> None:
    with pytest.raises(registry.InUseError, match=re.escape(API)):
        base.apply([Change.delete("region", "eu")], 2)
    new, _ = base.apply([svc(API, {"default": {"dc1": 1}}), Change.delete("region", "eu")], 2)
    assert new.regions == {}


def test_deleting_a_service_cascades_to_its_endpoints_and_release(base: Snapshot) -> None:
    before = base.to_dict()
    new, effective = base.apply([Change.delete("service", API)], 2)
    assert set(effective) == {
        Change.delete("endpoint", f"{API}/e1"),
        Change.delete("endpoint", f"{API}/e2"),
        Change.delete("release", API),
        Change.delete("service", API),
    }
    assert len(effective) == 4
    assert API not in new.services
    assert API not in new.endpoints
    assert API not in new.releases
    assert new.endpoints_of(WEB) == base.endpoints_of(WEB)
    assert base.to_dict() == before
    # Replaying the effective changes (what a second store does from the feed) is equivalent.
    replayed, _ = base.apply(effective, 2)
    assert replayed == new


def test_deleting_a_service_without_endpoints_or_release_is_just_that(base: Snapshot) -> None:
    snap, _ = base.apply([Change.delete("endpoint", f"{WEB}/w1")], 2)
    _, effective = snap.apply([Change.delete("service", WEB)], 3)
    assert effective == (Change.delete("service", WEB),)


def test_a_service_can_be_deleted_and_recreated_in_one_batch(base: Snapshot) -> None:
    new, _ = base.apply(
        [
            Change.delete("service", API),
            svc(API, {"default": {"dc1": 1}}),
            ep(API, "n1", "dc1", "10.0.0.50"),
        ],
        2,
    )
    assert set(new.endpoints_of(API)) == {"n1"}
    assert API not in new.releases


def test_endpoint_put_after_its_service_is_deleted_is_not_found(base: Snapshot) -> None:
    with pytest.raises(registry.NotFoundError):
        base.apply([Change.delete("service", API), ep(API, "n1")], 2)


@pytest.mark.parametrize(
    ("kind", "key"),
    [
        ("datacenter", "dc9"),
        ("region", "asia"),
        ("service", "nope.example.com"),
        ("endpoint", f"{API}/e9"),
        ("endpoint", "nope.example.com/e1"),
        ("release", WEB),
    ],
)
def test_deleting_a_missing_record_is_not_found(base: Snapshot, kind: Any, key: str) -> None:
    before = base.to_dict()
    with pytest.raises(registry.NotFoundError) as info:
        base.apply([dc("dc3"), Change.delete(kind, key)], 2)
    assert info.value.status == 404
    assert key.rsplit("/", 1)[-1] in str(info.value)
    assert base.to_dict() == before


def test_deleting_the_same_record_twice_in_one_batch_is_not_found(base: Snapshot) -> None:
    with pytest.raises(registry.NotFoundError):
        base.apply([Change.delete("endpoint", f"{WEB}/w1")] * 2, 2)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param([ep(API, "e1")], frozenset({API}), id="endpoint"),
        pytest.param(
            [Change.delete("release", API), svc(WEB, {"default": {"dc1": 1}})],
            frozenset({API, WEB}),
            id="release-and-service",
        ),
        pytest.param(
            [Change.delete("endpoint", f"{WEB}/w1"), ep(WEB, "w2")], frozenset({WEB}), id="same"
        ),
        pytest.param([], frozenset(), id="empty"),
        pytest.param([dc("dc3")], None, id="datacenter"),
        pytest.param([region("us")], None, id="region"),
        pytest.param([ep(API, "e1"), Change.delete("region", "us")], None, id="mixed"),
    ],
)
def test_changeset_services(changes: list[Change], expected: frozenset[str] | None) -> None:
    assert ChangeSet(1, tuple(changes)).services == expected


def test_snapshot_round_trips_through_json(base: Snapshot) -> None:
    snap, _ = base.apply([dc("dc3", drained=True, labels={"a": "b"})], 2)
    data = json.loads(json.dumps(snap.to_dict()))
    loaded = Snapshot.load(data)
    assert loaded == snap
    assert loaded.to_dict() == snap.to_dict()
    assert data["revision"] == 2
    assert data["services"][WEB]["release"] is None
    assert set(data["services"][API]["endpoints"]) == {"e1", "e2"}


def test_empty_snapshot_round_trips() -> None:
    assert Snapshot.load(Snapshot().to_dict()) == Snapshot()
