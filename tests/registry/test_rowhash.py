"""``registry._rowhash``: a store's load loop in C files and hashes records exactly as
``RecordsDecoder``'s Python definition does (same tables, same order, same digest, same
unreadable rows), for Redis's field/value lists and SQLite's rows, on generated records:
the kinds it takes and the ones it hands back, names that are not ASCII or not UTF-8."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry import snapshot
from registry.digest import SEP, RunningDigest
from registry.model import Datacenter
from registry.snapshot import RecordsDecoder

try:
    native = importlib.import_module("registry._rowhash")
except ImportError:  # pragma: no cover - scripts/install builds it; the check below says so
    native = None

EQUAL = settings(max_examples=400, deadline=None)

KINDS = ["service", "release", "endpoint", "datacenter", "zone", "services", "", "endpoins"]
# names on the edges: the "/" an endpoint's service ends at, the separator, non-ASCII
_NAME_CHARS = st.sampled_from(list("ab.-/0\x1f\x7fé€"))
NAMES = st.text(_NAME_CHARS, max_size=12)
DC = orjson.dumps(Datacenter("dc1").to_dict())
VALUES = st.one_of(st.binary(max_size=40), st.just(DC), st.just(b'{"id":"x"}'))


def test_the_extension_is_built_and_used() -> None:
    """``scripts/install`` builds it; without it a 100,000-service start is a second slower."""
    assert native is not None
    assert snapshot._rowhash is native


def _state(decoder: RecordsDecoder, running: RunningDigest) -> Any:
    """Everything a load leaves: tables and their order, raw endpoints, bad rows, digest."""
    tables = {k: list(v.items()) for k, v in decoder.tables.items()}
    return tables, list(decoder._endpoints.items()), decoder.bad, running.count, running.total


def _both(monkeypatch: pytest.MonkeyPatch, load: Any) -> tuple[Any, Any]:
    """``load(decoder, running)`` through the C loop, then through the Python one."""
    got = []
    for module in (native, None):
        monkeypatch.setattr(snapshot, "_rowhash", module)
        decoder, running = RecordsDecoder(lazy=True), RunningDigest()
        load(decoder, running)
        got.append((_state(decoder, running), decoder))
    (c_state, c_decoder), (py_state, _) = got
    for table in (c_decoder.tables["service"], c_decoder.tables["release"], c_decoder._endpoints):
        assert all(sys.intern(k) is k for k in table)  # shared with every later use of a name
    return c_state, py_state


ROWS = st.lists(st.tuples(st.sampled_from(KINDS), NAMES, VALUES), max_size=30)


@EQUAL
@given(rows=ROWS)
def test_rows_as_sqlite_returns_them(rows: list[tuple[str, str, bytes]]) -> None:
    with pytest.MonkeyPatch.context() as mp:
        c, py = _both(mp, lambda d, r: d.add_hashed(iter(rows), r))
    assert c == py


@EQUAL
@given(
    fields=st.lists(
        st.tuples(
            st.one_of(
                st.tuples(st.sampled_from(KINDS), NAMES).map(
                    lambda kn: f"{kn[0]}{SEP}{kn[1]}".encode()
                ),
                st.binary(max_size=16),  # no separator, or not UTF-8
                st.sampled_from([b"service\x1f\xff", b"endpoint\x1fs\xc3/e", b"release\x1f"]),
            ),
            VALUES,
        ),
        max_size=30,
    )
)
def test_fields_as_redis_lists_them(fields: list[tuple[bytes, bytes]]) -> None:
    flat = [part for pair in fields for part in pair]
    with pytest.MonkeyPatch.context() as mp:
        c, py = _both(mp, lambda d, r: d.add_fields(flat, r))
    assert c == py


def test_a_registry_in_both_forms_gives_one_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """A realistic batch: services, releases and endpoints (several per service), kept raw
    under interned names and hashed, the datacenter decoded by the Python definition."""
    rows = [("datacenter", "dc1", DC)]
    for i in range(50):
        name = f"s{i}.example"
        rows += [("service", name, b'{"n":%d}' % i), ("release", name, b"{}")]
        rows += [("endpoint", f"{name}/e{j}", b'{"e":%d}' % j) for j in range(3)]
    flat = [x for kind, key, value in rows for x in (f"{kind}{SEP}{key}".encode(), value)]
    by_rows = _both(monkeypatch, lambda d, r: d.add_hashed(rows, r))
    by_fields = _both(monkeypatch, lambda d, r: d.add_fields(flat, r))
    assert by_rows[0] == by_rows[1] == by_fields[0] == by_fields[1]
    tables, endpoints, bad, count, _ = by_rows[0]
    assert count == len(rows) and not bad and dict(tables["datacenter"])["dc1"].name == "dc1"
    assert [k for k, _ in endpoints][:2] == ["s0.example", "s1.example"]
    assert dict(endpoints)["s7.example"] == [b'{"e":0}', b'{"e":1}', b'{"e":2}']
    assert dict(tables["service"])["s3.example"] == b'{"n":3}'


def test_an_error_in_the_python_part_stops_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A row the C hands back and the Python definition cannot take (a value that is not
    bytes) raises as the Python loop does, after the rows before it were taken."""

    def rows() -> Iterator[Any]:
        yield ("service", "a", b"{}")
        yield ("service", "b", "not bytes")
        yield ("service", "c", b"{}")

    for module in (native, None):
        monkeypatch.setattr(snapshot, "_rowhash", module)
        decoder = RecordsDecoder(lazy=True)
        with pytest.raises(TypeError):
            decoder.add_hashed(rows(), RunningDigest())
        assert list(decoder.tables["service"]) == ["a"]


def test_an_iterator_that_fails_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def rows() -> Iterator[Any]:
        yield ("service", "a", b"{}")
        raise OSError("disk")

    with pytest.raises(OSError, match="disk"):
        RecordsDecoder(lazy=True).add_hashed(rows(), RunningDigest())
