"""HTTP query dialects (DESIGN §6), each a pure function ``(Query, Context) -> Reply``.

``LANES`` maps a dialect function to the factory of its fast-path lane (``Lane``): tried
by ``httpdns.fasthttp`` before the function, for requests no cache keyed by the request
can answer (the AES-encrypted ``/d``). ``MISS_LANES`` maps one to the factory of its miss
lane (``MissLane``): for the plainest requests a bucket map decides (plain
``/d?dn=&ip=``), tried first by a plain HTTP/1.1 GET, else after the front cache missed.
"""

from __future__ import annotations

from .aliyun import resolve_many, resolve_one
from .base import Context, Query, Reply
from .dnspod import lane_d, miss_lane_d, resolve_d
from .dnspod_lane import Lane
from .dnspod_miss import Answered, Kept, MissLane, Repeat
from .doh import resolve_doh
from .google import resolve_json

LANES = {resolve_d: lane_d}
MISS_LANES = {resolve_d: miss_lane_d}

__all__ = [
    "LANES",
    "MISS_LANES",
    "Answered",
    "Context",
    "Kept",
    "Lane",
    "MissLane",
    "Query",
    "Repeat",
    "Reply",
    "resolve_d",
    "resolve_doh",
    "resolve_json",
    "resolve_many",
    "resolve_one",
]
