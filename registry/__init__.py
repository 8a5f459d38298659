"""The registry: data model, validation, storage backends, change feed and audit log.

It knows nothing of HTTP or DNS; front ends and the deployer read snapshots
and write batches of changes through a ``Store``.
"""

from __future__ import annotations

from .changes import Change, ChangeSet
from .errors import (
    ConflictError,
    InUseError,
    NotFoundError,
    RegistryError,
    StoreUnavailableError,
    ValidationError,
)
from .model import (
    Allocation,
    Datacenter,
    Endpoint,
    Heartbeat,
    Region,
    Release,
    Rollout,
    Service,
)
from .snapshot import Snapshot
from .store import Store, open_store

__all__ = [
    "Allocation",
    "Change",
    "ChangeSet",
    "ConflictError",
    "Datacenter",
    "Endpoint",
    "Heartbeat",
    "InUseError",
    "NotFoundError",
    "Region",
    "RegistryError",
    "Release",
    "Rollout",
    "Service",
    "Snapshot",
    "Store",
    "StoreUnavailableError",
    "ValidationError",
    "open_store",
]
