"""HTTP query dialects (DESIGN §6), each a pure function ``(Query, Context) -> Reply``.

``LANES`` maps a dialect function to the factory of its fast-path lane (``Lane``): tried
by ``httpdns.fasthttp`` before the function, for requests no cache keyed by the request
can answer (the AES-encrypted ``/d``).
"""

from __future__ import annotations

from .aliyun import resolve_many, resolve_one
from .base import Context, Query, Reply
from .dnspod import lane_d, resolve_d
from .dnspod_lane import Lane
from .doh import resolve_doh
from .google import resolve_json

LANES = {resolve_d: lane_d}

__all__ = [
    "LANES",
    "Context",
    "Lane",
    "Query",
    "Reply",
    "resolve_d",
    "resolve_doh",
    "resolve_json",
    "resolve_many",
    "resolve_one",
]
