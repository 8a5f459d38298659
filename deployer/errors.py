"""Errors raised by the deployer.

Every error carries the HTTP status and the short machine code that the admin
API and the ``rolling`` CLI report, so they are mapped by kind in one place::

    DeployerError                     (500 internal)
     ├── SpecError                    (400 invalid_spec)     a release spec or config value is wrong
     ├── NoRolloutError               (404 no_rollout)       the service has no such rollout
     ├── IntentRefusedError           (409 intent_refused)   the intent does not fit the phase
     ├── PoolExhaustedError           (409 pool_exhausted)   no free address left in a pool
     ├── ImageError                   (400 image_unavailable) the image is on no host and cannot be pulled
     └── EngineError                  (502 engine_error)     a Docker host refused; names the host
          ├── PullError               (502 pull_failed)      a Docker host could not pull the image
          └── EngineUnavailableError  (503 engine_unavailable) a Docker host cannot be reached

Registry errors (``registry.errors``) pass through unchanged.
"""

from __future__ import annotations


class DeployerError(Exception):
    """The deployer failed in an unexpected way."""

    status = 500
    code = "internal"

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or (self.__doc__ or self.code).strip()
        super().__init__(self.detail)


class SpecError(DeployerError):
    """A release spec or deployer config value is not valid."""

    status = 400
    code = "invalid_spec"

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class NoRolloutError(DeployerError):
    """The service has no rollout to act on."""

    status = 404
    code = "no_rollout"


class IntentRefusedError(DeployerError):
    """The intent does not apply to the rollout in its current phase."""

    status = 409
    code = "intent_refused"


class PoolExhaustedError(DeployerError):
    """The datacenter's address pool has no free address left."""

    status = 409
    code = "pool_exhausted"


class EngineError(DeployerError):
    """A Docker host refused an operation."""

    status = 502
    code = "engine_error"

    def __init__(self, host: str, message: str) -> None:
        self.host = host
        super().__init__(f"docker {host}: {message}")


class EngineUnavailableError(EngineError):
    """A Docker host cannot be reached."""

    status = 503
    code = "engine_unavailable"


class PullError(EngineError):
    """A Docker host could not pull the image."""

    code = "pull_failed"


class ImageError(DeployerError):
    """The image is not on a target Docker host and cannot be pulled there."""

    status = 400
    code = "image_unavailable"
