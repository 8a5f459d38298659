"""Malformed input on every front end: always a 4xx with a JSON ``{"error","detail"}``
body, never a 500, and never a change to the registry (DESIGN §6, §7)."""

from __future__ import annotations

import base64
import io
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import dns.edns
import dns.message
import pytest
from aiohttp.test_utils import TestClient

from .conftest import ACCOUNT, ADMIN, SHOP


def _b64(wire: bytes) -> str:
    return base64.urlsafe_b64encode(wire).rstrip(b"=").decode()


def _query(name: str = SHOP, rdtype: str = "A") -> bytes:
    q = dns.message.make_query(name, rdtype)
    q.id = 0x0101
    return q.to_wire()


QUERY = _query()
assert len(QUERY) > 20
GARBAGE = random.Random(1234).randbytes(40)
RESPONSE = dns.message.make_response(dns.message.from_wire(QUERY)).to_wire()
# an IPv4 ECS option claiming a /40 source prefix
BAD_LABEL_QUERY = _query("bad!char.example.org")
LONG = ".".join(["a" * 60] * 4) + ".example.org"  # 256 characters
assert len(LONG) > 253
LABEL64 = "a" * 64 + ".example.org"
BAD_NAMES = {"long": LONG, "empty-label": "a..b", "label64": LABEL64, "bad-char": "bad_char!"}
# four 63-octet labels: a name of 257 octets in wire form (dnslib cannot even pack it)
LONG_WIRE = (
    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01"
)  # fmt: skip
SOON = int(time.time()) + 3600
SIX_HOSTS = ",".join(f"h{i}.example.org" for i in range(6))
DNS_MSG = {"Content-Type": "application/dns-message"}
JSON_CT = {"Content-Type": "application/json"}
EP = f"/api/v1/services/{SHOP}/endpoints/e9"


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    status: int
    codes: tuple[str, ...]
    body: Any = None  # bytes, or a JSON-able value
    headers: dict[str, str] = field(default_factory=dict)
    # errors raised by aiohttp's router / body limit rather than a handler
    router_error: bool = False


def case(
    id: str,
    method: str,
    path: str,
    status: int,
    code: str | tuple[str, ...],
    body: Any = None,
    headers: dict[str, str] | None = None,
    router_error: bool = False,
) -> Any:
    codes = (code,) if isinstance(code, str) else code
    return pytest.param(Case(method, path, status, codes, body, headers or {}, router_error), id=id)


MALFORMED = "malformed_dns_message"
BAD = "bad_request"
INVALID = "invalid"

CASES = [
    # -- DoH ----------------------------------------------------------------------------------
    case("doh-b64-bang", "GET", "/dns-query?dns=!!!", 400, (BAD, MALFORMED)),
    case("doh-b64-padded", "GET", "/dns-query?dns=AAA=", 400, BAD),
    case("doh-b64-std-alphabet", "GET", "/dns-query?dns=ab+/cd", 400, BAD),
    case("doh-get-10-bytes", "GET", f"/dns-query?dns={_b64(QUERY[:10])}", 400, MALFORMED),
    case("doh-get-cut-question", "GET", f"/dns-query?dns={_b64(QUERY[:20])}", 400, MALFORMED),
    case("doh-get-garbage", "GET", f"/dns-query?dns={_b64(GARBAGE)}", 400, MALFORMED),
    case("doh-get-response", "GET", f"/dns-query?dns={_b64(RESPONSE)}", 400, MALFORMED),
    case("doh-post-10-bytes", "POST", "/dns-query", 400, MALFORMED, QUERY[:10], DNS_MSG),
    case("doh-post-cut-question", "POST", "/dns-query", 400, MALFORMED, QUERY[:20], DNS_MSG),
    case("doh-post-garbage", "POST", "/dns-query", 400, MALFORMED, GARBAGE, DNS_MSG),
    case("doh-post-response", "POST", "/dns-query", 400, MALFORMED, RESPONSE, DNS_MSG),
    case("doh-post-empty", "POST", "/dns-query", 400, MALFORMED, b"", DNS_MSG),
    case(
        "doh-post-text-plain",
        "POST",
        "/dns-query",
        415,
        "unsupported_media_type",
        QUERY,
        {"Content-Type": "text/plain"},
    ),
    case("doh-post-json-ct", "POST", "/dns-query", 415, "unsupported_media_type", QUERY, JSON_CT),
    case("doh-post-no-ct", "POST", "/dns-query", 415, "unsupported_media_type", QUERY),
    case(
        "doh-post-too-large",
        "POST",
        "/dns-query",
        413,
        "payload_too_large",
        QUERY + bytes(65536),
        DNS_MSG,
    ),
    case("doh-get-missing-dns", "GET", "/dns-query", 400, BAD),
    case("doh-get-empty-dns", "GET", "/dns-query?dns=", 400, BAD),
    # -- names --------------------------------------------------------------------------------
    *[case(f"d-{k}", "GET", f"/d?dn={v}", 400, BAD) for k, v in BAD_NAMES.items()],
    *[case(f"resolve-{k}", "GET", f"/resolve?name={v}", 400, BAD) for k, v in BAD_NAMES.items()],
    *[
        case(f"aliyun-d-{k}", "GET", f"/{ACCOUNT}/d?host={v}", 400, BAD)
        for k, v in BAD_NAMES.items()
    ],
    *[
        case(f"aliyun-resolve-{k}", "GET", f"/{ACCOUNT}/resolve?host={SHOP},{v}", 400, BAD)
        for k, v in BAD_NAMES.items()
    ],
    # -- other parameters ---------------------------------------------------------------------
    case(
        "resolve-type-foo",
        "GET",
        f"/resolve?name={SHOP}&type=FOO",
        400,
        BAD,
    ),
    case("resolve-type-0", "GET", f"/resolve?name={SHOP}&type=0", 400, BAD),
    case("resolve-type-65536", "GET", f"/resolve?name={SHOP}&type=65536", 400, BAD),
    case("resolve-cd-maybe", "GET", f"/resolve?name={SHOP}&cd=maybe", 400, BAD),
    case("d-type-mx", "GET", f"/d?dn={SHOP}&type=mx", 400, BAD),
    case("d-ip-short", "GET", f"/d?dn={SHOP}&ip=1.2.3", 400, BAD),
    case("d-ip-word", "GET", f"/d?dn={SHOP}&ip=nothing", 400, BAD),
    case("resolve-ip-short", "GET", f"/resolve?name={SHOP}&ip=1.2.3", 400, BAD),
    case("aliyun-ip-word", "GET", f"/{ACCOUNT}/d?host={SHOP}&ip=nothing", 400, BAD),
    case("doh-ip-word", "GET", f"/dns-query?dns={_b64(QUERY)}&ip=nothing", 400, BAD),
    case("d-uid-space", "GET", f"/d?dn={SHOP}&uid=a%20b", 400, BAD),
    case("resolve-ecs-40", "GET", f"/resolve?name={SHOP}&edns_client_subnet=1.2.3.4/40", 400, BAD),
    case("resolve-ecs-word", "GET", f"/resolve?name={SHOP}&edns_client_subnet=nothing", 400, BAD),
    case("aliyun-query-5", "GET", f"/{ACCOUNT}/d?host={SHOP}&query=5", 400, BAD),
    case("aliyun-six-hosts", "GET", f"/{ACCOUNT}/resolve?host={SIX_HOSTS}", 400, BAD),
    case(
        "aliyun-signed-six-hosts",
        "GET",
        f"/{ACCOUNT}/sign_resolve?host={SIX_HOSTS}&t=1&s=x",
        400,
        BAD,
    ),
    case("aliyun-sign-t-word", "GET", f"/{ACCOUNT}/sign_d?host={SHOP}&t=soon&s=x", 400, BAD),
    case("aliyun-sign-no-s", "GET", f"/{ACCOUNT}/sign_d?host={SHOP}&t=1", 400, BAD),
    # str.isdigit() says yes to "²", int() says no: once a 500
    case(
        "aliyun-sign-t-superscript", "GET", f"/{ACCOUNT}/sign_d?host={SHOP}&t=%C2%B2&s=x", 400, BAD
    ),
    # compare_digest() refuses non-ASCII text: once a 500
    case(
        "aliyun-sign-s-non-ascii",
        "GET",
        f"/{ACCOUNT}/sign_d?host={SHOP}&t={SOON}&s=%C3%A9",
        403,
        "invalid_signature",
    ),
    case("doh-get-name-over-255", "GET", f"/dns-query?dns={_b64(LONG_WIRE)}", 400, MALFORMED),
    case("doh-post-name-over-255", "POST", "/dns-query", 400, MALFORMED, LONG_WIRE, DNS_MSG),
    case(
        "doh-get-trailing-bytes", "GET", f"/dns-query?dns={_b64(QUERY + b'junk')}", 400, MALFORMED
    ),
    case("d-missing-dn", "GET", "/d", 400, BAD),
    case("d-empty-dn", "GET", "/d?dn=", 400, BAD),
    case("resolve-missing-name", "GET", "/resolve?type=A", 400, BAD),
    case("aliyun-missing-host", "GET", f"/{ACCOUNT}/d", 400, BAD),
    case("aliyun-resolve-missing-host", "GET", f"/{ACCOUNT}/resolve", 400, BAD),
    # -- admin bodies -------------------------------------------------------------------------
    case("admin-not-json", "PUT", "/api/v1/datacenters/idc", 400, BAD, b"{kind: idc"),
    case("admin-not-utf8", "PUT", "/api/v1/datacenters/idc", 400, BAD, b"\xff\xfe\x00"),
    case("admin-empty-body", "PUT", "/api/v1/datacenters/idc", 400, BAD, b""),
    case("admin-json-array", "PUT", "/api/v1/datacenters/idc", 400, INVALID, ["kind", "idc"]),
    case("admin-json-string", "PUT", f"/api/v1/services/{SHOP}", 400, INVALID, "ro"),
    case("admin-shift-array", "POST", "/api/v1/traffic/shift", 400, INVALID, []),
    case(
        "admin-ttl-string",
        "PUT",
        f"/api/v1/services/{SHOP}",
        400,
        INVALID,
        {"ttl": "60", "traffic": {"default": {"idc": 1}}},
    ),
    case(
        "admin-ttl-negative",
        "PUT",
        f"/api/v1/services/{SHOP}",
        400,
        INVALID,
        {"ttl": -1, "traffic": {"default": {"idc": 1}}},
    ),
    case(
        "admin-weight-negative",
        "PUT",
        EP,
        400,
        INVALID,
        {"dc": "idc", "address": "192.0.2.99", "weight": -1},
    ),
    case(
        "admin-healthy-yes",
        "PUT",
        EP,
        400,
        INVALID,
        {"dc": "idc", "address": "192.0.2.99", "healthy": "yes"},
    ),
    case(
        "admin-port-zero",
        "PUT",
        EP,
        400,
        INVALID,
        {"dc": "idc", "address": "192.0.2.99", "port": 0},
    ),
    case("admin-bad-address", "PUT", EP, 400, INVALID, {"dc": "idc", "address": "192.0.2"}),
    case("admin-missing-address", "PUT", EP, 400, INVALID, {"dc": "idc"}),
    case(
        "admin-endpoint-unknown-field",
        "PUT",
        EP,
        400,
        INVALID,
        {"dc": "idc", "address": "192.0.2.99", "zone": "a"},
    ),
    case(
        "admin-dc-unknown-field", "PUT", "/api/v1/datacenters/idc", 400, INVALID, {"colour": "red"}
    ),
    case("admin-dc-bad-kind", "PUT", "/api/v1/datacenters/idc", 400, INVALID, {"kind": "moon"}),
    case("admin-dc-bad-name", "PUT", "/api/v1/datacenters/Bad_Name", 400, INVALID, {}),
    case(
        "admin-region-bad-cidr",
        "PUT",
        "/api/v1/regions/r1",
        400,
        INVALID,
        {"cidrs": ["10.0.0.1/8"]},
    ),
    case("admin-region-default", "PUT", "/api/v1/regions/default", 400, INVALID, {"cidrs": []}),
    case(
        "admin-traffic-unknown-dc",
        "PUT",
        f"/api/v1/services/{SHOP}/traffic",
        400,
        INVALID,
        {"default": {"mars": 1}},
    ),
    case(
        "admin-release-percent-word",
        "PUT",
        f"/api/v1/services/{SHOP}/release",
        400,
        INVALID,
        {"canary": "v2", "canary_percent": "lots"},
    ),
    case(
        "admin-shift-percent-string",
        "POST",
        "/api/v1/traffic/shift",
        400,
        INVALID,
        {"from": "idc", "to": "cloud", "percent": "20"},
    ),
    case(
        "admin-shift-unknown-field",
        "POST",
        "/api/v1/traffic/shift",
        400,
        INVALID,
        {"from": "idc", "to": "cloud", "percent": 20, "dry_run": True},
    ),
    case(
        "admin-if-match-word",
        "PUT",
        "/api/v1/datacenters/idc",
        400,
        BAD,
        {"kind": "idc"},
        {"If-Match": "latest"},
    ),
    case(
        "admin-if-match-arabic-digits",
        "PUT",
        "/api/v1/datacenters/idc",
        400,
        BAD,
        {"kind": "idc"},
        {"If-Match": "\u0661\u0662"},
    ),
    case(
        "admin-if-match-superscript",
        "PUT",
        "/api/v1/datacenters/idc",
        400,
        BAD,
        {"kind": "idc"},
        {"If-Match": "\u00b2"},
    ),
    case(
        "admin-bearer-non-ascii",
        "PUT",
        "/api/v1/datacenters/idc",
        401,
        "unauthorized",
        {"kind": "idc"},
        {"Authorization": "Bearer \u00e9\u00ff"},
    ),
    case(
        "admin-if-match-negative",
        "PUT",
        "/api/v1/datacenters/idc",
        400,
        BAD,
        {"kind": "idc"},
        {"If-Match": "-3"},
    ),
    case(
        "admin-body-over-1mib",
        "PUT",
        "/api/v1/regions/r1",
        413,
        "payload_too_large",
        b"[" * (2 << 20),
        router_error=True,
    ),
    case("admin-explain-no-name", "GET", "/api/v1/explain", 400, INVALID),
    case("admin-explain-mx", "GET", f"/api/v1/explain?name={SHOP}&type=MX", 400, BAD),
    case(
        "admin-explain-type-foo",
        "GET",
        f"/api/v1/explain?name={SHOP}&type=FOO",
        400,
        BAD,
    ),
    case("admin-explain-bad-ip", "GET", f"/api/v1/explain?name={SHOP}&ip=1.2.3", 400, BAD),
    case("admin-audit-since-word", "GET", "/api/v1/audit?since=x", 400, BAD),
    case("admin-audit-since-negative", "GET", "/api/v1/audit?since=-1", 400, BAD),
    case("admin-audit-limit-zero", "GET", "/api/v1/audit?limit=0", 400, BAD),
    # -- routing ------------------------------------------------------------------------------
    case("admin-unknown-path", "GET", "/api/v1/nope", 404, "not_found", router_error=True),
    case("admin-unknown-version", "GET", "/api/v2/state", 404, "not_found", router_error=True),
    case(
        "admin-unknown-collection",
        "PUT",
        "/api/v1/widgets/x",
        404,
        "not_found",
        {},
        router_error=True,
    ),
    case(
        "admin-too-deep",
        "GET",
        f"/api/v1/services/{SHOP}/endpoints/a/b",
        404,
        "not_found",
        router_error=True,
    ),
    case(
        "admin-post-state",
        "POST",
        "/api/v1/state",
        405,
        "method_not_allowed",
        {},
        router_error=True,
    ),
    case(
        "admin-delete-shift",
        "DELETE",
        "/api/v1/traffic/shift",
        405,
        "method_not_allowed",
        router_error=True,
    ),
    case(
        "admin-get-traffic",
        "GET",
        f"/api/v1/services/{SHOP}/traffic",
        405,
        "method_not_allowed",
        router_error=True,
    ),
    case("delete-d", "DELETE", f"/d?dn={SHOP}", 405, "method_not_allowed"),
    case("put-dns-query", "PUT", "/dns-query", 405, "method_not_allowed", QUERY, DNS_MSG),
    case("post-resolve", "POST", "/resolve", 405, "method_not_allowed", {}),
    case("post-healthz", "POST", "/healthz", 405, "method_not_allowed", {}),
]


@pytest.mark.parametrize("c", CASES)
async def test_bad_input_is_a_json_4xx(served: TestClient, c: Case) -> None:
    before = await (await served.get("/healthz")).json()
    headers = {**ADMIN, **c.headers}
    if isinstance(c.body, bytes):
        data: Any = io.BytesIO(c.body) if len(c.body) > (1 << 20) else c.body
    elif c.body is None:
        data = None
    else:
        data = json.dumps(c.body).encode()
        headers.setdefault("Content-Type", "application/json")
    resp = await served.request(c.method, c.path, data=data, headers=headers)
    raw = await resp.read()
    assert 400 <= resp.status < 500, (resp.status, raw[:300])
    assert resp.status == c.status, raw[:300]
    assert resp.content_type == "application/json", raw[:300]
    body = json.loads(raw)
    assert isinstance(body, dict)
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("detail"), str) and body["detail"], body
    assert body["error"] in c.codes, body
    assert "Traceback" not in body["detail"]
    if c.path.startswith("/api/") and not c.router_error:
        # DESIGN §7: every admin response carries the revision (what to retry against)
        assert body.get("revision") == before["revision"], body
    after = await (await served.get("/healthz")).json()
    assert after["revision"] == before["revision"]  # nothing was written


ROUTER_ERRORS = [p for p in CASES if p.values[0].router_error]


@pytest.mark.parametrize("c", ROUTER_ERRORS)
async def test_router_errors_on_admin_paths_carry_the_revision(served: TestClient, c: Case) -> None:
    revision = (await (await served.get("/healthz")).json())["revision"]
    data: Any = None
    if isinstance(c.body, bytes):
        data = io.BytesIO(c.body)
    elif c.body is not None:
        data = json.dumps(c.body).encode()
    resp = await served.request(c.method, c.path, data=data, headers=ADMIN)
    assert resp.status == c.status
    assert (await resp.json()).get("revision") == revision


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 80
    assert len({p.id for p in CASES}) == len(CASES)
    assert len(ROUTER_ERRORS) == 8


async def test_doh_name_that_is_no_service_name_is_answered_not_refused_as_malformed(
    served: TestClient,
) -> None:
    """Any byte is legal in a DNS label: such a name is simply not served (RFC 1035 §3.1)."""
    resp = await served.get(f"/dns-query?dns={_b64(BAD_LABEL_QUERY)}")
    assert resp.status == 200
    reply = dns.message.from_wire(await resp.read())
    assert reply.rcode() in (dns.rcode.NXDOMAIN, dns.rcode.REFUSED)
    assert not reply.answer
