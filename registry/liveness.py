"""Who is alive: the store's expiring liveness entries, and the two kinds of process
that write them.

``Store.heartbeat`` / ``Store.nodes`` / ``Store.forget`` keep one JSON entry per
process, outside the registry (no revision, no audit line) and expiring by itself.
DNS nodes write theirs every second for the fleet view (httpdns/fleet.py); deployer
controllers write theirs on every reconcile pass for ``rolling status``
(deployer/controller.py), with ``"kind": "controller"`` and an id of
``controller:NAME``, kept long after the controller stops so that the status can say
when it last reconciled.

Readers that mean the fleet of DNS nodes (``GET /api/v1/nodes``, ``httpdns wait``,
``?wait=1``, the fleet's answer shares) take ``dns_nodes``; ``rolling status`` takes
``controllers``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

E = TypeVar("E", bound=Mapping[str, Any])

CONTROLLER = "controller"  # the ``kind`` of a controller's entry (nodes' entries have none)


def controller_id(name: str) -> str:
    """The entry id of controller ``name`` (apart from any node id)."""
    return f"{CONTROLLER}:{name}"


def is_controller(entry: Mapping[str, Any]) -> bool:
    """Whether a liveness entry is a deployer controller's, not a DNS node's."""
    return entry.get("kind") == CONTROLLER


def dns_nodes(entries: Iterable[E]) -> list[E]:
    """The DNS nodes among the store's liveness entries (controllers left out)."""
    return [e for e in entries if not is_controller(e)]


def controllers(entries: Iterable[E]) -> list[E]:
    """The deployer controllers among the store's liveness entries."""
    return [e for e in entries if is_controller(e)]
