"""Validation table for the registry records: every bad value names its field."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import pytest

from registry import (
    Change,
    Datacenter,
    Endpoint,
    Region,
    RegistryError,
    Release,
    Service,
    ValidationError,
)

SVC = "api.example.com"
TRAFFIC = {"default": {"dc1": 100}}

# 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253 characters: the longest legal name.
NAME_253 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
# The same with one more character in the last label: 254, every label still legal.
NAME_254 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 62])

DROP: Any = object()
"""An override value that removes the field from the body (to test required fields)."""


def _body(defaults: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in {**defaults, **over}.items() if v is not DROP}


# Builders: every field set to a good value; keyword overrides replace (or DROP) one field.


def datacenter(name: Any = "dc1", **over: Any) -> Datacenter:
    defaults = {"kind": "cloud", "writable": False, "drained": True, "labels": {"zone": "b"}}
    return Datacenter.from_dict(name, _body(defaults, over))


def region(name: Any = "eu", **over: Any) -> Region:
    return Region.from_dict(name, _body({"cidrs": ["10.0.0.0/8", "2001:db8::/32"]}, over))


def service(name: Any = SVC, **over: Any) -> Service:
    defaults = {
        "access": "rw",
        "ttl": 30,
        "answers": 3,
        "all_down": "fail-closed",
        "traffic": {"default": {"dc1": 70, "dc2": 30}, "eu": {"dc2": 100}},
    }
    return Service.from_dict(name, _body(defaults, over))


def endpoint(svc: Any = SVC, id: Any = "web-1", **over: Any) -> Endpoint:
    defaults = {
        "dc": "dc1",
        "address": "10.0.0.1",
        "port": 8080,
        "version": "v1.2",
        "weight": 100,
        "healthy": True,
        "labels": {"container": "web-1"},
    }
    return Endpoint.from_dict(svc, id, _body(defaults, over))


def release(svc: Any = SVC, **over: Any) -> Release:
    return Release.from_dict(
        svc, _body({"stable": "v1", "canary": "v2", "canary_percent": 5}, over)
    )


def traffic(value: Any) -> Service:
    return service(traffic=value)


# ---------------------------------------------------------------------------------------------
# The bad-value table: (a call that must raise, the field it must name).

BAD_DNS_NAMES = [
    pytest.param("a" * 64 + ".example.com", id="label-64-chars"),
    pytest.param(NAME_254, id="name-254-chars"),
    pytest.param(NAME_254 + ".", id="name-254-chars-plus-dot"),
    pytest.param("api example.com", id="space"),
    pytest.param("*.example.com", id="star"),
    pytest.param("api..example.com", id="empty-label"),
    pytest.param(".example.com", id="leading-dot"),
    pytest.param("api.example.com..", id="two-trailing-dots"),
    pytest.param(".", id="root"),
    pytest.param("", id="empty"),
    pytest.param("-api.example.com", id="label-leading-hyphen"),
    pytest.param("api-.example.com", id="label-trailing-hyphen"),
    pytest.param("api.example.com-", id="last-label-trailing-hyphen"),
    pytest.param("x.example.com\n", id="trailing-newline"),
    pytest.param("api/v1.example.com", id="slash"),
    pytest.param("api:80.example.com", id="colon"),
    pytest.param("b\u00fccher.example", id="non-ascii"),
    pytest.param(5, id="not-a-string"),
    pytest.param(None, id="none"),
]

BAD_IDENTIFIERS = [
    pytest.param("a" * 64, id="64-chars"),
    pytest.param("dc 1", id="space"),
    pytest.param("dc.1", id="dot"),
    pytest.param("dc_1", id="underscore"),
    pytest.param("dc*", id="star"),
    pytest.param("-dc", id="leading-hyphen"),
    pytest.param("dc-", id="trailing-hyphen"),
    pytest.param("dc1\n", id="trailing-newline"),
    pytest.param("", id="empty"),
    pytest.param(1, id="not-a-string"),
    pytest.param(None, id="none"),
]

BAD_TOKENS = [
    pytest.param("web 1", id="space"),
    pytest.param("web/1", id="slash"),
    pytest.param("web*", id="star"),
    pytest.param("-web", id="leading-hyphen"),
    pytest.param(".web", id="leading-dot"),
    pytest.param("web-1\n", id="trailing-newline"),
    pytest.param("", id="empty"),
    pytest.param("a" * 129, id="129-chars"),
    pytest.param(7, id="not-a-string"),
]

BAD_CIDRS = [
    pytest.param("garbage", id="garbage"),
    pytest.param("10.0.0.1/8", id="host-bits-set"),
    pytest.param("10.0.0.0/33", id="prefix-33"),
    pytest.param("2001:db8::1/32", id="v6-host-bits-set"),
    pytest.param("2001:db8::/129", id="v6-prefix-129"),
    pytest.param("10.0.0.0/8\n", id="trailing-newline"),
    pytest.param("", id="empty"),
    pytest.param(167772160, id="not-a-string"),
]

BAD_ADDRESSES = [
    pytest.param("garbage", id="garbage"),
    pytest.param("300.1.1.1", id="octet-300"),
    pytest.param("10.0.0", id="three-octets"),
    pytest.param("01.2.3.4", id="leading-zero"),
    pytest.param("fe80::1%eth0", id="v6-scope-id"),
    pytest.param("10.0.0.1/32", id="cidr"),
    pytest.param("10.0.0.1\n", id="trailing-newline"),
    pytest.param("", id="empty"),
    pytest.param(167772161, id="integer"),
    pytest.param(None, id="none"),
]


def _each(builder: Callable[..., Any], field: str, values: list[Any], prefix: str) -> list[Any]:
    """One case per value: ``builder(value)`` must fail on ``field``."""
    return [
        pytest.param(partial(builder, p.values[0]), field, id=f"{prefix}-{p.id}") for p in values
    ]


def _kw(
    builder: Callable[..., Any], key: str, values: list[Any], field: str | None = None
) -> list[Any]:
    """One case per value of keyword ``key``: ``builder(key=value)`` must fail on ``field``."""
    return [
        pytest.param(partial(builder, **{key: v}), field or key, id=f"{key}={v!r}") for v in values
    ]


BAD = [
    # --- names --------------------------------------------------------------------------------
    *_each(service, "name", BAD_DNS_NAMES, "service-name"),
    *_each(endpoint, "service", BAD_DNS_NAMES, "endpoint-service"),
    *_each(release, "service", BAD_DNS_NAMES, "release-service"),
    *_each(datacenter, "name", BAD_IDENTIFIERS, "datacenter-name"),
    *_each(region, "name", BAD_IDENTIFIERS, "region-name"),
    pytest.param(partial(region, "default"), "name", id="region-name-default"),
    pytest.param(partial(region, "DEFAULT"), "name", id="region-name-DEFAULT"),
    *_kw(endpoint, "dc", ["dc 1", "dc1\n", "-dc", "a" * 64, 1]),
    # --- endpoint ids and versions --------------------------------------------------------------
    *[
        pytest.param(partial(endpoint, SVC, p.values[0]), "id", id=f"endpoint-id-{p.id}")
        for p in BAD_TOKENS
    ],
    *[
        pytest.param(partial(endpoint, version=p.values[0]), "version", id=f"version-{p.id}")
        for p in BAD_TOKENS
    ],
    *[
        pytest.param(partial(release, stable=p.values[0]), "stable", id=f"stable-{p.id}")
        for p in BAD_TOKENS
    ],
    *[
        pytest.param(partial(release, canary=p.values[0]), "canary", id=f"canary-{p.id}")
        for p in BAD_TOKENS
    ],
    # --- region CIDRs ---------------------------------------------------------------------------
    *[
        pytest.param(partial(region, cidrs=[p.values[0]]), "cidrs[0]", id=f"cidr-{p.id}")
        for p in BAD_CIDRS
    ],
    pytest.param(
        partial(region, cidrs=["10.0.0.0/8", "10.0.0.1/8"]), "cidrs[1]", id="cidr-second-bad"
    ),
    pytest.param(partial(region, cidrs="10.0.0.0/8"), "cidrs", id="cidrs-not-a-list"),
    pytest.param(partial(region, cidrs={"10.0.0.0/8": 1}), "cidrs", id="cidrs-an-object"),
    # --- endpoint addresses ---------------------------------------------------------------------
    *[
        pytest.param(partial(endpoint, address=p.values[0]), "address", id=f"address-{p.id}")
        for p in BAD_ADDRESSES
    ],
    # --- weights --------------------------------------------------------------------------------
    *_kw(endpoint, "weight", [-1, 10001, True, False, "100", 1.5, None]),
    pytest.param(partial(traffic, {"default": {"dc1": -1}}), "traffic.default.dc1", id="tw=-1"),
    pytest.param(
        partial(traffic, {"default": {"dc1": 10001}}), "traffic.default.dc1", id="tw=10001"
    ),
    pytest.param(partial(traffic, {"default": {"dc1": True}}), "traffic.default.dc1", id="tw=True"),
    pytest.param(partial(traffic, {"default": {"dc1": "5"}}), "traffic.default.dc1", id="tw='5'"),
    pytest.param(partial(traffic, {"default": {"dc1": 2.5}}), "traffic.default.dc1", id="tw=2.5"),
    pytest.param(
        partial(traffic, {"default": {"dc1": 1}, "eu": {"dc2": -5}}),
        "traffic.eu.dc2",
        id="tw-eu=-5",
    ),
    # --- traffic tables -------------------------------------------------------------------------
    pytest.param(partial(traffic, {"eu": {"dc1": 100}}), "traffic", id="traffic-no-default"),
    pytest.param(partial(traffic, {}), "traffic", id="traffic-empty"),
    pytest.param(
        partial(traffic, {"default": {"dc1": 0, "dc2": 0}, "eu": {"dc1": 100}}),
        "traffic.default",
        id="traffic-default-all-zero",
    ),
    pytest.param(partial(traffic, {"default": {}}), "traffic.default", id="traffic-default-empty"),
    pytest.param(partial(traffic, [["default", {}]]), "traffic", id="traffic-a-list"),
    pytest.param(partial(traffic, "default"), "traffic", id="traffic-a-string"),
    pytest.param(partial(traffic, None), "traffic", id="traffic-none"),
    pytest.param(partial(traffic, {"default": 100}), "traffic.default", id="table-a-number"),
    pytest.param(
        partial(traffic, {"default": [["dc1", 100]]}), "traffic.default", id="table-a-list"
    ),
    pytest.param(
        partial(traffic, {"default": {"dc 1": 100}}), "traffic.default.dc 1", id="traffic-bad-dc"
    ),
    pytest.param(
        partial(traffic, {"default": {"dc1\n": 100}}),
        "traffic.default.dc1\n",
        id="traffic-dc-newline",
    ),
    pytest.param(
        partial(traffic, {"default": {"dc1": 1}, "eu west": {"dc1": 1}}),
        "traffic.eu west",
        id="traffic-bad-region",
    ),
    # --- release --------------------------------------------------------------------------------
    *_kw(
        release,
        "canary_percent",
        [-1, 100.01, 101, 5.555, 0.001, "abc", "", True, None, [5], float("nan"), float("inf")],
    ),
    pytest.param(partial(release, canary=DROP), "canary_percent", id="percent-without-canary"),
    pytest.param(partial(release, canary=None), "canary_percent", id="percent-with-canary-null"),
    # --- ranges and types -----------------------------------------------------------------------
    *_kw(endpoint, "port", [0, 65536, -1, "80", 80.0, True, None]),
    *_kw(service, "ttl", [-1, 86401, "60", 60.0, True, None]),
    *_kw(service, "answers", [0, 65, -1, "2", True]),
    *_kw(endpoint, "healthy", ["yes", "true", 1, 0, None]),
    *_kw(datacenter, "writable", ["false", 0, 1, None]),
    *_kw(datacenter, "drained", ["no", 1, None]),
    # --- choices --------------------------------------------------------------------------------
    *_kw(datacenter, "kind", ["edge", "", None, 1, ["idc"]]),
    *_kw(service, "access", ["readwrite", "w", "", None]),
    *_kw(service, "all_down", ["fail_open", "open", "", None]),
    # --- labels ---------------------------------------------------------------------------------
    pytest.param(partial(datacenter, labels={"zone": 1}), "labels.zone", id="dc-label-int"),
    pytest.param(partial(datacenter, labels={"zone": None}), "labels.zone", id="dc-label-none"),
    pytest.param(partial(datacenter, labels={1: "a"}), "labels.1", id="dc-label-int-key"),
    pytest.param(partial(datacenter, labels=["zone"]), "labels", id="dc-labels-a-list"),
    pytest.param(partial(datacenter, labels="zone=b"), "labels", id="dc-labels-a-string"),
    pytest.param(partial(endpoint, labels={"a": ["b"]}), "labels.a", id="ep-label-list"),
    pytest.param(partial(endpoint, labels={"k" * 129: "v"}), f"labels.{'k' * 129}", id="key-129"),
    pytest.param(partial(endpoint, labels={"k": "v" * 1025}), "labels.k", id="value-1025"),
    pytest.param(partial(endpoint, labels=[["a", "b"]]), "labels", id="ep-labels-a-list"),
    # --- unknown fields -------------------------------------------------------------------------
    pytest.param(partial(endpoint, wieght=5), "wieght", id="endpoint-unknown-wieght"),
    pytest.param(partial(endpoint, service=SVC), "service", id="endpoint-unknown-service"),
    pytest.param(partial(service, tll=5), "tll", id="service-unknown-tll"),
    pytest.param(
        partial(Service.from_dict, SVC, {"traffic": TRAFFIC, "name": SVC}),
        "name",
        id="service-unknown-name",
    ),
    pytest.param(partial(datacenter, writeable=True), "writeable", id="dc-unknown-writeable"),
    pytest.param(partial(region, cidr=["10.0.0.0/8"]), "cidr", id="region-unknown-cidr"),
    pytest.param(partial(release, canary_pct=5), "canary_pct", id="release-unknown-canary_pct"),
    # --- missing required fields ----------------------------------------------------------------
    pytest.param(partial(endpoint, dc=DROP), "dc", id="endpoint-missing-dc"),
    pytest.param(partial(endpoint, address=DROP), "address", id="endpoint-missing-address"),
    pytest.param(partial(service, traffic=DROP), "traffic", id="service-missing-traffic"),
    # --- bodies that are not objects ------------------------------------------------------------
    *[
        pytest.param(call, kind, id=f"{kind}-body-{type(body).__name__}")
        for body in ([{"weight": 5}], "{}", None)
        for kind, call in [
            ("datacenter", partial(Datacenter.from_dict, "dc1", body)),
            ("region", partial(Region.from_dict, "eu", body)),
            ("service", partial(Service.from_dict, SVC, body)),
            ("endpoint", partial(Endpoint.from_dict, SVC, "web-1", body)),
            ("release", partial(Release.from_dict, SVC, body)),
        ]
    ],
]


@pytest.mark.parametrize(("call", "field"), BAD)
def test_bad_value_names_its_field(call: Callable[[], object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        call()
    assert info.value.field == field
    message = str(info.value)
    assert message.startswith(f"{field}: ")
    assert len(message) > len(f"{field}: ")  # it also says what is wrong


def test_validation_error_is_a_400_registry_error() -> None:
    with pytest.raises(RegistryError) as info:
        endpoint(port=0)
    assert isinstance(info.value, ValidationError)
    assert (info.value.status, info.value.code) == (400, "invalid")
    assert "0" in info.value.detail and "65535" in info.value.detail


# ---------------------------------------------------------------------------------------------
# Edge cases found while writing the table (non-ASCII look-alikes, case-duplicate keys, mixed key types).


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(partial(service, "\u212aube.example.com"), id="service-name"),
        pytest.param(partial(datacenter, "dc\u212a"), id="datacenter-name"),
        pytest.param(partial(traffic, {"default": {"\u212a": 1}}), id="traffic-dc"),
    ],
)
def test_non_ascii_that_lowercases_to_ascii_is_rejected(call: Callable[[], object]) -> None:
    with pytest.raises(ValidationError):
        call()


@pytest.mark.parametrize(
    "table",
    [
        pytest.param({"default": {"DC1": 0, "dc1": 100}}, id="datacenter-keys"),
        pytest.param({"default": {"dc1": 1}, "EU": {"dc1": 1}, "eu": {"dc2": 1}}, id="region-keys"),
    ],
)
def test_keys_that_differ_only_in_case_are_rejected(table: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        traffic(table)
    assert info.value.field.startswith("traffic")


def test_unknown_keys_of_mixed_types_are_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        Datacenter.from_dict("dc1", {1: "x", "wieght": 2})


# ---------------------------------------------------------------------------------------------
# Good values: accepted at the boundaries, and normalised.


@pytest.mark.parametrize(
    ("call", "attr", "expected"),
    [
        pytest.param(partial(service, NAME_253), "name", NAME_253, id="name-253"),
        pytest.param(partial(service, NAME_253 + "."), "name", NAME_253, id="name-253-dot"),
        pytest.param(partial(service, "a" * 63 + ".com"), "name", "a" * 63 + ".com", id="63"),
        pytest.param(partial(service, "API.Example.COM"), "name", SVC, id="name-upper"),
        pytest.param(partial(service, "api.example.com."), "name", SVC, id="name-dot"),
        pytest.param(partial(service, "API.EXAMPLE.COM."), "name", SVC, id="name-upper-dot"),
        pytest.param(partial(service, "xn--bcher-kva.example"), "name", "xn--bcher-kva.example"),
        pytest.param(partial(service, "a-b.c9.example"), "name", "a-b.c9.example", id="hyphen"),
        pytest.param(partial(endpoint, "API.Example.com."), "service", SVC, id="ep-service"),
        pytest.param(partial(release, "Api.Example.Com."), "service", SVC, id="release-service"),
        pytest.param(partial(datacenter, "DC-1"), "name", "dc-1", id="dc-upper"),
        pytest.param(partial(datacenter, "a" * 63), "name", "a" * 63, id="dc-63"),
        pytest.param(partial(region, "EU-West"), "name", "eu-west", id="region-upper"),
        pytest.param(partial(endpoint, dc="DC1"), "dc", "dc1", id="ep-dc-upper"),
        pytest.param(partial(endpoint, SVC, "a" * 128), "id", "a" * 128, id="id-128"),
        pytest.param(partial(endpoint, SVC, "web_1.a+b-c"), "id", "web_1.a+b-c", id="id-chars"),
        pytest.param(
            partial(endpoint, address="2001:DB8:0::1"), "address", "2001:db8::1", id="v6-canon"
        ),
        pytest.param(
            partial(endpoint, address="2001:0db8:0000:0000:0000:0000:0000:0001"),
            "address",
            "2001:db8::1",
            id="v6-long",
        ),
        pytest.param(partial(endpoint, address="192.0.2.1"), "address", "192.0.2.1", id="v4"),
        pytest.param(
            partial(region, cidrs=["2001:DB8:0::/32", "192.0.2.0/24"]),
            "cidrs",
            ("2001:db8::/32", "192.0.2.0/24"),
            id="cidrs-canon",
        ),
        pytest.param(partial(region, cidrs=[]), "cidrs", (), id="cidrs-empty"),
        pytest.param(partial(endpoint, weight=10000), "weight", 10000, id="weight-10000"),
        pytest.param(partial(endpoint, weight=0), "weight", 0, id="weight-0"),
        pytest.param(partial(endpoint, port=1), "port", 1, id="port-1"),
        pytest.param(partial(endpoint, port=65535), "port", 65535, id="port-65535"),
        pytest.param(partial(endpoint, healthy=False), "healthy", False, id="unhealthy"),
        pytest.param(partial(service, ttl=0), "ttl", 0, id="ttl-0"),
        pytest.param(partial(service, ttl=86400), "ttl", 86400, id="ttl-86400"),
        pytest.param(partial(service, answers=1), "answers", 1, id="answers-1"),
        pytest.param(partial(service, answers=64), "answers", 64, id="answers-64"),
        pytest.param(
            partial(traffic, {"DEFAULT": {"DC1": 10000, "dc2": 0}, "EU": {"Dc2": 0}}),
            "traffic",
            {"default": {"dc1": 10000, "dc2": 0}, "eu": {"dc2": 0}},
            id="traffic-lowered",
        ),
        pytest.param(partial(release, canary_percent=5.55), "canary_percent", 5.55, id="p5.55"),
        pytest.param(partial(release, canary_percent=100), "canary_percent", 100.0, id="p100"),
        pytest.param(partial(release, canary_percent=0), "canary_percent", 0.0, id="p0"),
        pytest.param(partial(release, canary_percent=0.01), "canary_percent", 0.01, id="p0.01"),
        pytest.param(partial(release, canary_percent=99.99), "canary_percent", 99.99, id="p99.99"),
        pytest.param(
            partial(release, canary=DROP, canary_percent=0), "canary", None, id="no-canary-at-0"
        ),
        pytest.param(partial(datacenter, labels={}), "labels", {}, id="labels-empty"),
        pytest.param(partial(datacenter, labels=DROP), "labels", {}, id="labels-absent"),
        pytest.param(partial(endpoint, labels=None), "labels", {}, id="labels-null"),
    ],
)
def test_good_value_is_accepted(call: Callable[[], object], attr: str, expected: object) -> None:
    value = getattr(call(), attr)
    assert value == expected
    if isinstance(expected, dict):
        assert isinstance(value, Mapping)  # a read-only mapping: records are immutable
    else:
        assert type(value) is type(expected)


def test_defaults() -> None:
    assert Datacenter.from_dict("dc1", {}) == Datacenter("dc1", "idc", True, False, {})
    assert Region.from_dict("eu", {}) == Region("eu", ())
    s = Service.from_dict(SVC, {"traffic": TRAFFIC})
    assert (s.access, s.ttl, s.answers, s.all_down) == ("ro", 60, 2, "fail-open")
    e = Endpoint.from_dict(SVC, "web-1", {"dc": "dc1", "address": "10.0.0.1"})
    assert (e.port, e.version, e.weight, e.healthy, dict(e.labels)) == (80, "v1", 100, True, {})
    assert Release.from_dict(SVC, {}) == Release(SVC, None, None, 0.0)


# ---------------------------------------------------------------------------------------------
# Round trips, immutability, changes.

RECORDS = [
    pytest.param(datacenter, id="datacenter"),
    pytest.param(region, id="region"),
    pytest.param(service, id="service"),
    pytest.param(endpoint, id="endpoint"),
    pytest.param(partial(endpoint, address="2001:db8::7", labels={}), id="endpoint-v6"),
    pytest.param(release, id="release"),
    pytest.param(partial(release, canary=DROP, canary_percent=0), id="release-stable-only"),
]


@pytest.mark.parametrize("build", RECORDS)
def test_to_dict_load_round_trip(build: Callable[[], Any]) -> None:
    record = build()
    data = record.to_dict()
    through_json = json.loads(json.dumps(data))
    assert through_json == data
    again = type(record).load(through_json)
    assert again == record
    assert again.to_dict() == data


@pytest.mark.parametrize("build", RECORDS)
def test_from_dict_accepts_its_own_output(build: Callable[[], Any]) -> None:
    record = build()
    body = {k: v for k, v in record.to_dict().items() if k in type(record).FIELDS}
    if isinstance(record, Endpoint):
        assert Endpoint.from_dict(record.service, record.id, body) == record
    elif isinstance(record, Release):
        assert Release.from_dict(record.service, body) == record
    else:
        assert type(record).from_dict(record.name, body) == record


def test_to_dict_shapes() -> None:
    assert datacenter().to_dict() == {
        "name": "dc1",
        "kind": "cloud",
        "writable": False,
        "drained": True,
        "labels": {"zone": "b"},
    }
    assert region().to_dict() == {"name": "eu", "cidrs": ["10.0.0.0/8", "2001:db8::/32"]}
    assert service().to_dict() == {
        "name": SVC,
        "access": "rw",
        "ttl": 30,
        "answers": 3,
        "all_down": "fail-closed",
        "traffic": {"default": {"dc1": 70, "dc2": 30}, "eu": {"dc2": 100}},
    }
    assert endpoint().to_dict() == {
        "service": SVC,
        "id": "web-1",
        "dc": "dc1",
        "address": "10.0.0.1",
        "port": 8080,
        "version": "v1.2",
        "weight": 100,
        "healthy": True,
        "labels": {"container": "web-1"},
    }
    assert release().to_dict() == {
        "service": SVC,
        "stable": "v1",
        "canary": "v2",
        "canary_percent": 5.0,
    }


def test_from_dict_does_not_keep_the_callers_dicts() -> None:
    labels = {"zone": "b"}
    table = {"default": {"dc1": 1}}
    dc = datacenter(labels=labels)
    svc = traffic(table)
    labels["zone"] = "changed"
    table["default"]["dc1"] = 0
    assert dc.labels == {"zone": "b"}
    assert svc.traffic == {"default": {"dc1": 1}}


@pytest.mark.parametrize(
    ("build", "attr", "value"),
    [
        pytest.param(datacenter, "drained", False, id="datacenter"),
        pytest.param(region, "cidrs", (), id="region"),
        pytest.param(service, "ttl", 5, id="service"),
        pytest.param(endpoint, "weight", 5, id="endpoint"),
        pytest.param(release, "canary_percent", 50.0, id="release"),
    ],
)
def test_records_are_immutable(build: Callable[[], Any], attr: str, value: object) -> None:
    record = build()
    before = getattr(record, attr)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(record, attr, value)
    with pytest.raises((AttributeError, TypeError)):
        record.extra = 1
    assert getattr(record, attr) == before
    assert not hasattr(record, "extra")


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda: datacenter().labels.__setitem__("zone", "x"), id="dc-labels"),
        pytest.param(lambda: endpoint().labels.__setitem__("k", "v"), id="endpoint-labels"),
        pytest.param(lambda: service().traffic.__setitem__("us", {}), id="service-traffic"),
        pytest.param(
            lambda: service().traffic["default"].__setitem__("dc1", 0), id="service-weights"
        ),
    ],
)
def test_record_contents_are_immutable(mutate: Callable[[], object]) -> None:
    with pytest.raises((TypeError, AttributeError)):
        mutate()


@pytest.mark.parametrize(
    ("build", "kind", "key", "svc"),
    [
        pytest.param(datacenter, "datacenter", "dc1", None, id="datacenter"),
        pytest.param(region, "region", "eu", None, id="region"),
        pytest.param(service, "service", SVC, SVC, id="service"),
        pytest.param(endpoint, "endpoint", f"{SVC}/web-1", SVC, id="endpoint"),
        pytest.param(release, "release", SVC, SVC, id="release"),
        pytest.param(
            partial(endpoint, "Web.Example.com.", "Web_2"),
            "endpoint",
            "web.example.com/Web_2",
            "web.example.com",
            id="endpoint-normalised",
        ),
    ],
)
def test_change_put_derives_kind_and_key(
    build: Callable[[], Any], kind: str, key: str, svc: str | None
) -> None:
    record = build()
    change = Change.put(record)
    assert (change.op, change.kind, change.key) == ("put", kind, key)
    assert change.value is record
    assert change.service == svc
    assert Change.load(change.to_dict()) == change


def test_loaded_records_share_what_they_repeat() -> None:
    data = service().to_dict()
    a = Service.load(json.loads(json.dumps(data)))
    b = Service.load(json.loads(json.dumps({**data, "name": "other.example.org"})))
    assert a.traffic is b.traffic  # one read-only copy of an equal table
    assert a == service()
    with pytest.raises(TypeError):
        a.traffic["default"]["x"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        a.traffic["x"] = {}  # type: ignore[index]
    e1 = Endpoint.load(json.loads(json.dumps(endpoint().to_dict())))
    e2 = Endpoint.load(json.loads(json.dumps(endpoint().to_dict())))
    assert e1 == e2 == endpoint()
    assert e1.service is e2.service and e1.dc is e2.dc and e1.version is e2.version
