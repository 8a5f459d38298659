"""Dual-stack requests: A and AAAA of one name in one request, where the dialect has it
(DNSPod ``type=addrs``, plain or encrypted; Aliyun ``query=4,6``, plain or signed). The
``json`` dialect asks twice. Pure functions over a ``Protocol``, no I/O."""

from __future__ import annotations

import json
from urllib.parse import quote

from .core import ServerError, sign, signature_expiry
from .encrypted import EncryptedProtocol
from .protocol import Protocol, Record, Request, _addresses

BOTH = ("A", "AAAA")


def one_request(protocol: Protocol) -> bool:
    """True when the dialect answers both families in one request."""
    return protocol.dialect in ("d", "aliyun")


def both_request(protocol: Protocol, name: str) -> Request:
    """The request for the A and AAAA answers of ``name`` (``one_request`` dialects)."""
    if isinstance(protocol, EncryptedProtocol):
        return Request(protocol.encrypted_path(name, "addrs"), "A", (name,))
    if protocol.dialect == "d":
        path = f"/d?dn={quote(name)}&type=addrs&ttl=1"
    elif protocol.dialect == "aliyun":
        params = f"host={quote(name)}&query=4,6"
        op = "d"
        if protocol.secret is not None:
            t = signature_expiry(protocol.wall_clock(), protocol.sign_lifetime)
            params += f"&t={t}&s={sign(name, protocol.secret, t)}"
            op = "sign_d"
        path = f"/{protocol.account}/{op}?{params}"
    else:
        raise ValueError(f"the {protocol.dialect} dialect has no dual-stack request")
    if protocol.uid is not None:
        path += f"&uid={quote(protocol.uid, safe='')}"
    return Request(path, "A", (name,))


def parse_both(
    protocol: Protocol, request: Request, status: int, body: bytes, server: str
) -> dict[str, Record]:
    """``{"A": Record, "AAAA": Record}`` from a ``both_request`` reply; raises like
    ``Protocol.parse``."""
    if status != 200:
        raise protocol._http_error(status, body, server)
    try:
        if protocol.dialect == "aliyun":
            item = json.loads(body)
            ttl = float(item.get("ttl", protocol.negative_ttl))
            v4 = _addresses(str(a) for a in item.get("ips") or ())
            v6 = _addresses(str(a) for a in item.get("ipsv6") or ())
            return {"A": Record(v4, ttl), "AAAA": Record(v6, ttl)}
        if isinstance(protocol, EncryptedProtocol):
            body = protocol.decrypt_body(body)
        return _parse_addrs(body.decode("ascii"), protocol.negative_ttl)
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise ServerError(server, f"unreadable answer: {exc}", status) from None


def _parse_addrs(text: str, negative_ttl: float) -> dict[str, Record]:
    """DNSPod ``type=addrs``: ``v4;v4-v6;v6,TTL`` (empty: the name is not served)."""
    text = text.strip().split("|", 1)[0]
    if not text:
        return {"A": Record((), negative_ttl), "AAAA": Record((), negative_ttl)}
    ips, sep, ttl_text = text.rpartition(",")
    if not sep:
        ips, ttl_text = text, ""
    ttl = float(int(ttl_text)) if ttl_text else negative_ttl
    v4, _, v6 = ips.partition("-")
    return {
        "A": Record(_addresses(a for a in v4.split(";") if a), ttl),
        "AAAA": Record(_addresses(a for a in v6.split(";") if a), ttl),
    }
