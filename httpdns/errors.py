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
     └── UnsupportedMediaType         (415 unsupported_media_type)

Registry errors (``registry.errors``) carry their own status and code and are
mapped by ``error_body`` the same way.
"""

from __future__ import annotations

from typing import Any

from registry.errors import RegistryError


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


def error_body(exc: HttpdnsError | RegistryError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body for an error of either package."""
    body: dict[str, Any] = {"error": exc.code, "detail": exc.detail}
    if isinstance(exc, HttpdnsError):
        body.update(exc.extra)
    return exc.status, body
