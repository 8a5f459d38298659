"""``httpdns.impact`` and the pure helpers behind safe operations: shift semantics, the
would-empty check, warnings, the measured share of clients that move, and the snapshot
diff / undo behind revert and declarative apply."""

from __future__ import annotations

import pytest

from httpdns import impact
from httpdns.steering import CompiledService
from httpdns.table import RoutingTable
from registry.changes import Change
from registry.errors import ValidationError
from registry.model import Datacenter, Endpoint, Release, Service
from registry.snapshot import Snapshot, declared, diff, undo
from registry.traffic import shift

DCS = {"idc": Datacenter("idc"), "cloud": Datacenter("cloud", "cloud", writable=False)}


def _snap(*services: Service, endpoints: tuple[Endpoint, ...] = ()) -> Snapshot:
    eps: dict[str, dict[str, Endpoint]] = {}
    for e in endpoints:
        eps.setdefault(e.service, {})[e.id] = e
    return Snapshot(1, DCS, {}, {s.name: s for s in services}, eps)


WWW = Service("www.x.org", {"default": {"idc": 60, "cloud": 40}})
API = Service("api.x.org", {"default": {"idc": 100}}, access="rw")
EPS = (
    Endpoint("www.x.org", "a", "idc", "192.0.2.1"),
    Endpoint("www.x.org", "b", "cloud", "198.51.100.1"),
    Endpoint("api.x.org", "c", "idc", "192.0.2.2"),
)


def _count_compiles(table: RoutingTable) -> list[str]:
    """The names the table compiles for looks from now on, in order."""
    calls: list[str] = []
    detached = table.compile_detached

    def counted(name: str) -> CompiledService:
        calls.append(name)
        return detached(name)

    table.compile_detached = counted  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize(
    ("table", "percent", "after", "moved"),
    [
        ({"idc": 60, "cloud": 40}, 50, {"idc": 30, "cloud": 70}, 30),
        ({"idc": 60, "cloud": 40}, 100, {"idc": 0, "cloud": 100}, 60),
        ({"idc": 70, "cloud": 30}, 20, {"idc": 56, "cloud": 44}, 14),
        ({"idc": 1, "cloud": 40}, 10, {"idc": 1, "cloud": 40}, 0),  # rounds to 0: skipped
    ],
)
def test_shift_moves_a_share_of_the_source(
    table: dict[str, int], percent: float, after: dict[str, int], moved: int
) -> None:
    done = shift([Service("s.x.org", {"default": table})], "idc", "cloud", percent, DCS)
    assert sum(m.moved for m in done.moves) == moved
    if moved:
        assert dict(done.services[0].traffic["default"]) == after
    else:
        assert done.services == [] and "rounds to 0" in done.skipped[0].reason


def test_shift_refuses_same_and_bad_percent() -> None:
    with pytest.raises(ValidationError):
        shift([WWW], "idc", "idc", 10)
    with pytest.raises(ValidationError):
        shift([WWW], "idc", "cloud", 0)


def test_empty_regions_use_the_steering_code() -> None:
    snap = _snap(WWW, API, endpoints=EPS)
    assert impact.empty_regions(snap) == {}
    drained = Snapshot(2, {**DCS, "idc": Datacenter("idc", drained=True)}, {}, snap.services,
                       snap.endpoints)  # fmt: skip
    assert impact.empty_regions(drained) == {"api.x.org": ["default"]}
    assert impact.newly_empty(snap, drained, ["api.x.org", "www.x.org"]) == {
        "api.x.org": ["default"]
    }
    # already empty before: not "newly" empty
    assert impact.newly_empty(drained, drained, ["api.x.org"]) == {}


def test_warnings_name_weights_that_never_apply() -> None:
    rw = Service("api.x.org", {"default": {"idc": 70, "cloud": 30}}, access="rw")
    assert impact.warnings(_snap(rw), ["api.x.org"]) == [
        "api.x.org: traffic.default.cloud=30 never applies (cloud is read-only and the service is rw)"
    ]
    assert impact.warnings(_snap(WWW), ["www.x.org"]) == []


def test_empty_versions() -> None:
    snap = _snap(WWW, endpoints=EPS)
    rel = Release("www.x.org", "v1", "v2", 5.0)
    assert impact.empty_versions(snap, [Change.put(rel)]) == [
        "www.x.org: canary version 'v2' has no endpoints"
    ]
    assert impact.empty_versions(snap, [Change.put(Release("www.x.org", "v1"))]) == []


def test_impact_is_measured_on_a_fixed_sample() -> None:
    before = _snap(WWW, endpoints=EPS)
    after = _snap(Service("www.x.org", {"default": {"idc": 30, "cloud": 70}}), endpoints=EPS)
    out = impact.impact(before, after, ["www.x.org"])
    row = out["services"]["www.x.org"]["regions"]["default"]
    assert out["sample"] == len(impact.SAMPLE) == 4096
    # rendezvous hashing: only idc clients move, so moved == idc share lost
    assert row["moved"] == pytest.approx(row["before"]["idc"] - row["after"]["idc"], abs=1e-3)
    assert 0.25 < row["moved"] < 0.35
    assert impact.impact(before, before, ["www.x.org"])["moved"] == 0.0


def test_a_deleted_service_moves_every_client_it_answered() -> None:
    before = _snap(WWW, API, endpoints=EPS)
    gone = impact.impact(before, _snap(API, endpoints=EPS[2:]), ["www.x.org"])
    assert gone["services"]["www.x.org"] == {"deleted": True, "moved": 1.0}
    assert gone["moved"] == 1.0
    # one that answered nobody (no endpoints) moves nobody; a new one neither
    silent = impact.impact(_snap(WWW, API), _snap(API), ["www.x.org"])
    assert silent["services"]["www.x.org"] == {"deleted": True, "moved": 0.0}
    assert silent["moved"] == 0.0
    new = impact.impact(_snap(API), _snap(WWW, API), ["www.x.org"])
    assert new["services"]["www.x.org"] == {"new": True} and new["moved"] == 0.0


def test_diff_and_undo_restore_a_revision() -> None:
    s0 = _snap(WWW, endpoints=EPS[:2])
    s1, eff1 = s0.apply([Change.put(Service("www.x.org", {"default": {"idc": 1}}))], 2)
    s2, eff2 = s1.apply([Change.delete("endpoint", "www.x.org/b")], 3)
    from registry.changes import ChangeSet

    target = undo(s2, [ChangeSet(2, eff1), ChangeSet(3, eff2)])
    changes = diff(s2, target)
    assert {(c.op, c.kind, c.key) for c in changes} == {
        ("put", "service", "www.x.org"), ("put", "endpoint", "www.x.org/b")}  # fmt: skip
    restored, _ = s2.apply(changes, 4)
    assert restored.services == s0.services and restored.endpoints == s0.endpoints
    # entries without recorded previous values cannot be undone
    with pytest.raises(ValidationError):
        undo(s2, [ChangeSet(3, (Change.delete("endpoint", "www.x.org/b"),))])


def test_declared_with_prune() -> None:
    s0 = _snap(WWW, API, endpoints=EPS)
    body = {"services": {"www.x.org": {"traffic": {"default": {"idc": 60, "cloud": 40}},
                                       "endpoints": {"a": {"dc": "idc", "address": "192.0.2.1"}}}}}  # fmt: skip
    assert diff(s0, declared(s0, body)) == []  # nothing new, nothing pruned
    with pytest.raises(Exception, match="still used"):  # pruning datacenters in use
        declared(s0, body, prune=True)
    body["datacenters"] = {"idc": {}, "cloud": {"kind": "cloud", "writable": False}}
    pruned = diff(s0, declared(s0, body, prune=True))
    assert [(c.op, c.key) for c in pruned] == [("delete", "www.x.org/b"), ("delete", "api.x.org")]


def test_answering_empty_spreads_a_large_pass_over_looks_within_its_budget() -> None:
    services = [Service(f"s{i}.x.org", {"default": {"idc": 100}}, access="rw") for i in range(600)]
    eps = tuple(Endpoint(s.name, "e", "idc", "192.0.2.9") for s in services[::2])  # odd ones: none
    table = RoutingTable(_snap(*services, endpoints=eps))
    first = impact.answering_empty(table, budget=0.0)  # one slice of 8 services, no more
    assert not impact.looked_at_all(table)
    assert len(first) < 300
    looks = 1
    while not impact.looked_at_all(table):
        impact.answering_empty(table, budget=0.0)
        looks += 1
    assert looks > 2
    whole = impact.answering_empty(table)
    assert whole == {s.name: ["default"] for s in services[1::2]}
    assert whole == impact.empty_regions(table.snapshot)  # what a full look finds
    # a change: the next pass looks again, and drops what is fixed
    fixed = Snapshot(2, DCS, {}, table.snapshot.services,
                     {**table.snapshot.endpoints,
                      "s1.x.org": {"e": Endpoint("s1.x.org", "e", "idc", "192.0.2.9")}})  # fmt: skip
    table.update(fixed, frozenset({"s1.x.org"}))
    after = impact.answering_empty(table)
    for _ in range(100):  # one service to compile again: a look or two
        if impact.looked_at_all(table):
            break
        after = impact.answering_empty(table)
    assert impact.looked_at_all(table)
    assert "s1.x.org" not in after and "s3.x.org" in after


def test_a_change_of_services_is_looked_at_alone_a_datacenter_change_everywhere() -> None:
    services = [Service(f"s{i}.x.org", {"default": {"idc": 100}}, access="rw") for i in range(200)]
    eps = tuple(Endpoint(s.name, "e", "idc", "192.0.2.9") for s in services)
    table = RoutingTable(_snap(*services, endpoints=eps))
    assert impact.answering_empty(table, budget=1.0) == {}
    # one service loses its endpoint: that service alone is looked at again
    gone = {**table.snapshot.endpoints, "s7.x.org": {}}
    table.update(Snapshot(2, DCS, {}, table.snapshot.services, gone), frozenset({"s7.x.org"}))
    calls = _count_compiles(table)
    assert impact.answering_empty(table, budget=1.0) == {"s7.x.org": ["default"]}
    assert calls == ["s7.x.org"]
    # idc drained: every service answers empty, all looked at again
    drained = {**DCS, "idc": Datacenter("idc", drained=True)}
    table.update(Snapshot(3, drained, {}, table.snapshot.services, gone), None)
    assert len(impact.answering_empty(table, budget=1.0)) == 200


def test_changes_during_a_pass_are_looked_at_first_and_the_pass_goes_on() -> None:
    services = [Service(f"s{i}.x.org", {"default": {"idc": 100}}, access="rw") for i in range(320)]
    eps = {s.name: {"e": Endpoint(s.name, "e", "idc", "192.0.2.9")} for s in services}
    table = RoutingTable(Snapshot(1, DCS, {}, {s.name: s for s in services}, eps))
    calls = _count_compiles(table)
    impact.answering_empty(table, budget=0.0)  # the first 8
    assert len(calls) == 8 and not impact.looked_at_all(table)
    # a change on every look (as a busy registry brings): the pass still ends
    for revision in range(2, 80):
        if impact.looked_at_all(table):
            break
        name = f"s{(revision * 37) % 320}.x.org"
        eps = {**table.snapshot.endpoints, name: {}}  # loses its endpoint: answers empty
        table.update(Snapshot(revision, DCS, {}, table.snapshot.services, eps), frozenset({name}))
        before = len(calls)
        impact.answering_empty(table, budget=0.0)
        assert calls[before] == name  # the changed service first
    assert impact.looked_at_all(table)
    # every service once, plus each changed one once more at most
    assert set(calls) == {s.name for s in services} and len(calls) < 320 + 80
    empty = {n for n, e in eps.items() if not e}
    assert set(impact.answering_empty(table)) == empty
    assert impact.answering_empty(table) == impact.empty_regions(table.snapshot)
    # a deleted service that answered empty leaves the report with its batch's look
    gone = sorted(empty)[0]
    services_left = {n: s for n, s in table.snapshot.services.items() if n != gone}
    eps_left = {n: e for n, e in table.snapshot.endpoints.items() if n != gone}
    table.update(Snapshot(50, DCS, {}, services_left, eps_left), frozenset({gone}))
    assert set(impact.answering_empty(table, budget=1.0)) == empty - {gone}


def test_several_changes_between_two_looks_are_looked_at_alone() -> None:
    services = [Service(f"s{i}.x.org", {"default": {"idc": 100}}, access="rw") for i in range(400)]
    eps = {s.name: {"e": Endpoint(s.name, "e", "idc", "192.0.2.9")} for s in services}
    table = RoutingTable(_snap(*services, endpoints=tuple(e["e"] for e in eps.values())))
    assert impact.answering_empty(table, budget=1.0) == {} and impact.looked_at_all(table)
    calls = _count_compiles(table)
    # three batches land before the next look (a burst of changes at a busy node)
    for revision, name in ((2, "s5.x.org"), (3, "s9.x.org"), (4, "s5.x.org")):
        back = {"e": Endpoint(name, "e", "idc", "192.0.2.9")}  # s5 gets its endpoint back
        eps = {**eps, name: {} if revision < 4 else back}
        table.update(Snapshot(revision, DCS, {}, table.snapshot.services, eps), frozenset({name}))
    found = impact.answering_empty(table, budget=0.0)  # one slice: 8 services at most
    assert impact.looked_at_all(table)  # those two alone, not a new pass over 400
    assert sorted(calls) == ["s5.x.org", "s9.x.org"]
    assert found == {"s9.x.org": ["default"]} == impact.empty_regions(table.snapshot)
    # past what the table remembers, or after a rebuild: every service again
    table.update(Snapshot(5, DCS, {}, table.snapshot.services, eps), None)
    impact.answering_empty(table, budget=0.0)
    assert not impact.looked_at_all(table)
