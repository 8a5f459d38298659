"""The query dialects and a minimal HTTP/1.1 exchange, as pure functions: build the
request path for some names, parse a server's reply into addresses and TTLs, write an
HTTP request and read an HTTP response from bytes. No sockets here.

Dialects (see the server's DESIGN §6):

- ``d``: DNSPod style ``GET /d?dn=NAME&type=a|aaaa&ttl=1``, text ``ip;ip,TTL``;
- ``aliyun``: ``GET /{account}/d?host=NAME&query=4|6`` (JSON), batches of up to five
  names with ``/{account}/resolve?host=A,B``, signed with ``sign_d``/``sign_resolve``;
- ``json``: Google style ``GET /resolve?name=NAME&type=A``.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import quote, urlsplit

from .core import (
    QType,
    RequestRejected,
    Server,
    ServerError,
    SignatureError,
    sign,
    signature_expiry,
)

Dialect = Literal["aliyun", "d", "json"]
DIALECTS: tuple[Dialect, ...] = ("aliyun", "d", "json")
ALIYUN_BATCH = 5
MAX_RESPONSE = 256 * 1024
USER_AGENT = "httpdns-client-python/0.1"


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP query: its path (after the server's base path) and the names it covers."""

    path: str
    qtype: QType
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Record:
    """Addresses and TTL for one name as a server gave them (empty: negative)."""

    addresses: tuple[str, ...]
    ttl: float


def parse_server(url: str, tls_hostname: str | None = None) -> Server:
    """A server from ``http://ADDRESS[:PORT][/base]`` (``https`` too); a bare
    ``ADDRESS[:PORT]`` means ``http``."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"server {url!r}: the scheme must be http or https")
    if not parts.hostname:
        raise ValueError(f"server {url!r} has no host")
    if parts.query or parts.fragment:
        raise ValueError(f"server {url!r}: no query or fragment allowed")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError(f"server {url!r} has an invalid port") from None
    scheme = cast(Literal["http", "https"], parts.scheme)
    return Server(
        url=text.rstrip("/"),
        scheme=scheme,
        host=parts.hostname,
        port=port,
        base_path=parts.path.rstrip("/"),
        tls_hostname=tls_hostname if scheme == "https" else None,
    )


class Protocol:
    """Builds and parses the requests of one dialect (and signs them when a secret
    is given)."""

    def __init__(
        self,
        dialect: str = "d",
        *,
        account: str | None = None,
        secret: str | None = None,
        uid: str | None = None,
        negative_ttl: float = 30.0,
        sign_lifetime: float = 300.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if dialect not in DIALECTS:
            raise ValueError(f"dialect {dialect!r} is not one of {', '.join(DIALECTS)}")
        if dialect == "aliyun" and not account:
            raise ValueError("the aliyun dialect needs an account")
        if secret is not None and dialect != "aliyun":
            raise ValueError("signed requests (secret=) need the aliyun dialect")
        if account is not None and not account.isalnum():
            raise ValueError(f"account {account!r} must be letters and digits")
        if negative_ttl < 0 or sign_lifetime <= 0:
            raise ValueError("negative_ttl must be >= 0 and sign_lifetime > 0")
        self.dialect: Dialect = dialect
        self.account = account
        self.secret = secret
        self.uid = uid
        self.negative_ttl = float(negative_ttl)
        self.sign_lifetime = sign_lifetime
        self.wall_clock = wall_clock

    # -- requests --------------------------------------------------------------------------

    def requests(self, qtype: QType, names: Sequence[str]) -> list[Request]:
        """The requests that resolve ``names`` (normalised, no duplicates): one per name,
        or batches of five with the aliyun dialect."""
        if self.dialect == "aliyun" and len(names) > 1:
            out = []
            for i in range(0, len(names), ALIYUN_BATCH):
                chunk = tuple(names[i : i + ALIYUN_BATCH])
                out.append(self._aliyun(qtype, chunk, "resolve"))
            return out
        return [self.request(qtype, n) for n in names]

    def request(self, qtype: QType, name: str) -> Request:
        """The request for one name."""
        if self.dialect == "d":
            kind = "a" if qtype == "A" else "aaaa"
            path = f"/d?dn={quote(name)}&type={kind}&ttl=1"
            return Request(self._uid(path), qtype, (name,))
        if self.dialect == "json":
            return Request(self._uid(f"/resolve?name={quote(name)}&type={qtype}"), qtype, (name,))
        return self._aliyun(qtype, (name,), "d")

    def _aliyun(self, qtype: QType, names: tuple[str, ...], op: str) -> Request:
        host = ",".join(names)
        query = "4" if qtype == "A" else "6"
        params = f"host={quote(host, safe=',')}&query={query}"
        if self.secret is not None:
            t = signature_expiry(self.wall_clock(), self.sign_lifetime)
            params += f"&t={t}&s={sign(host, self.secret, t)}"
            op = "sign_" + op
        return Request(self._uid(f"/{self.account}/{op}?{params}"), qtype, names)

    def _uid(self, path: str) -> str:
        return path if self.uid is None else f"{path}&uid={quote(self.uid, safe='')}"

    # -- replies ---------------------------------------------------------------------------

    def parse(self, request: Request, status: int, body: bytes, server: str) -> dict[str, Record]:
        """The records of a reply, by name.

        Raises ``ServerError`` (try another server) for 5xx/429/unexpected statuses and
        unreadable bodies, ``SignatureError`` or ``RequestRejected`` for other 4xx.
        """
        if status != 200:
            raise self._http_error(status, body, server)
        try:
            if self.dialect == "d":
                return {request.names[0]: self._parse_d(body)}
            if self.dialect == "json":
                return {request.names[0]: self._parse_json(request.qtype, body)}
            return self._parse_aliyun(request, body)
        except (
            ValueError,
            KeyError,
            TypeError,
            IndexError,
            AttributeError,  # JSON of the wrong shape: a list where an object belongs
            UnicodeDecodeError,
        ) as exc:
            raise ServerError(server, f"unreadable answer: {exc}", status) from None

    def _parse_d(self, body: bytes) -> Record:
        text = body.decode("ascii").strip()
        if not text:
            return Record((), self.negative_ttl)
        text = text.split("|", 1)[0]
        ips, sep, ttl_text = text.rpartition(",")
        if not sep:
            ips, ttl_text = text, ""
        ttl = float(int(ttl_text)) if ttl_text else self.negative_ttl
        return Record(_addresses(a for a in ips.replace("-", ";").split(";") if a), ttl)

    def _parse_json(self, qtype: QType, body: bytes) -> Record:
        data = json.loads(body)
        status = int(data["Status"])
        if status == 2:
            raise ValueError("the server answered SERVFAIL")
        code = 1 if qtype == "A" else 28
        answers = [a for a in data.get("Answer") or () if int(a["type"]) == code]
        if status == 0 and answers:
            ttl = min(float(a["TTL"]) for a in answers)
            return Record(_addresses(str(a["data"]) for a in answers), ttl)
        ttl = self.negative_ttl
        for soa in data.get("Authority") or ():
            if int(soa.get("type", 0)) == 6:
                fields = str(soa["data"]).split()
                ttl = min(float(soa.get("TTL", ttl)), float(fields[-1]) if fields else ttl)
        return Record((), ttl)

    def _parse_aliyun(self, request: Request, body: bytes) -> dict[str, Record]:
        data = json.loads(body)
        items: list[Any] = data["dns"] if isinstance(data, dict) and "dns" in data else [data]
        field = "ips" if request.qtype == "A" else "ipsv6"
        if len(items) == 1 and len(request.names) == 1:
            item = items[0]
            addrs = _addresses(str(a) for a in item.get(field) or ())
            return {request.names[0]: Record(addrs, float(item.get("ttl", self.negative_ttl)))}
        out: dict[str, Record] = {}
        for item in items:
            host = str(item["host"]).lower().rstrip(".")
            addrs = _addresses(str(a) for a in item.get(field) or ())
            out[host] = Record(addrs, float(item.get("ttl", self.negative_ttl)))
        missing = [n for n in request.names if n not in out]
        if missing:
            raise ValueError(f"no answer for {', '.join(missing)}")
        return {n: out[n] for n in request.names}

    def _http_error(self, status: int, body: bytes, server: str) -> Exception:
        code, detail = f"http_{status}", ""
        try:
            data = json.loads(body)
            if isinstance(data, dict):
                code = str(data.get("code") or data.get("error") or code)
                detail = str(data.get("detail") or "")
        except ValueError:
            detail = body[:200].decode("utf-8", "replace")
        if 400 <= status < 500 and status not in (408, 429):
            if status == 403 and code in ("InvalidSignature", "SignatureExpired"):
                return SignatureError(server, status, code, detail, self.account or "")
            return RequestRejected(server, status, code, detail)
        return ServerError(server, f"HTTP {status} {code} {detail}".strip(), status)


def _addresses(items: Any) -> tuple[str, ...]:
    out: list[str] = []
    for item in items:
        text = str(item).strip()
        out.append(str(ipaddress.ip_address(text)))
    return tuple(dict.fromkeys(out))


RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
"""The names of the DNS response codes a ``json`` reply's ``Status`` may carry."""


def reply_status(dialect: str, body: bytes) -> str:
    """The DNS status of a successful (HTTP 200) reply, as an rcode name.

    ``Protocol.parse`` gives the addresses; this tells a name that does not exist
    (``NXDOMAIN``) or is not served (``REFUSED``) from one with no address. Only the
    ``json`` dialect carries a status (its ``Status``; an unknown code is given as its
    number); ``d`` and ``aliyun`` answer such names with an empty answer, so theirs is
    always ``NOERROR``. Raises ``ValueError`` for a json body without an integer ``Status``.
    """
    if dialect != "json":
        return "NOERROR"
    try:
        data = json.loads(body)
        code = int(data["Status"])
    except (KeyError, TypeError, IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"no Status in the answer: {exc!r}") from None
    return RCODE_NAMES.get(code, str(code))


# -- HTTP/1.1 on the wire --------------------------------------------------------------------


def http_request(server: Server, path: str) -> bytes:
    """The bytes of ``GET base+path`` (``Connection: close``)."""
    return (
        f"GET {server.base_path}{path} HTTP/1.1\r\n"
        f"Host: {server.host_header}\r\n"
        f"User-Agent: {USER_AGENT}\r\n"
        "Accept: */*\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")


def response_complete(raw: bytes | bytearray) -> bool:
    """True once ``raw`` holds a whole response (by Content-Length or the last chunk),
    so the reader need not wait for the server to close."""
    head_end = raw.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    headers = _headers(raw[:head_end])
    body = raw[head_end + 4 :]
    if "chunked" in headers.get("transfer-encoding", ""):
        return body.endswith(b"0\r\n\r\n")
    length = headers.get("content-length")
    return length is not None and length.isdigit() and len(body) >= int(length)


def parse_http_response(raw: bytes) -> tuple[int, bytes]:
    """The status and body of a whole HTTP/1.x response (``ValueError`` if garbled)."""
    head_end = raw.find(b"\r\n\r\n")
    if head_end < 0:
        raise ValueError("the response ended inside the headers")
    status_line = raw[: raw.find(b"\r\n")].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP response: {status_line[:60]!r}")
    headers = _headers(raw[:head_end])
    body = raw[head_end + 4 :]
    if "chunked" in headers.get("transfer-encoding", ""):
        body = _dechunk(body)
    else:
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit() or len(body) < int(length):
                raise ValueError("the response body is shorter than its Content-Length")
            body = body[: int(length)]
    return int(parts[1]), body


def _headers(head: bytes | bytearray) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip().lower()] = value.strip().lower()
    return out


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            raise ValueError("truncated chunked body")
        size = int(body[pos:eol].split(b";", 1)[0], 16)
        if size == 0:
            return bytes(out)
        start = eol + 2
        if len(body) < start + size:
            raise ValueError("truncated chunk")
        out += body[start : start + size]
        pos = start + size + 2
