"""``query``: resolve a name through the query API like dig, in any dialect.

The HTTP dialects (``d``, ``aliyun``, ``json``) are built and parsed by the Python client
library (``httpdns_client.protocol``), so the CLI reads answers exactly as clients do;
the CLI only adds the client address it asks for. DoH (RFC 8484) is DNS wire format,
built and read with dnslib.
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass
from typing import Literal

import click
import dnslib
from httpdns_client.core import ServerError
from httpdns_client.protocol import Protocol, reply_status

from .client import Client
from .errors import CliError
from .options import ClientCommand, pass_client
from .render import print_json

DnsRecord = tuple[str, int | None, str, str]
"""One answer record: name, TTL (None when the dialect gives none), type, data."""

DIALECTS = ("d", "aliyun", "json", "doh")


@dataclass(slots=True)
class Answer:
    """The result of one ``query``: records as (name, ttl, type, data)."""

    records: list[DnsRecord]
    ttl: int | None
    status: str
    ms: float


def _dns_query(name: str, qtype: str, ip: str | None) -> bytes:
    q = dnslib.DNSRecord.question(name, qtype)
    q.header.id = 0  # RFC 8484 4.1: ID 0 keeps GET responses cacheable
    if ip:
        addr = ipaddress.ip_address(ip)
        family, prefix = (1, 32) if addr.version == 4 else (2, 128)
        ecs = family.to_bytes(2, "big") + bytes([prefix, 0]) + addr.packed
        q.add_ar(dnslib.EDNS0(udp_len=4096, opts=[dnslib.EDNSOption(8, ecs)]))
    return bytes(q.pack())


def _dns_answer(body: bytes) -> tuple[str, list[DnsRecord]]:
    try:
        reply = dnslib.DNSRecord.parse(body)
    except (dnslib.DNSError, ValueError, IndexError) as e:
        raise CliError(f"bad DNS answer: {e}") from None
    records: list[DnsRecord] = [
        (str(rr.rname), int(rr.ttl), str(dnslib.QTYPE.get(rr.rtype, rr.rtype)), str(rr.rdata))
        for rr in reply.rr
    ]
    return str(dnslib.RCODE.get(reply.header.rcode, reply.header.rcode)), records


def _query_doh(client: Client, name: str, qtype: str, ip: str | None, uid: str | None) -> Answer:
    try:
        packed = _dns_query(name, qtype, ip)
    except (dnslib.DNSError, dnslib.DNSLabelError, UnicodeError, ValueError) as e:
        raise click.BadParameter(f"{name!r} is not a DNS name: {e}", param_hint="NAME") from None
    wire = base64.urlsafe_b64encode(packed).rstrip(b"=").decode()
    r = client.send(
        "GET",
        "/dns-query",
        params={"dns": wire, "uid": uid},
        headers={"Accept": "application/dns-message"},
    )
    status, records = _dns_answer(r.body)
    ttls = [t for _, t, _, _ in records if t is not None]
    return Answer(records, min(ttls) if ttls else None, status, r.ms)


def _client_address(dialect: str, ip: str) -> dict[str, str]:
    # the client library asks for itself; the CLI asks on behalf of the client at ``ip``
    if dialect == "json":
        return {
            "edns_client_subnet": f"{ip}/{32 if ipaddress.ip_address(ip).version == 4 else 128}"
        }
    return {"ip": ip}


def run_query(
    client: Client,
    name: str,
    dialect: str,
    qtype: str,
    ip: str | None,
    uid: str | None,
    account: str,
) -> Answer:
    """Ask the query API for ``name`` in one dialect and normalise the answer."""
    if dialect == "doh":
        return _query_doh(client, name, qtype, ip, uid)
    try:
        protocol = Protocol(dialect, account=account if dialect == "aliyun" else None, uid=uid)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--account") from None
    family: Literal["A", "AAAA"] = "AAAA" if qtype == "AAAA" else "A"
    request = protocol.request(family, name)
    r = client.send("GET", request.path, params=_client_address(dialect, ip) if ip else None)
    try:
        status = reply_status(dialect, r.body)
    except ValueError as e:
        raise CliError(f"bad answer from {client.server}: {e}") from None
    if status != "NOERROR":
        return Answer([], None, status, r.ms)
    try:
        found = protocol.parse(request, r.status, r.body, client.server)[name]
    except ServerError as e:  # an unreadable body
        raise CliError(f"bad answer from {e}") from None
    # The aliyun dialect states a TTL even for an empty answer; for the others an empty
    # answer has no records to carry one (the library's negative TTL is its own choice).
    ttl = int(found.ttl) if found.addresses or dialect == "aliyun" else None
    fqdn = name.rstrip(".") + "."
    return Answer([(fqdn, ttl, family, a) for a in found.addresses], ttl, status, r.ms)


@click.command(cls=ClientCommand)
@click.argument("name")
@click.option(
    "--dialect",
    type=click.Choice(DIALECTS),
    default="d",
    show_default=True,
    help="d: /d text; aliyun: /{account}/d JSON; json: /resolve; doh: RFC 8484 /dns-query.",
)
@click.option("--ip", help="Client address to answer for (ECS for json and doh).")
@click.option("--uid", help="Device id (the client key instead of the address).")
@click.option(
    "--type",
    "qtype",
    type=click.Choice(["A", "AAAA"], case_sensitive=False),
    default="A",
    show_default=True,
)
@click.option("--account", default="100000", show_default=True, help="Aliyun-style account.")
@pass_client
def query(
    client: Client,
    name: str,
    dialect: str,
    ip: str | None,
    uid: str | None,
    qtype: str,
    account: str,
) -> None:
    """Resolve NAME through the query API, like dig."""
    qtype = qtype.upper()
    if ip is not None:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise click.BadParameter(f"{ip!r} is not an IP address", param_hint="--ip") from None
    answer = run_query(client, name, dialect, qtype, ip, uid, account)
    addresses = [data for _, _, rtype, data in answer.records if rtype == qtype]
    if client.json:
        print_json(
            {
                "name": name,
                "type": qtype,
                "answers": addresses,
                "ttl": answer.ttl,
                "dialect": dialect,
                "ms": round(answer.ms, 2),
                "status": answer.status,
            }
        )
        return
    fqdn = name.rstrip(".") + "."
    click.echo(f";; {dialect} query to {client.server}, status: {answer.status}")
    click.echo(";; QUESTION SECTION:")
    click.echo(f";{fqdn:<31} IN  {qtype}")
    click.echo("")
    click.echo(f";; ANSWER SECTION: {len(answer.records)} record(s)")
    for rname, ttl, rtype, data in answer.records:
        shown = "-" if ttl is None else str(ttl)
        click.echo(f"{rname:<31} {shown:<7} IN  {rtype:<5} {data}")
    click.echo("")
    click.echo(f";; Query time: {answer.ms:.1f} msec")
