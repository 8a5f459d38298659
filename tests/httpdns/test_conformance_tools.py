"""Conformance with real DNS tools (issue 14): BIND ``dig`` and Knot ``kdig`` over plain
DNS against two real ``httpdns serve --dns`` nodes sharing one SQLite store, one started
with ``--zone`` and one without; the zone itself is written with ``httpdns zone set``.
Both nodes must answer the registry's zone identically: apex SOA and NS with glue,
nameserver addresses, NXDOMAIN below, REFUSED outside, zone transfers refused, DO copied
and the client subnet scope per RFC 7871."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.servers import (
    Node,
    free_udp_tcp_port,
    httpdns_command,
    need,
    seed_test_registry,
    wait_until,
)

from .conftest import SHOP

ZONE = "example.org"
NS1, NS2 = "ns1.example.org", "ns2.example.org"
TOKEN = "T"


@dataclass
class Pair:
    flagged: Node  # started with --zone example.org
    bare: Node  # started without any --zone: serves the registry's zones only
    ports: dict[str, int]  # node url -> DNS port


def cli(node: Node, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [*httpdns_command(), "--server", node.url, "--token", TOKEN, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("conf-tools")
    store = f"sqlite:///{tmp}/registry.db"
    pa, pb = free_udp_tcp_port(), free_udp_tcp_port()
    flagged = Node(store, tmp, token=TOKEN, args=("--dns", f"127.0.0.1:{pa}", "--zone", ZONE))
    bare = Node(store, tmp, token=TOKEN, args=("--dns", f"127.0.0.1:{pb}"))
    flagged.start()
    try:
        bare.start()
        try:
            seed_test_registry(flagged.url)
            done = cli(
                flagged, "zone", "set", ZONE, "--ns", f"{NS1}=192.0.2.53,2001:db8::53",
                "--ns", f"{NS2}=198.51.100.53", "--rname", "dns-admin.example.org",
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            p = Pair(flagged, bare, {flagged.url: pa, bare.url: pb})
            wait_until(lambda: dig(p, bare, NS1, "A").status == "NOERROR", 10, "the bare node")
            yield p
        finally:
            bare.stop()
    finally:
        flagged.stop()


@dataclass
class Answer:
    status: str
    flags: set[str]
    answer: list[str]
    authority: list[str]
    additional: list[str]
    text: str


_SECTION = re.compile(r"^;; (ANSWER|AUTHORITY|ADDITIONAL) SECTION:$")


def parse(text: str) -> Answer:
    """The parts of dig's or kdig's full output that must match between nodes."""
    status = re.search(r"status: (\w+)", text)
    flags = re.search(r";; [Ff]lags: ([a-z ]*);", text)
    sections: dict[str, list[str]] = {"ANSWER": [], "AUTHORITY": [], "ADDITIONAL": []}
    current = None
    for line in text.splitlines():
        m = _SECTION.match(line.strip())
        if m:
            current = m.group(1)
            continue
        if not line.strip() or line.startswith(";"):
            current = None if not line.strip() else current
            continue
        if current:
            sections[current].append(" ".join(line.split()))
    return Answer(
        status.group(1) if status else "",
        set(flags.group(1).split()) if flags else set(),
        sorted(sections["ANSWER"]),
        sorted(sections["AUTHORITY"]),
        sorted(sections["ADDITIONAL"]),
        text,
    )


def dig(pair: Pair, node: Node, name: str, qtype: str, *opts: str) -> Answer:
    port = pair.ports[node.url]
    cmd = [need("dig"), "@127.0.0.1", "-p", str(port), name, qtype, "+norecurse", "+time=3",
           "+tries=1", *opts]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    return parse(out.stdout)


def kdig(pair: Pair, node: Node, name: str, qtype: str, *opts: str) -> Answer:
    port = pair.ports[node.url]
    cmd = [need("kdig"), "@127.0.0.1", "-p", str(port), name, qtype, "+norecurse",
           "+time=3", "+retry=0", *opts]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    return parse(out.stdout + out.stderr)


Tool = Callable[..., Answer]

QUERIES = [
    (ZONE, "SOA"),
    (ZONE, "NS"),
    (ZONE, "A"),
    (NS1, "A"),
    (NS1, "AAAA"),
    (NS2, "A"),
    (f"nope.{ZONE}", "A"),
    (f"nope.{ZONE}", "TXT"),
    (SHOP, "MX"),
    ("outside.invalid", "A"),
]


@pytest.mark.parametrize(("name", "qtype"), QUERIES)
def test_a_node_without_zone_flags_answers_the_registry_zone_identically(
    pair: Pair, name: str, qtype: str
) -> None:
    a, b = (dig(pair, n, name, qtype) for n in (pair.flagged, pair.bare))
    assert a.status and (a.status, a.flags, a.answer, a.authority, a.additional) == (
        b.status, b.flags, b.answer, b.authority, b.additional,
    ), a.text + b.text  # fmt: skip


@pytest.mark.parametrize("tool", [dig, kdig])
def test_apex_ns_with_glue_and_the_soa_names_the_first_nameserver(pair: Pair, tool: Tool) -> None:
    ask = tool
    r: Answer = ask(pair, pair.bare, ZONE, "NS")
    assert r.status == "NOERROR" and "aa" in r.flags, r.text
    assert {line.split()[-1] for line in r.answer} == {f"{NS1}.", f"{NS2}."}
    glue = {
        (line.split()[0], line.split()[-1])
        for line in r.additional
        if " IN A" in line or "AAAA" in line
    }
    assert glue == {
        (f"{NS1}.", "192.0.2.53"),
        (f"{NS1}.", "2001:db8::53"),
        (f"{NS2}.", "198.51.100.53"),
    }
    r = ask(pair, pair.bare, ZONE, "SOA")
    (soa,) = r.answer
    fields = soa.split()
    assert fields[4:6] == [f"{NS1}.", "dns-admin.example.org."], soa


def test_names_below_the_zone_are_nxdomain_and_outside_refused_without_aa(pair: Pair) -> None:
    r = dig(pair, pair.bare, f"nope.{ZONE}", "A")
    assert r.status == "NXDOMAIN" and "aa" in r.flags
    assert r.authority and " SOA " in r.authority[0]
    r = dig(pair, pair.bare, "outside.invalid", "A")
    assert r.status == "REFUSED" and "aa" not in r.flags


@pytest.mark.parametrize("qtype", ["AXFR", "IXFR=1"])
def test_zone_transfers_are_refused(pair: Pair, qtype: str) -> None:
    r = kdig(pair, pair.bare, ZONE, qtype)
    assert "REFUSED" in r.text, r.text  # dig only says "Transfer failed."


def test_udp_zone_transfer_query_is_refused(pair: Pair) -> None:
    r = kdig(pair, pair.bare, ZONE, "AXFR", "+notcp")
    assert r.status == "REFUSED" or "REFUSED" in r.text, r.text


@pytest.mark.parametrize("tool", [dig, kdig])
def test_the_do_bit_is_copied(pair: Pair, tool: Tool) -> None:
    ask = tool
    for name in (SHOP, f"nope.{ZONE}"):
        r: Answer = ask(pair, pair.bare, name, "A", "+dnssec")
        assert re.search(r"[Vv]ersion: 0[,;] flags: do;", r.text), r.text
        r = ask(pair, pair.bare, name, "A", "+edns=0")
        assert re.search(r"[Vv]ersion: 0[,;] flags: ?;", r.text), r.text


@pytest.mark.parametrize(
    ("tool", "name", "subnet", "echo"),
    [
        (dig, SHOP, "10.9.8.0/24", "10.9.8.0/24/24"),
        (kdig, SHOP, "10.9.8.0/24", "10.9.8.0/24/24"),
        (dig, f"nope.{ZONE}", "10.9.8.0/24", "10.9.8.0/24/0"),
        (kdig, ZONE, "10.9.8.0/24", "10.9.8.0/24/0"),
        (dig, SHOP, "0.0.0.0/0", "0.0.0.0/0/0"),
        (kdig, SHOP, "2001:db8:99:aa00::/56", "2001:db8:99:aa00::/56/56"),
    ],
)
def test_client_subnet_scope(pair: Pair, tool: Tool, name: str, subnet: str, echo: str) -> None:
    ask = tool
    r: Answer = ask(pair, pair.bare, name, "SOA" if name == ZONE else "A", f"+subnet={subnet}")
    assert f"CLIENT-SUBNET: {echo}" in r.text, r.text


def test_zone_set_list_and_delete_through_the_cli(pair: Pair) -> None:
    other = "other.test"
    done = cli(
        pair.flagged, "zone", "set", other, "--ns", f"ns.{other}=192.0.2.99", "--minimum", "120"
    )
    assert done.returncode == 0, done.stderr
    assert f"zone {other}: nameservers ns.{other} (revision" in done.stdout
    wait_until(lambda: dig(pair, pair.bare, other, "NS").status == "NOERROR", 10, "the new zone")
    r = dig(pair, pair.bare, f"ns.{other}", "A")
    assert r.answer and r.answer[0].endswith("192.0.2.99")
    listed = cli(pair.bare, "zone", "list")
    assert listed.returncode == 0 and other in listed.stdout and ZONE in listed.stdout
    done = cli(pair.bare, "zone", "delete", other)
    assert done.returncode == 0, done.stderr
    wait_until(lambda: dig(pair, pair.flagged, other, "NS").status == "REFUSED", 10, "the deletion")
    bad = cli(pair.bare, "zone", "set", "third.test", "--ns", "ns.third.test")
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.startswith("error: ") and "nameservers.ns.third.test" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


# -- Unbound in front of the bare node -------------------------------------------------------


@dataclass
class Resolver:
    port: int
    proc: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def unbound(pair: Pair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Resolver]:
    """A private Unbound (no daemon, no control, free port) with ``send-client-subnet`` to
    the bare node, which it reaches through a stub zone."""
    tmp = tmp_path_factory.mktemp("unbound")
    port = free_udp_tcp_port()
    conf = tmp / "unbound.conf"
    conf.write_text(
        f"""server:
    interface: 127.0.0.1
    port: {port}
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{tmp}"
    pidfile: "{tmp}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    do-ip6: no
    do-not-query-localhost: no
    access-control: 127.0.0.0/8 allow
    module-config: "subnetcache iterator"
    send-client-subnet: 127.0.0.1
    client-subnet-always-forward: yes
    max-client-subnet-ipv4: 24
    max-client-subnet-ipv6: 56
    qname-minimisation: no
remote-control:
    control-enable: no
stub-zone:
    name: "{ZONE}"
    stub-addr: 127.0.0.1@{pair.ports[pair.bare.url]}
"""
    )
    check = subprocess.run(
        [need("unbound-checkconf"), str(conf)], capture_output=True, text=True, timeout=20
    )
    assert check.returncode == 0, check.stdout + check.stderr
    log = open(tmp / "unbound.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([need("unbound"), "-d", "-c", str(conf)], stdout=log, stderr=log)
    try:
        resolver = Resolver(port, proc)
        wait_until(lambda: _via(resolver, ZONE, "SOA").status == "NOERROR", 10, "unbound")
        yield resolver
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def _via(resolver: Resolver, name: str, qtype: str, *opts: str) -> Answer:
    if resolver.proc.poll() is not None:
        raise RuntimeError(f"unbound exited with {resolver.proc.returncode}")
    cmd = [need("dig"), "@127.0.0.1", "-p", str(resolver.port), name, qtype, "+time=3",
           "+tries=1", *opts]  # fmt: skip
    return parse(subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout)


def _addresses(r: Answer) -> set[str]:
    return {line.split()[-1] for line in r.answer if line.split()[3] in ("A", "AAAA")}


@pytest.mark.parametrize(
    "subnet",
    ["10.9.8.0/24", "10.20.30.0/24", "100.64.1.0/24", "100.64.200.0/24", "192.0.2.0/24",
     "172.16.5.0/24"],
)  # fmt: skip
def test_unbound_with_client_subnet_gets_the_steered_answer_of_each_subnet(
    pair: Pair, unbound: Resolver, subnet: str
) -> None:
    for qtype in ("A", "AAAA"):
        direct = dig(pair, pair.bare, SHOP, qtype, f"+subnet={subnet}")
        through = _via(unbound, SHOP, qtype, f"+subnet={subnet}")
        assert through.status == "NOERROR", through.text
        assert _addresses(through) and _addresses(through) == _addresses(direct), (
            direct.text + through.text
        )


@pytest.mark.parametrize(
    ("name", "qtype", "status", "count"),
    [
        (f"nope.{ZONE}", "A", "NXDOMAIN", 0),
        ("eu.nope.example.org", "AAAA", "NXDOMAIN", 0),
        (SHOP, "TXT", "NOERROR", 0),
        (ZONE, "NS", "NOERROR", 2),
        (ZONE, "SOA", "NOERROR", 1),
        (NS1, "AAAA", "NOERROR", 1),
    ],
)
def test_unbound_resolves_the_registry_zone_of_a_node_started_without_it(
    pair: Pair, unbound: Resolver, name: str, qtype: str, status: str, count: int
) -> None:
    r = _via(unbound, name, qtype, "+subnet=10.9.8.0/24")
    assert r.status == status, r.text
    assert len(r.answer) == count, r.text
