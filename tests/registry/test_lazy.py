"""Services, endpoints and releases kept raw at a load and decoded on first use
(registry/lazy.py): a record decoded late equals the one an eager load builds, a write
decodes only what it touches and is validated as ever, and a damaged record is still
found, at the load when the digest cannot vouch for the rows, or when it is first read.
Real SQLite files and a real redis-server for the stores."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from registry import Change, Snapshot
from registry import lazy as lazy_module
from registry.digest import RunningDigest, digest_of, field_name
from registry.errors import InUseError, StoreDamagedError, ValidationError
from registry.lazy import LazyRecords
from registry.redis import RedisStore
from registry.snapshot import RecordsDecoder
from registry.sqlite import SQLiteStore
from tests.servers import RedisServer

from .test_snapshot import API, WEB, dc, ep, region, rel, svc
from .test_store_contract import SVC, seed


@pytest.fixture
def base() -> Snapshot:
    """test_snapshot's registry: dc1, dc2, region eu; API (with a release) and WEB."""
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


def rows_of(snap: Snapshot) -> list[tuple[str, str, bytes]]:
    """The rows a store keeps for ``snap`` (``kind, key, record JSON``)."""
    out: list[tuple[str, str, bytes]] = []
    for kind, records in (
        ("datacenter", snap.datacenters),
        ("region", snap.regions),
        ("service", snap.services),
        ("release", snap.releases),
    ):
        out += [(kind, k, orjson.dumps(r.to_dict())) for k, r in records.items()]
    for eps in snap.endpoints.values():
        out += [("endpoint", e.key, orjson.dumps(e.to_dict())) for e in eps.values()]
    return out


def lazy_load(snap: Snapshot) -> tuple[Snapshot, RunningDigest]:
    decoder = RecordsDecoder(lazy=True)
    running = RunningDigest()
    decoder.add_hashed(rows_of(snap), running)
    got, bad = decoder.result(snap.revision)
    assert bad == []
    return got, running


def raw_count(mapping: object) -> int:
    assert isinstance(mapping, LazyRecords)
    return mapping.undecoded()


def test_a_lazy_load_decodes_nothing_and_each_record_on_first_use_equals_the_eager_one(
    base: Snapshot,
) -> None:
    lazy, running = lazy_load(base)
    eager = Snapshot.from_records(base.revision, rows_of(base))
    # the inlined hashing is the digest's own
    assert running.at(1) == digest_of(1, ((field_name(k, key), v) for k, key, v in rows_of(base)))
    assert (raw_count(lazy.services), raw_count(lazy.endpoints), raw_count(lazy.releases)) == (
        2, 2, 1,
    )  # fmt: skip
    # names, sizes and membership decode nothing
    assert set(lazy.services) == {API, WEB} and len(lazy.endpoints) == 2
    assert API in lazy.services and "nope" not in lazy.releases
    assert raw_count(lazy.services) == 2
    assert lazy.services[API] == eager.services[API] == base.services[API]
    assert raw_count(lazy.services) == 1  # that one alone, and once:
    assert lazy.services[API] is lazy.services.get(API)
    assert lazy.endpoints_of(API) == eager.endpoints_of(API) == base.endpoints_of(API)
    assert lazy.releases.get(API) == base.releases[API]
    assert raw_count(lazy.endpoints) == 1 and raw_count(lazy.releases) == 0
    assert lazy == eager == base  # every record (decoding the rest)
    assert lazy.to_dict() == base.to_dict()
    assert raw_count(lazy.services) == raw_count(lazy.endpoints) == 0


def test_a_change_on_a_lazy_snapshot_decodes_only_what_it_touches(base: Snapshot) -> None:
    lazy, _ = lazy_load(base)
    changes = [
        svc(API, {"default": {"dc1": 0, "dc2": 100}}),
        ep(API, "e3", "dc1", "10.0.0.3"),
        Change.delete("endpoint", f"{API}/e1"),
    ]
    new, effective = lazy.apply(changes, 2)
    expected, expected_effective = base.apply(changes, 2)
    # WEB stays raw in both; API's old record, read as ``before``, is decoded for both
    assert raw_count(new.services) == raw_count(lazy.services) == 1
    assert effective[0].before is lazy.services[API]
    assert raw_count(new.endpoints) == 1
    assert new == expected
    assert [(c, c.before) for c in effective] == [(c, c.before) for c in expected_effective]
    assert lazy == base  # the old snapshot is untouched (now decoded by the comparison)
    # a service delete takes its raw endpoints and release along
    lazy, _ = lazy_load(base)
    gone, effective = lazy.apply([Change.delete("service", API)], 3)
    assert API not in gone.services and API not in gone.endpoints and API not in gone.releases
    assert {c.kind for c in effective} == {"service", "endpoint", "release"}
    assert raw_count(gone.services) == 1  # WEB, still


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ([ep(WEB, "w2", "nowhere", "10.0.0.8")], ValidationError),
        ([svc(WEB, {"default": {"dc9": 1}})], ValidationError),
        ([Change.delete("datacenter", "dc2")], InUseError),  # looks at every service
        ([Change.delete("region", "eu")], InUseError),
    ],
)
def test_writes_on_a_lazy_snapshot_are_validated_as_ever(
    base: Snapshot, changes: list[Change], error: type[Exception]
) -> None:
    lazy, _ = lazy_load(base)
    with pytest.raises(error):
        lazy.apply(changes, 2)
    with pytest.raises(error):
        base.apply(changes, 2)


def test_a_raw_record_that_does_not_decode_is_damage_named_when_first_read(
    base: Snapshot,
) -> None:
    rows = [
        (k, key, b"{broken" if (k, key) == ("endpoint", f"{WEB}/w1") else value)
        for k, key, value in rows_of(base)
    ]
    decoder = RecordsDecoder(lazy=True)
    decoder.add_hashed(rows, RunningDigest())
    lazy, bad = decoder.result(1)
    assert bad == []  # kept raw: the digest (here none) was to vouch for it
    assert lazy.endpoints_of(API) == base.endpoints_of(API)  # the others read fine
    with pytest.raises(StoreDamagedError, match=f"endpoints of/{WEB}"):
        lazy.endpoints_of(WEB)
    # decoded eagerly, the same rows name the record at once
    _, bad = Snapshot.decode_records(1, rows)
    assert bad == [f"endpoint/{WEB}/w1"]


# -- the stores ------------------------------------------------------------------------------------


async def test_sqlite_loads_lazily_what_the_digest_vouches_for(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/r.db"
    store = await SQLiteStore.open(url)
    try:
        await store.apply(seed())
        await store.apply([ep(SVC, "e9", "dc1", "10.0.0.9")])
        written = await store.snapshot()
    finally:
        await store.close()
    again = await SQLiteStore.open(url)
    try:
        loaded = await again.snapshot()
        assert raw_count(loaded.services) == len(loaded.services) > 0
        assert loaded == written
        # a write through the reopened store decodes what it touches, and lands
        cs = await again.apply([ep(SVC, "e10", "dc1", "10.0.0.10")])
        after = await again.snapshot()
        assert cs.changes[0].before is None and "e10" in after.endpoints_of(SVC)
    finally:
        await again.close()


@pytest.mark.parametrize("digest", ["kept", "dropped"])
async def test_sqlite_finds_a_corrupt_record_at_the_load_as_before(
    tmp_path: Path, digest: str
) -> None:
    url = f"sqlite:///{tmp_path}/r.db"
    store = await SQLiteStore.open(url)
    try:
        cs = await store.apply(seed())
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "r.db") as conn:
        conn.execute(
            "UPDATE records SET value = ? WHERE kind = 'endpoint' AND key = ?",
            (b"{broken", f"{SVC}/e1"),
        )
        if digest == "dropped":  # a registry written before digests: nothing vouches
            conn.execute("DELETE FROM meta WHERE k IN ('digest_revision', 'count', 'digest')")
    damaged = await SQLiteStore.open(url)
    try:
        why = "altered records" if digest == "kept" else f"unreadable records: endpoint/{SVC}/e1"
        with pytest.raises(StoreDamagedError, match=why) as err:
            await damaged.snapshot()
        assert f"revision {cs.revision}" in err.value.detail
        with pytest.raises(StoreDamagedError):
            await damaged.apply([dc("dc3")])
    finally:
        await damaged.close()


async def test_redis_streamed_load_is_lazy_and_equals_the_written_registry(
    redis_server: RedisServer,
) -> None:
    url = f"{redis_server.url}?prefix=lazy0:"
    store = await RedisStore.open(url)
    other = await RedisStore.open(url)
    try:
        await store.apply(seed())
        written = await store.snapshot()
        loaded = await other.snapshot()
        assert raw_count(loaded.services) == len(loaded.services) > 0
        assert loaded == written
    finally:
        await store.close()
        await other.close()


def test_copies_share_the_base_and_fold_a_grown_overlay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lazy_module, "MIN_FOLD", 4)
    decoded: list[bytes] = []

    def decode(raw: bytes) -> str:
        decoded.append(raw)
        return raw.decode().upper()

    first: LazyRecords[str] = LazyRecords(
        {f"k{i}": f"v{i}".encode() for i in range(80)}, bytes, decode, "thing"
    )
    assert first["k1"] == "V1" and decoded == [b"v1"]
    copies = [first]
    expected = {f"k{i}": f"V{i}" for i in range(80)}
    for i in range(12):  # each copy: one put, one delete, one new name
        new = copies[-1].copy()
        new[f"k{i}"] = f"new{i}"
        del new[f"k{79 - i}"]
        new[f"n{i}"] = f"added{i}"
        copies.append(new)
        expected[f"k{i}"] = f"new{i}"
        del expected[f"k{79 - i}"]
        expected[f"n{i}"] = f"added{i}"
        assert len(new) == len(expected) and set(new) == set(expected)
        assert f"k{79 - i}" not in new and f"k{79 - i}" in copies[-2]
    last = copies[-1]
    assert any(c._base is not first._base for c in copies)
    assert copies[1]._base is first._base  # a copy shares the base it was made from
    # decoded through one copy, decoded for every copy sharing the base
    assert copies[1]["k40"] == "V40" and first._base["k40"] == "V40"
    assert dict(last) == expected  # every record, decoded, through the overlay
    assert first == {f"k{i}": f"V{i}" for i in range(80)}  # the first is untouched
    assert last.pop("n3") == "added3" and "n3" not in last and last.pop("n3", None) is None
    with pytest.raises(KeyError):
        del last["nope"]


def test_a_lazy_snapshot_is_saved_without_decoding_and_loads_back_equal(base: Snapshot) -> None:
    lazy, _ = lazy_load(base)
    assert lazy.services[API] == base.services[API]  # one decoded, the rest raw
    changed, _ = lazy.apply([ep(WEB, "w2", "dc1", "10.0.0.8")], 2)  # an overlay too
    raw_before = (raw_count(changed.services), raw_count(changed.releases))
    saved = changed.dump_json()
    assert (raw_count(changed.services), raw_count(changed.releases)) == raw_before == (1, 1)
    expected, _ = base.apply([ep(WEB, "w2", "dc1", "10.0.0.8")], 2)
    assert Snapshot.load_json(saved) == expected
    # written a record at a time (as a node saves it, the GIL free between pieces)
    parts = list(changed.dump_json_parts(chunk=1))
    assert len(parts) > 10 and b"".join(parts) == saved
    assert Snapshot.load_json(expected.dump_json()) == expected  # the eager form too
