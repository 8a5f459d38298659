"""Errors of the HTTP DNS node, and the one place that maps every error to a reply.

::

    HttpdnsError                      (500 internal)
     ├── BadRequest                   (400 bad_request)
     ├── Unauthorized                 (401 unauthorized)
     ├── Forbidden                    (403 forbidden)
     │    ├── AdminDisabled           (403 admin_disabled)
     │    ├── SignatureExpired        (403 signature_expired, Aliyun code SignatureExpired)
     │    └── InvalidSignature        (403 invalid_signature, Aliyun code InvalidSignature)
     ├── NotFound                     (404 not_found)
     ├── MethodNotAllowed             (405 method_not_allowed)
     ├── PayloadTooLarge              (413 payload_too_large)
     ├── UnsupportedMediaType         (415 unsupported_media_type)
     ├── TooManyRequests              (429 too_many_requests)
     └── NoRegistry                   (503 unavailable, DNS SERVFAIL) nothing to answer from

Registry errors (``registry.errors``) and plugin errors (the deployer's) carry their
own status and code and are mapped the same way. ``reply_for`` is the one place
where any exception becomes a reply, on every front end.
"""

from __future__ import annotations

import logging
from typing import Any

from registry.errors import RegistryError

from .logs import client_log


class HttpdnsError(Exception):
    """The node failed in an unexpected way."""

    status = 500
    code = "internal"
    extra: dict[str, Any] = {}

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or (self.__doc__ or self.code).strip()
        super().__init__(self.detail)


class BadRequest(HttpdnsError):
    """The request is malformed."""

    status = 400
    code = "bad_request"


class Unauthorized(HttpdnsError):
    """A valid admin token is required (Authorization: Bearer TOKEN)."""

    status = 401
    code = "unauthorized"


class Forbidden(HttpdnsError):
    """The request is not allowed."""

    status = 403
    code = "forbidden"


class AdminDisabled(Forbidden):
    """No admin token is configured on this node; start it with --admin-token or HTTPDNS_ADMIN_TOKEN."""

    code = "admin_disabled"


class SignatureExpired(Forbidden):
    """The signed request's expiry time `t` has passed."""

    code = "signature_expired"
    extra = {"code": "SignatureExpired"}


class InvalidSignature(Forbidden):
    """The request signature `s` does not match."""

    code = "invalid_signature"
    extra = {"code": "InvalidSignature"}


class NotFound(HttpdnsError):
    """No such resource."""

    status = 404
    code = "not_found"


class MethodNotAllowed(HttpdnsError):
    """This method is not allowed on this path."""

    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(HttpdnsError):
    """The request body is too large."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(HttpdnsError):
    """The request body has the wrong Content-Type."""

    status = 415
    code = "unsupported_media_type"


class TooManyRequests(HttpdnsError):
    """Too many requests from this client; retry later."""

    status = 429
    code = "too_many_requests"


class NoRegistry(HttpdnsError):
    """This node has no registry to answer from (it started while the store was damaged,
    without a local snapshot): ask another node."""

    status = 503
    code = "unavailable"


def error_body(exc: HttpdnsError | RegistryError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body for an error of either package."""
    body: dict[str, Any] = {"error": exc.code, "detail": exc.detail}
    if isinstance(exc, HttpdnsError):
        body.update(exc.extra)
    return exc.status, body


def reply_for(exc: BaseException, where: str = "") -> tuple[int, dict[str, Any]]:
    """The one mapping of any exception to an HTTP status and ``{"error","detail"}`` body.

    Errors of the node, the registry and plugins (anything with ``status``, ``code`` and
    ``detail``) are client-facing and answered as they say, 4xx counted by kind in the
    rate-limited client log; anything else is a bug: logged with its traceback (rate
    limited) and answered 500 without detail. Call it from an ``except`` block.
    """
    if isinstance(exc, HttpdnsError | RegistryError) or _is_error_like(exc):
        status, body = error_body(exc)  # type: ignore[arg-type]
        level = logging.INFO if status < 500 else logging.WARNING
        client_log.note(str(body["error"]), str(body["detail"])[:200], level)
        return status, body
    client_log.bug(where)
    return 500, {"error": "internal", "detail": "internal error (logged on the node)"}


def _is_error_like(exc: BaseException) -> bool:
    return (
        isinstance(getattr(exc, "status", None), int)
        and isinstance(getattr(exc, "code", None), str)
        and isinstance(getattr(exc, "detail", None), str)
    )
