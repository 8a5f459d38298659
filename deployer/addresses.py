"""Address pools, allocation recorded in the registry, and MAC addresses derived from IPs.

A datacenter's pool is a range (``"10.231.1.10-10.231.1.250"``) or a CIDR
(``"10.231.1.0/24"``: every host address but the first, which is the gateway by
convention). An allocation is the registry record ``dc/address -> owner``; the
owner is the container name, so allocating again for the same container returns
the same address (idempotent across controller restarts).

Two deployers racing cannot hand out an address twice: the write carries the
revision the choice was made at (compare-and-set) and the registry itself refuses
a second owner for an address. The loser re-reads and picks again.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from registry.changes import Change
from registry.model import Allocation
from registry.retry import retry_conflicts
from registry.snapshot import Snapshot
from registry.store import Store

from .errors import PoolExhaustedError, SpecError


def mac_for(address: str) -> str:
    """The container's MAC address: ``02:42`` followed by the four IPv4 octets in hex.

    ``02`` marks a locally administered unicast address; ``02:42`` plus the IP is
    the convention Docker itself uses for bridge networks, so the MAC of
    10.231.1.10 is ``02:42:0a:e7:01:0a`` and ARP tables stay readable.
    """
    octets = ipaddress.IPv4Address(address).packed
    return "02:42:" + ":".join(f"{b:02x}" for b in octets)


@dataclass(frozen=True, slots=True)
class Pool:
    """An inclusive range of IPv4 addresses."""

    first: ipaddress.IPv4Address
    last: ipaddress.IPv4Address

    @classmethod
    def parse(cls, field: str, text: Any) -> Pool:
        """``"A-B"`` (inclusive) or ``"NET/LEN"`` (hosts but the first)."""
        if not isinstance(text, str) or not text.strip():
            raise SpecError(field, "needs an address pool like '10.231.1.10-10.231.1.250'")
        try:
            if "/" in text:
                net = ipaddress.IPv4Network(text.strip(), strict=True)
                if net.num_addresses < 4:
                    raise ValueError("the network is too small")
                return cls(net.network_address + 2, net.broadcast_address - 1)
            low, sep, high = text.partition("-")
            if not sep:
                raise ValueError("use FIRST-LAST or NET/LEN")
            pool = cls(ipaddress.IPv4Address(low.strip()), ipaddress.IPv4Address(high.strip()))
        except ValueError as exc:
            raise SpecError(field, f"{text!r} is not an IPv4 pool: {exc}") from None
        if pool.last < pool.first:
            raise SpecError(field, f"{text!r}: the last address is below the first")
        return pool

    def __iter__(self) -> Iterator[str]:
        for n in range(int(self.first), int(self.last) + 1):
            yield str(ipaddress.IPv4Address(n))

    def __contains__(self, address: object) -> bool:
        try:
            ip = ipaddress.IPv4Address(str(address))
        except ValueError:
            return False
        return self.first <= ip <= self.last

    @property
    def size(self) -> int:
        """How many addresses the pool holds."""
        return int(self.last) - int(self.first) + 1


def owned(snap: Snapshot, dc: str) -> dict[str, str]:
    """``owner -> address`` of datacenter ``dc``."""
    return {a.owner: a.address for a in snap.allocations.values() if a.dc == dc}


def pick(snap: Snapshot, dc: str, pool: Pool, owners: Sequence[str]) -> dict[str, str]:
    """An address for each owner: the one it already holds, else the lowest free one."""
    held = owned(snap, dc)
    taken = {a.address for a in snap.allocations.values() if a.dc == dc}
    out = {o: held[o] for o in owners if o in held}
    free = (a for a in pool if a not in taken)
    for owner in owners:
        if owner in out:
            continue
        address = next(free, None)
        if address is None:
            raise PoolExhaustedError(f"datacenter {dc}: no free address left in pool "
                                     f"{pool.first}-{pool.last} ({pool.size} addresses)")  # fmt: skip
        out[owner] = address
    return out


async def allocate(
    store: Store,
    dc: str,
    pool: Pool,
    owners: Sequence[str],
    *,
    service: str = "",
    rollout: str = "",
    clock: Callable[[], float],
    actor: str = "rolling",
) -> dict[str, str]:
    """Allocate (or find) an address for each owner and record it; safe against racing
    deployers (compare-and-set, retried on conflict)."""

    async def attempt() -> dict[str, str]:
        snap = await store.snapshot()
        chosen = pick(snap, dc, pool, owners)
        held = owned(snap, dc)
        new = [o for o in owners if o not in held]
        if new:
            now = clock()
            changes = [Change.put(Allocation(dc, chosen[o], o, service, rollout, now)) for o in new]
            # at the revision the choice was made at: a racing writer (InUseError included,
            # a ConflictError) makes this pick again
            await store.apply(changes, expected_revision=snap.revision, actor=actor)
        return chosen

    return await retry_conflicts(attempt)


def release_changes(snap: Snapshot, owners: Sequence[str]) -> list[Change]:
    """Deletes of every allocation held by ``owners``."""
    wanted = set(owners)
    return [
        Change.delete("allocation", key)
        for key, a in sorted(snap.allocations.items())
        if a.owner in wanted
    ]
