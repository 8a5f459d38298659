"""How ``steering.json`` was recorded (once, on 2026-12-02, from main at 837662b).

NOT run by the tests: the golden file is the expectation, written once and
compared forever, so a change of the hashing or steering code that moves any
client fails ``test_golden.py``. Re-recording is a deliberate, versioned act
(see ``httpdns.hashing.STEERING_VERSION``), never a fix for a failing test.

    .venv/bin/python tests/httpdns/golden/record.py > tests/httpdns/golden/steering.json
"""

from __future__ import annotations

import json
import sys

from httpdns.table import AAAA, A, Client, RoutingTable
from registry import Change, Datacenter, Endpoint, Region, Release, Service, Snapshot

# The registry: the article's stage 3 and 4 shapes, a mobile region, a canary,
# a datacenter without healthy endpoints, a drained one, IPv6, weighted endpoints.
DCS = [
    Datacenter("idc", "idc", True, False),
    Datacenter("cloud", "cloud", False, False),
    Datacenter("cloud2", "cloud", True, True),  # drained
]
REGIONS = [
    Region("mobile", ("100.64.0.0/10", "2001:db8:1000::/36")),
    Region("north", ("203.0.113.0/24",)),
]


def endpoints(
    service: str,
    dc: str,
    net: str,
    n: int,
    version: str = "v1",
    healthy: bool = True,
    weight: int = 100,
    v6: bool = False,
) -> list[Endpoint]:
    out = []
    for i in range(n):
        addr = f"{net}{i + 1:x}" if v6 else f"{net}{i + 1}"
        out.append(
            Endpoint(
                service,
                f"{dc}-{version}-{i}",
                dc,
                addr,
                version=version,
                healthy=healthy,
                weight=weight + (i * 10 if weight != 100 else 0),
            )
        )
    return out


def registry() -> Snapshot:
    recs: list = [*DCS, *REGIONS]
    q = "quotes.golden.example"
    recs += [
        Service(
            q,
            {"default": {"idc": 60, "cloud": 40}, "mobile": {"idc": 20, "cloud": 80}},
            "ro",
            60,
            2,
            "fail-open",
        ),
        Release(q, "v1", "v2", 10.0),
    ]
    recs += endpoints(q, "idc", "10.1.0.", 6) + endpoints(q, "cloud", "10.2.0.", 6)
    recs += endpoints(q, "idc", "10.1.1.", 3, "v2") + endpoints(q, "cloud", "10.2.1.", 3, "v2")
    recs += endpoints(q, "idc", "2001:db8:a::", 4, v6=True)
    t = "trade.golden.example"
    recs += [Service(t, {"default": {"idc": 100, "cloud": 50}}, "rw", 30, 3, "fail-closed")]
    recs += endpoints(t, "idc", "10.1.2.", 8, weight=50) + endpoints(t, "cloud", "10.2.2.", 4)
    f = "failover.golden.example"
    recs += [
        Service(f, {"default": {"idc": 70, "cloud": 30, "cloud2": 10}}, "ro", 10, 2, "fail-open")
    ]
    recs += endpoints(f, "idc", "10.1.3.", 4, healthy=False) + endpoints(f, "cloud", "10.2.3.", 5)
    recs += endpoints(f, "cloud2", "10.3.3.", 2)
    d = "down.golden.example"
    recs += [Service(d, {"default": {"idc": 1, "cloud": 1}}, "ro", 5, 2, "fail-open")]
    recs += endpoints(d, "idc", "10.1.4.", 3, healthy=False) + endpoints(
        d, "cloud", "10.2.4.", 3, healthy=False
    )
    snap, _ = Snapshot().apply([Change.put(r) for r in recs], 1)
    return snap


def clients() -> list[tuple[str | None, str | None]]:
    out: list[tuple[str | None, str | None]] = []
    for i in range(120):
        out.append((f"{(i * 37) % 223 + 1}.{(i * 91) % 256}.{(i * 53) % 256}.{i % 256}", None))
    for i in range(30):
        out.append((f"100.{64 + i % 64}.{i * 7 % 256}.9", None))  # mobile
    for i in range(40):
        out.append((f"2001:db8:{i * 97 % 65536:x}:{i:x}::1", None))
    for i in range(10):
        out.append((f"2001:db8:{0x1000 + i:x}::5", None))  # mobile v6
    for i in range(10):
        out.append((f"203.0.113.{i * 20}", None))  # north (no own table: default)
    for i in range(90):
        out.append((None, f"device-{i:04d}-{'abcdef'[i % 6] * (i % 5 + 1)}"))
    return out


def main() -> None:
    snap = registry()
    table = RoutingTable(snap)
    columns = ["name", "type", "ip", "uid", "dc", "version", "cohort", "status", "addresses"]
    rows = []
    for ip, uid in clients():
        for name in sorted(snap.services):
            for qtype in (A, AAAA):
                choice = table.resolve(name, qtype, Client.of(ip, uid))
                assert choice is not None
                rows.append(
                    [
                        name,
                        "AAAA" if qtype == AAAA else "A",
                        ip,
                        uid,
                        choice.dc,
                        choice.version,
                        choice.cohort,
                        choice.status,
                        list(choice.addresses),
                    ]
                )
    out = sys.stdout
    out.write('{"state": ' + json.dumps(snap.to_dict(), sort_keys=True) + ",\n")
    out.write('"columns": ' + json.dumps(columns) + ',\n"answers": [\n')
    out.write(",\n".join(json.dumps(r) for r in rows))
    out.write("\n]}\n")


if __name__ == "__main__":
    main()
