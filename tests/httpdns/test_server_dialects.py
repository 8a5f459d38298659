"""Every query dialect (DESIGN §6) against the real application and the test registry.

The admin API's ``explain`` is the reference for what steering decides; each
dialect must return exactly that answer for the same client.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import time
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
from aiohttp.test_utils import TestClient

from httpdns.config import Config
from httpdns.node import Node
from httpdns.web import make_app

from .conftest import (
    ACCOUNT,
    ADMIN,
    MOBILE_CIDRS,
    PAY,
    PAY_IDC_V4,
    PAY_TTL,
    SECRET,
    SHOP,
    SHOP_TTL,
    SIGNED_ACCOUNT,
    SIGNED_SECRET,
    ClientFactory,
    admin,
    build_registry,
    dc_of,
    make_config,
)

# Client addresses in the default region, each in its own /24.
CLIENTS = [f"10.{i}.{i * 7 % 256}.5" for i in range(1, 41)]
MOBILE_CLIENT = "100.64.3.4"


async def explain(
    client: TestClient, ip: str | None = None, name: str = SHOP, qtype: str = "A", **more: str
) -> dict[str, Any]:
    params = {"name": name, "type": qtype, **more}
    if ip is not None:
        params["ip"] = ip
    resp = await client.get("/api/v1/explain", params=params, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def d_text(client: TestClient, **params: str) -> str:
    resp = await client.get("/d", params=params)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/plain"
    return await resp.text()


async def get_json(client: TestClient, path: str, status: int = 200, **params: str) -> Any:
    resp = await client.get(path, params=params)
    body = await resp.json(content_type=None)
    assert resp.status == status, body
    return body


def sign(host: str, secret: str, t: int) -> str:
    return hashlib.md5(f"{host}-{secret}-{t}".encode()).hexdigest()


def b64url(wire: bytes) -> str:
    return base64.urlsafe_b64encode(wire).rstrip(b"=").decode()


def a_query(
    name: str = SHOP, rdtype: str = "A", qid: int = 0x4A2F, ecs: str | None = None
) -> bytes:
    options = []
    if ecs is not None:
        addr, plen = ecs.split("/")
        options.append(dns.edns.ECSOption(addr, int(plen)))
    q = dns.message.make_query(name, rdtype, use_edns=0 if options else None, options=options)
    q.id = qid
    return q.to_wire()


def addresses(msg: dns.message.Message, rdtype: int = dns.rdatatype.A) -> list[str]:
    return [rd.address for rrset in msg.answer if rrset.rdtype == rdtype for rd in rrset]


async def doh(
    client: TestClient, wire: bytes, method: str = "GET"
) -> tuple[dns.message.Message, Any]:
    if method == "GET":
        resp = await client.get("/dns-query", params={"dns": b64url(wire)})
    else:
        resp = await client.post(
            "/dns-query", data=wire, headers={"Content-Type": "application/dns-message"}
        )
    raw = await resp.read()
    assert resp.status == 200, raw
    assert resp.headers["Content-Type"] == "application/dns-message"
    return dns.message.from_wire(raw), resp.headers


# -- DNSPod style /d -----------------------------------------------------------------------------


async def test_d_plain_answers_the_steered_addresses(served: TestClient) -> None:
    for ip in CLIENTS[:10]:
        expected = (await explain(served, ip))["answer"]
        assert expected
        assert await d_text(served, dn=SHOP, ip=ip) == ";".join(expected)


async def test_d_ttl_and_clientip_suffixes(served: TestClient) -> None:
    ip = CLIENTS[0]
    expected = ";".join((await explain(served, ip))["answer"])
    assert await d_text(served, dn=SHOP, ip=ip, ttl="1") == f"{expected},{SHOP_TTL}"
    assert await d_text(served, dn=SHOP, ip=ip, clientip="1") == f"{expected}|{ip}"
    both = await d_text(served, dn=SHOP, ip=ip, ttl="1", clientip="1")
    assert both == f"{expected},{SHOP_TTL}|{ip}"
    # without ip= the peer (the test client on 127.0.0.1) is the client
    assert (await d_text(served, dn=SHOP, clientip="1")).endswith("|127.0.0.1")


async def test_d_type_aaaa_and_addrs(served: TestClient) -> None:
    ip = CLIENTS[3]
    v4 = (await explain(served, ip))["answer"]
    v6 = (await explain(served, ip, qtype="AAAA"))["answer"]
    assert v6 and all(ipaddress.ip_address(a).version == 6 for a in v6)
    assert await d_text(served, dn=SHOP, ip=ip, type="aaaa") == ";".join(v6)
    assert await d_text(served, dn=SHOP, ip=ip, type="AAAA") == ";".join(v6)
    assert await d_text(served, dn=SHOP, ip=ip, type="addrs") == ";".join(v4) + "-" + ";".join(v6)


async def test_d_unknown_name_is_an_empty_200(served: TestClient) -> None:
    for name in ("nope.example.org", "www.elsewhere.net"):
        resp = await served.get("/d", params={"dn": name, "ttl": "1", "clientip": "1"})
        assert resp.status == 200
        assert await resp.read() == b""


async def test_d_ip_steering_is_sticky_and_spreads(served: TestClient) -> None:
    seen_dcs = set()
    for ip in CLIENTS:
        first = await d_text(served, dn=SHOP, ip=ip)
        assert first
        # same address, and any address of the same /24, gets the same answer
        assert await d_text(served, dn=SHOP, ip=ip) == first
        neighbour = str(ipaddress.ip_address(ip) + 100)
        assert await d_text(served, dn=SHOP, ip=neighbour) == first
        seen_dcs.update(dc_of(a) for a in first.split(";"))
    assert seen_dcs == {"idc", "cloud"}  # 50/50: the client address really steers


async def test_d_uid_is_sticky_across_addresses(served: TestClient) -> None:
    answers = set()
    for n in range(20):
        uid = f"device-{n}"
        per_ip = {await d_text(served, dn=SHOP, ip=ip, uid=uid) for ip in CLIENTS[:6]}
        assert len(per_ip) == 1, (uid, per_ip)  # the device id wins over the address
        answers |= per_ip
        trace = await explain(served, CLIENTS[0], uid=uid)
        assert trace["client"]["key"] == f"uid:{uid}"
        assert ";".join(trace["answer"]) in per_ip
    assert len(answers) > 1  # different devices land on different answers


async def test_rw_service_is_never_answered_from_the_read_only_cloud(served: TestClient) -> None:
    for ip in CLIENTS:
        text = await d_text(served, dn=PAY, ip=ip, ttl="1")
        addrs, _, ttl = text.partition(",")
        assert int(ttl) == PAY_TTL
        assert set(addrs.split(";")) <= set(PAY_IDC_V4), (ip, text)


async def test_region_table_applies_to_its_clients(served: TestClient) -> None:
    # the mobile region gives shop idc=0 cloud=100
    for ip in (MOBILE_CLIENT, "100.100.1.1", "2001:db8:64::1"):
        text = await d_text(served, dn=SHOP, ip=ip)
        assert {dc_of(a) for a in text.split(";")} == {"cloud"}, (ip, text)
    assert ipaddress.ip_address(MOBILE_CLIENT) in ipaddress.ip_network(MOBILE_CIDRS[0])


# -- Aliyun style --------------------------------------------------------------------------------


async def test_aliyun_d_fields(served: TestClient) -> None:
    ip = CLIENTS[5]
    v4 = (await explain(served, ip))["answer"]
    v6 = (await explain(served, ip, qtype="AAAA"))["answer"]
    body = await get_json(served, f"/{ACCOUNT}/d", host=SHOP, ip=ip)
    assert body == {
        "host": SHOP,
        "ips": v4,
        "ipsv6": [],
        "ttl": SHOP_TTL,
        "origin_ttl": SHOP_TTL,
        "client_ip": ip,
    }
    body6 = await get_json(served, f"/{ACCOUNT}/d", host=SHOP, ip=ip, query="6")
    assert (body6["ips"], body6["ipsv6"]) == ([], v6)
    both = await get_json(served, f"/{ACCOUNT}/d", host=SHOP.upper(), ip=ip, query="4,6")
    assert (both["host"], both["ips"], both["ipsv6"]) == (SHOP, v4, v6)
    peer = await get_json(served, f"/{ACCOUNT}/d", host=SHOP)
    assert peer["client_ip"] == "127.0.0.1"


async def test_aliyun_unknown_name_has_no_addresses(served: TestClient) -> None:
    body = await get_json(served, f"/{ACCOUNT}/d", host="nope.example.org", query="4,6")
    assert body["host"] == "nope.example.org"
    assert body["ips"] == [] and body["ipsv6"] == []


async def test_aliyun_resolve_batch(served: TestClient) -> None:
    ip = CLIENTS[7]
    body = await get_json(
        served, f"/{ACCOUNT}/resolve", host=f"{SHOP},{PAY},nope.example.org", ip=ip
    )
    assert [e["host"] for e in body["dns"]] == [SHOP, PAY, "nope.example.org"]
    shop, pay, nope = body["dns"]
    assert shop["ips"] == (await explain(served, ip))["answer"]
    assert shop["ttl"] == SHOP_TTL
    assert pay["ips"] == (await explain(served, ip, name=PAY))["answer"]
    assert pay["ttl"] == PAY_TTL
    assert nope["ips"] == []
    for entry in body["dns"]:
        assert set(entry) == {"host", "ips", "ipsv6", "ttl", "origin_ttl", "client_ip"}
        assert entry["client_ip"] == ip


async def test_aliyun_unknown_account_is_404(served: TestClient) -> None:
    for path in ("/999999/d", "/999999/resolve", "/999999/sign_d", "/999999/sign_resolve"):
        body = await get_json(served, path, status=404, host=SHOP, t="1", s="x")
        assert body["error"] == "not_found" and body["detail"]


async def test_aliyun_signed_d_and_resolve(served: TestClient) -> None:
    t = int(time.time()) + 600
    ok = await get_json(
        served, f"/{ACCOUNT}/sign_d", host=SHOP, t=str(t), s=sign(SHOP, SECRET, t), ip=CLIENTS[0]
    )
    assert ok["ips"] == (await explain(served, CLIENTS[0]))["answer"]
    hosts = f"{SHOP},{PAY}"
    batch = await get_json(
        served, f"/{ACCOUNT}/sign_resolve", host=hosts, t=str(t), s=sign(hosts, SECRET, t)
    )
    assert [e["host"] for e in batch["dns"]] == [SHOP, PAY]
    # upper-case hex is the same signature
    upper = sign(SHOP, SECRET, t).upper()
    await get_json(served, f"/{ACCOUNT}/sign_d", host=SHOP, t=str(t), s=upper)


async def test_aliyun_signature_failures(served: TestClient) -> None:
    now = int(time.time())
    expired = now - 5
    body = await get_json(
        served,
        f"/{ACCOUNT}/sign_d",
        status=403,
        host=SHOP,
        t=str(expired),
        s=sign(SHOP, SECRET, expired),
    )
    assert body["code"] == "SignatureExpired"
    assert body["error"] and body["detail"]

    t = now + 600
    for bad in (sign(SHOP, "wrong", t), sign("other.example.org", SECRET, t), "0" * 32, "zz"):
        body = await get_json(served, f"/{ACCOUNT}/sign_d", status=403, host=SHOP, t=str(t), s=bad)
        assert body["code"] == "InvalidSignature"
    # a valid signature over a different t does not carry over
    body = await get_json(
        served, f"/{ACCOUNT}/sign_d", status=403, host=SHOP, t=str(t), s=sign(SHOP, SECRET, t + 1)
    )
    assert body["code"] == "InvalidSignature"

    ahead = now + 86400 + 3600
    body = await get_json(
        served,
        f"/{ACCOUNT}/sign_resolve",
        status=403,
        host=SHOP,
        t=str(ahead),
        s=sign(SHOP, SECRET, ahead),
    )
    assert body["code"] in ("InvalidSignature", "SignatureExpired")
    assert "24" in body["detail"]


async def test_account_requiring_signatures_refuses_unsigned(served: TestClient) -> None:
    for path in (f"/{SIGNED_ACCOUNT}/d", f"/{SIGNED_ACCOUNT}/resolve"):
        body = await get_json(served, path, status=403, host=SHOP)
        assert body["code"] == "InvalidSignature"
    t = int(time.time()) + 60
    body = await get_json(
        served,
        f"/{SIGNED_ACCOUNT}/sign_d",
        host=SHOP,
        t=str(t),
        s=sign(SHOP, SIGNED_SECRET, t),
    )
    assert body["host"] == SHOP and body["ips"]
    # the other account's secret does not sign for this one
    await get_json(
        served,
        f"/{SIGNED_ACCOUNT}/sign_d",
        status=403,
        host=SHOP,
        t=str(t),
        s=sign(SHOP, SECRET, t),
    )


# -- JSON (Google style) /resolve ------------------------------------------------------------------


async def test_json_resolve_fields(served: TestClient) -> None:
    ip = CLIENTS[9]
    expected = (await explain(served, ip))["answer"]
    body = await get_json(served, "/resolve", name=SHOP, ip=ip)
    assert body["Status"] == 0
    for flag in ("TC", "RD", "RA", "AD", "CD"):
        assert isinstance(body[flag], bool), flag
    assert body["TC"] is False and body["CD"] is False
    assert body["Question"] == [{"name": SHOP + ".", "type": 1}]
    assert body["Answer"] == [
        {"name": SHOP + ".", "type": 1, "TTL": SHOP_TTL, "data": a} for a in expected
    ]
    cd = await get_json(served, "/resolve", name=SHOP, ip=ip, cd="1")
    assert cd["CD"] is True


async def test_json_resolve_aaaa(served: TestClient) -> None:
    ip = CLIENTS[11]
    expected = (await explain(served, ip, qtype="AAAA"))["answer"]
    for qtype in ("AAAA", "aaaa", "28"):
        body = await get_json(served, "/resolve", name=SHOP, ip=ip, type=qtype)
        assert body["Question"] == [{"name": SHOP + ".", "type": 28}]
        assert [a["data"] for a in body["Answer"]] == expected
        assert {a["type"] for a in body["Answer"]} == {28}


async def test_json_edns_client_subnet_steers_like_ip(served: TestClient) -> None:
    answers = set()
    for ip in CLIENTS[:20]:
        subnet = str(ipaddress.ip_network(f"{ip}/24", strict=False))
        by_ecs = await get_json(served, "/resolve", name=SHOP, edns_client_subnet=subnet)
        by_ip = await get_json(served, "/resolve", name=SHOP, ip=ip)
        assert by_ecs["Answer"] == by_ip["Answer"], subnet
        assert by_ecs["edns_client_subnet"] == subnet
        answers.add(json.dumps(by_ecs["Answer"]))
    assert len(answers) > 1  # the subnet really decides


async def test_json_nxdomain_inside_zone_has_soa(served: TestClient) -> None:
    body = await get_json(served, "/resolve", name="nope.example.org")
    assert body["Status"] == 3
    assert "Answer" not in body or body["Answer"] == []
    (soa,) = body["Authority"]
    assert soa["name"] == "example.org."
    assert soa["type"] == 6
    assert soa["data"].startswith("ns1.example.org. hostmaster.example.org. ")


async def test_json_refused_outside_zones(served: TestClient) -> None:
    for name in ("www.example.com", "example", "org"):
        body = await get_json(served, "/resolve", name=name)
        assert body["Status"] == 5, name
        assert not body.get("Answer")


async def test_json_other_type_on_served_name_is_noerror_without_answer(
    served: TestClient,
) -> None:
    for qtype in ("MX", "TXT", "15"):
        body = await get_json(served, "/resolve", name=SHOP, type=qtype)
        assert body["Status"] == 0
        assert not body.get("Answer")


# -- DoH (RFC 8484) ------------------------------------------------------------------------------


async def test_doh_get_and_post(served: TestClient) -> None:
    for method, qid in (("GET", 0x1234), ("POST", 0xBEEF)):
        msg, headers = await doh(served, a_query(qid=qid), method)
        assert msg.id == qid
        assert msg.rcode() == dns.rcode.NOERROR
        assert msg.flags & dns.flags.QR
        assert addresses(msg), method
        assert {dc_of(a) for a in addresses(msg)} <= {"idc", "cloud"}
        (rrset,) = msg.answer
        assert rrset.ttl == SHOP_TTL
        assert headers["Cache-Control"] == f"max-age={SHOP_TTL}"
        # the peer is the client: same answer as ip=127.0.0.1
        assert addresses(msg) == (await explain(served, "127.0.0.1"))["answer"]


async def test_doh_cache_control_is_the_smallest_answer_ttl(served: TestClient) -> None:
    msg, headers = await doh(served, a_query(PAY))
    ttls = [rrset.ttl for rrset in msg.answer]
    assert ttls and min(ttls) == PAY_TTL
    assert headers["Cache-Control"] == f"max-age={min(ttls)}"
    msg6, headers6 = await doh(served, a_query(SHOP, "AAAA"), "POST")
    assert all(ipaddress.ip_address(a).version == 6 for a in addresses(msg6, dns.rdatatype.AAAA))
    assert headers6["Cache-Control"] == f"max-age={SHOP_TTL}"


async def test_doh_ecs_is_honoured_and_echoed(served: TestClient) -> None:
    answers = set()
    for ip in CLIENTS[:12]:
        subnet = str(ipaddress.ip_network(f"{ip}/24", strict=False))
        for method in ("GET", "POST"):
            msg, _ = await doh(served, a_query(ecs=subnet), method)
            assert addresses(msg) == (await explain(served, ip))["answer"], (subnet, method)
            (ecs,) = [o for o in msg.options if isinstance(o, dns.edns.ECSOption)]
            assert ecs.address == subnet.split("/")[0]
            assert ecs.srclen == 24
            assert ecs.scopelen == 24
            answers.add(tuple(addresses(msg)))
    assert len(answers) > 1


async def test_doh_nxdomain_and_refused(served: TestClient) -> None:
    for method in ("GET", "POST"):
        msg, headers = await doh(served, a_query("nope.example.org", qid=77), method)
        assert msg.id == 77
        assert msg.rcode() == dns.rcode.NXDOMAIN
        assert not msg.answer
        assert [rrset.rdtype for rrset in msg.authority] == [dns.rdatatype.SOA]
        assert str(msg.authority[0].name) == "example.org."
        assert headers["Cache-Control"].startswith("max-age=")
        msg, _ = await doh(served, a_query("www.example.com", qid=78), method)
        assert msg.id == 78
        assert msg.rcode() == dns.rcode.REFUSED
        assert not msg.answer


# -- client address rules -----------------------------------------------------------------------


async def test_x_forwarded_for_from_trusted_peer_steers(served: TestClient) -> None:
    # pick hops whose answer differs from the peer's own, so the header visibly matters
    peer_answer = await d_text(served, dn=SHOP)
    hops = [ip for ip in CLIENTS if await d_text(served, dn=SHOP, ip=ip) != peer_answer][:5]
    assert hops
    for hop in hops:
        for header in (hop, f"{hop}, 127.0.0.1", f"203.0.113.9, {hop}"):
            resp = await served.get(
                "/d", params={"dn": SHOP, "clientip": "1"}, headers={"X-Forwarded-For": header}
            )
            text = await resp.text()
            answer, _, who = text.partition("|")
            assert who == hop, header
            assert answer == await d_text(served, dn=SHOP, ip=hop)
            assert answer.split(";") == (await explain(served, hop))["answer"]
        body = await get_json_with(
            served, "/resolve", {"name": SHOP}, {"X-Forwarded-For": f"{hop}, 127.0.0.1"}
        )
        assert [a["data"] for a in body["Answer"]] == (await explain(served, hop))["answer"]
        aliyun = await get_json_with(
            served, f"/{ACCOUNT}/d", {"host": SHOP}, {"X-Forwarded-For": hop}
        )
        assert aliyun["client_ip"] == hop


async def test_x_forwarded_for_is_ignored_from_untrusted_peer(
    aiohttp_client: ClientFactory, node: Node
) -> None:
    config: Config = make_config(trusted_proxies=None)
    assert not config.trusted_proxies
    client = await aiohttp_client(make_app(node, config))
    await build_registry(client)
    resp = await client.get(
        "/d", params={"dn": SHOP, "clientip": "1"}, headers={"X-Forwarded-For": CLIENTS[0]}
    )
    assert (await resp.text()).endswith("|127.0.0.1")


async def get_json_with(
    client: TestClient, path: str, params: dict[str, str], headers: dict[str, str]
) -> Any:
    resp = await client.get(path, params=params, headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


# -- live updates ---------------------------------------------------------------------------------


async def test_draining_a_datacenter_takes_effect_on_the_next_query(served: TestClient) -> None:
    before = {ip: await d_text(served, dn=SHOP, ip=ip) for ip in CLIENTS}
    on_cloud = [ip for ip, a in before.items() if dc_of(a.split(";")[0]) == "cloud"]
    assert on_cloud and len(on_cloud) < len(CLIENTS)

    await admin(
        served,
        "PUT",
        "/api/v1/datacenters/cloud",
        {"kind": "cloud", "writable": False, "drained": True},
        expect=200,
    )
    for ip in CLIENTS:
        text = await d_text(served, dn=SHOP, ip=ip)
        assert {dc_of(a) for a in text.split(";")} == {"idc"}, (ip, text)
        msg, _ = await doh(served, a_query(ecs=f"{ip}/32"))
        assert {dc_of(a) for a in addresses(msg)} == {"idc"}
    # clients that were on idc stay exactly where they were
    for ip, answer in before.items():
        if ip not in on_cloud:
            assert await d_text(served, dn=SHOP, ip=ip) == answer

    await admin(
        served,
        "PUT",
        "/api/v1/datacenters/cloud",
        {"kind": "cloud", "writable": False, "drained": False},
        expect=200,
    )
    after = {ip: await d_text(served, dn=SHOP, ip=ip) for ip in CLIENTS}
    assert after == before  # undraining restores every client's answer


async def test_traffic_and_health_changes_are_live(served: TestClient) -> None:
    await admin(
        served,
        "PUT",
        f"/api/v1/services/{SHOP}/traffic",
        {"default": {"idc": 0, "cloud": 100}, "mobile": {"cloud": 100}},
        expect=200,
    )
    for ip in CLIENTS[:15]:
        body = await get_json(served, "/resolve", name=SHOP, ip=ip)
        assert {dc_of(a["data"]) for a in body["Answer"]} == {"cloud"}
    # taking the answered endpoint out of service is live too
    await admin(
        served,
        "PUT",
        f"/api/v1/services/{SHOP}/traffic",
        {"default": {"idc": 100}, "mobile": {"cloud": 100}},
        expect=200,
    )
    first = (await get_json(served, "/resolve", name=SHOP, ip=CLIENTS[0]))["Answer"][0]["data"]
    assert dc_of(first) == "idc"
    state = await admin(served, "GET", "/api/v1/state")
    (eid, ep) = next(
        (k, e) for k, e in state["services"][SHOP]["endpoints"].items() if e["address"] == first
    )
    fields = {k: ep[k] for k in ("dc", "address", "port", "version", "weight")}
    await admin(
        served,
        "PUT",
        f"/api/v1/services/{SHOP}/endpoints/{eid}",
        {**fields, "healthy": False},
        expect=200,
    )
    body = await get_json(served, "/resolve", name=SHOP, ip=CLIENTS[0])
    assert body["Answer"]
    assert first not in [a["data"] for a in body["Answer"]]
