"""Errors raised by the registry.

Every error carries the HTTP status and the short machine code that front ends
report, so they are mapped to responses by kind in one place::

    RegistryError                     (500 internal)
     ├── ValidationError              (400 invalid)       a value breaks a rule; names the field
     ├── NotFoundError                (404 not_found)     the record does not exist
     ├── ConflictError                (409 conflict)      the expected revision moved
     │    └── InUseError              (409 in_use)        a record still referenced elsewhere
     └── StoreUnavailableError        (503 store_unavailable) the backend cannot be reached
          ├── StoreRegressedError     (503 store_regressed) the backend lost data (older revision)
          ├── StoreResyncError        (503 store_resync)   the feed has a hole; reload a snapshot
          ├── StoreDamagedError       (503 store_damaged)  the content does not match its digest,
          │                                                or a key is unreadable; restore it
          └── StoreFullError          (503 store_full)     the backend refuses writes (disk full,
                                                           Redis maxmemory / MISCONF)
"""

from __future__ import annotations


class RegistryError(Exception):
    """The registry failed in an unexpected way."""

    status = 500
    code = "internal"

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or (self.__doc__ or self.code).strip()
        super().__init__(self.detail)


class ValidationError(RegistryError):
    """A value is not valid."""

    status = 400
    code = "invalid"

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class NotFoundError(RegistryError):
    """The record does not exist."""

    status = 404
    code = "not_found"


class ConflictError(RegistryError):
    """The registry changed since the expected revision."""

    status = 409
    code = "conflict"


class InUseError(ConflictError):
    """The record is still referenced by other records."""

    code = "in_use"


class StoreUnavailableError(RegistryError):
    """The registry store cannot be reached; nothing was applied."""

    status = 503
    code = "store_unavailable"


class StoreRegressedError(StoreUnavailableError):
    """The store is behind this node's revision (it lost data); nothing was applied."""

    code = "store_regressed"


class StoreResyncError(StoreUnavailableError):
    """The change feed cannot continue from the given revision; reload a snapshot."""

    code = "store_resync"


class StoreDamagedError(StoreUnavailableError):
    """The store's content does not match its digest (records lost, corrupt or of the wrong
    type); nothing was applied. Re-seed it with `httpdns registry restore --from-node URL`."""

    code = "store_damaged"


class StoreFullError(StoreUnavailableError):
    """The store refuses writes (disk full, or Redis maxmemory); nothing was applied."""

    code = "store_full"
