"""DNS over HTTPS, RFC 8484: ``GET /dns-query?dns=BASE64URL`` and ``POST /dns-query``.

The reply is the DNS wire message with the query's ID echoed and
``Cache-Control: max-age`` set to the smallest answer TTL (the negative TTL
for empty answers). An undecodable message is HTTP 400 with a JSON error.
Steered answers name the services they came from, so the fast path's front
cache keeps GET answers (keyed by the whole target, the ``dns=`` message and
its ID included, and the client).
"""

from __future__ import annotations

import base64
import binascii

from .. import dnswire
from ..errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from .base import Context, Query, Reply, client, param

MEDIA_TYPE = "application/dns-message"
MAX_MESSAGE = 65535


def _decode_b64url(text: str) -> bytes:
    if len(text) > (MAX_MESSAGE * 4) // 3 + 4:
        raise PayloadTooLarge(f"dns parameter over {MAX_MESSAGE} bytes")
    if not text or any(c in text for c in "+/="):
        raise BadRequest("dns: must be unpadded base64url")
    try:
        # validate=True: a character outside the alphabet is an error, not silently skipped
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("dns: not valid base64url") from None


def message(q: Query) -> bytes:
    """The DNS query carried by a DoH request (GET parameter or POST body)."""
    if q.method == "POST":
        ctype = (q.content_type or "").split(";")[0].strip().lower()
        if ctype != MEDIA_TYPE:
            raise UnsupportedMediaType(
                f"Content-Type must be {MEDIA_TYPE}, not {ctype or 'none'!r}"
            )
        body = q.body or b""
        if len(body) > MAX_MESSAGE:
            raise PayloadTooLarge(f"a DNS message is at most {MAX_MESSAGE} bytes")
        return body
    return _decode_b64url(param(q, "dns", required=True) or "")


def resolve_doh(q: Query, ctx: Context) -> Reply:
    """Answer a DoH request."""
    wire = message(q)
    out = dnswire.answer(wire, ctx.table, ctx.config, lambda ecs: client(q, ctx, ecs))
    # A steered answer may be kept by a front cache while its service is unchanged; one
    # that holds zone data is not (zones change without any service changing).
    deps = () if out.zoned else out.deps
    return Reply(200, MEDIA_TYPE, out.wire, (("Cache-Control", f"max-age={out.min_ttl}"),), deps)
