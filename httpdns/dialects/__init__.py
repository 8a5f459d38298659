"""HTTP query dialects (DESIGN §6), each a pure function ``(Query, Context) -> Reply``."""

from __future__ import annotations

from .aliyun import resolve_many, resolve_one
from .base import Context, Query, Reply
from .dnspod import resolve_d
from .doh import resolve_doh
from .google import resolve_json

__all__ = [
    "Context",
    "Query",
    "Reply",
    "resolve_d",
    "resolve_doh",
    "resolve_json",
    "resolve_many",
    "resolve_one",
]
