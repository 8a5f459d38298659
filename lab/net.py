"""Network namespaces for the lab: one per datacenter and per client region, each joined
to the machine's own namespace (the "backbone" router) by a veth pair.

Every namespace gets a /24 (``10.201.0.0/24`` ...): the machine's end of the veth is
``.1``, the namespace's ``.2``; its only routes are to the lab's own ranges, through
``.1``, so nothing it sends can leave the machine. Names all start with ``hdl-``
(``ip netns`` and interface names), so a run can find and remove what an earlier,
killed run left behind.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from dataclasses import dataclass

PREFIX = "hdl-"


class NetError(Exception):
    """An ``ip`` command failed."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS``; NetError with its stderr when it fails and ``check``."""
    binary = shutil.which("ip")
    if binary is None:
        raise NetError("the ip command is missing (scripts/install installs iproute2)")
    done = subprocess.run([binary, *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise NetError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


@dataclass(frozen=True, slots=True)
class Namespace:
    """A namespace on its own /24: ``address`` inside it, ``gateway`` on the machine."""

    name: str  # without the prefix: idc, cloud, north, mobile
    subnet: str

    @property
    def netns(self) -> str:
        """The ``ip netns`` name."""
        return PREFIX + self.name

    @property
    def gateway(self) -> str:
        """The machine's end of the veth pair."""
        return str(ipaddress.IPv4Network(self.subnet).network_address + 1)

    @property
    def address(self) -> str:
        """The namespace's own address."""
        return str(ipaddress.IPv4Network(self.subnet).network_address + 2)

    def exec(self) -> list[str]:
        """The command prefix that runs a program inside the namespace."""
        return ["ip", "netns", "exec", self.netns]


def overlapping(subnets: list[str]) -> list[str]:
    """The machine's routes that overlap any of ``subnets`` (a lab needs them unused)."""
    nets = [ipaddress.IPv4Network(s) for s in subnets]
    out = []
    for line in ip("-4", "route", "show", "table", "all").stdout.splitlines():
        dest = line.split()[0] if line.split() else ""
        if dest in ("default", "local", "broadcast", "unreachable") or "/" not in dest:
            # host routes of local addresses ("local 10.1.2.3 ...") are covered by the "/" test
            continue
        try:
            route = ipaddress.IPv4Network(dest, strict=False)
        except ValueError:
            continue
        if any(route.overlaps(n) for n in nets):
            out.append(line.strip())
    return out


def create(ns: Namespace, routes: list[str]) -> None:
    """Create ``ns`` with its veth pair, up, routed to ``routes`` (CIDRs) via the machine."""
    host_end = ns.netns  # the veth end that stays on the machine, e.g. hdl-idc
    ip("netns", "add", ns.netns)
    ip("link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", ns.netns)
    ip("addr", "add", f"{ns.gateway}/24", "dev", host_end)
    ip("link", "set", host_end, "up")
    inside = ["netns", "exec", ns.netns, "ip"]
    ip(*inside, "addr", "add", f"{ns.address}/24", "dev", "eth0")
    ip(*inside, "link", "set", "eth0", "up")
    ip(*inside, "link", "set", "lo", "up")
    for cidr in routes:  # the namespace's own /24 is more specific than its range's route
        ip(*inside, "route", "add", cidr, "via", ns.gateway)


def remove(netns: str) -> None:
    """Delete a namespace and the machine's end of its veth (either may be gone already)."""
    ip("link", "del", netns, check=False)  # deleting one end deletes the pair
    ip("netns", "del", netns, check=False)


def leftovers() -> list[str]:
    """Namespaces named ``hdl-*`` (an earlier run's, when no run holds the lock)."""
    out = ip("netns", "list", check=False).stdout.splitlines()
    return [line.split()[0] for line in out if line.startswith(PREFIX)]
