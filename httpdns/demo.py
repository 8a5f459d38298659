"""The demo data set loaded by ``httpdns serve --demo`` into an empty store.

Two datacenters, the site's own (``idc``, writable) and a public cloud
(``cloud``, read-only remote, as in the source article's third stage); a ``rw``
service that may only be answered from the idc, and a ``ro`` service split
60/40 with a 10 percent canary.
"""

from __future__ import annotations

from registry.changes import Change
from registry.model import Datacenter, Endpoint, Region, Release, Service
from registry.store import Store

DEMO_ZONE = "demo.example"
DEMO_ACCOUNT = "100000"
DEMO_SECRET = "demo-secret"

TRADE = f"trade.{DEMO_ZONE}"
QUOTES = f"quotes.{DEMO_ZONE}"


def demo_changes() -> list[Change]:
    """The demo registry as one batch."""
    changes = [
        Change.put(Datacenter("idc", "idc", writable=True, labels={"city": "shanghai"})),
        Change.put(Datacenter("cloud", "cloud", writable=False, labels={"provider": "public"})),
        Change.put(Region("mobile", ("100.64.0.0/10",))),
        Change.put(Service(TRADE, {"default": {"idc": 70, "cloud": 30}}, "rw", 30)),
        Change.put(
            Service(
                QUOTES,
                {"default": {"idc": 60, "cloud": 40}, "mobile": {"idc": 20, "cloud": 80}},
                "ro",
                20,
            )
        ),
        Change.put(Release(TRADE, "v1")),
        Change.put(Release(QUOTES, "v1", "v2", 10.0)),
    ]
    for i in range(3):
        changes.append(
            Change.put(Endpoint(TRADE, f"trade-idc-{i}", "idc", f"192.0.2.{10 + i}", 8080))
        )
        changes.append(
            Change.put(Endpoint(TRADE, f"trade-cloud-{i}", "cloud", f"198.51.100.{10 + i}", 8080))
        )
    for i in range(4):
        version = "v2" if i == 3 else "v1"
        changes.append(
            Change.put(Endpoint(QUOTES, f"quotes-idc-{i}", "idc", f"192.0.2.{20 + i}", 80, version))
        )
        changes.append(
            Change.put(
                Endpoint(QUOTES, f"quotes-cloud-{i}", "cloud", f"198.51.100.{20 + i}", 80, version)
            )
        )
        changes.append(
            Change.put(
                Endpoint(QUOTES, f"quotes-idc6-{i}", "idc", f"2001:db8::{20 + i:x}", 80, version)
            )
        )
    return changes


async def load_demo(store: Store) -> bool:
    """Load the demo set if the store is empty; True if it was loaded."""
    snap = await store.snapshot()
    if snap.revision or snap.services or snap.datacenters:
        return False
    await store.apply(demo_changes(), expected_revision=snap.revision, actor="demo")
    return True
