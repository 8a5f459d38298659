"""The OpenAPI 3.1 document served at ``/api/v1/openapi.json``, generated from the
route table (``httpdns.routes``): every admin and plugin route with a summary, and
``/healthz``. Plugins add their request schemas through ``Route.body`` naming a
schema here or one they register with ``schemas``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from .routes import Route


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _param(name: str, where: str, required: bool) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "schema": {"type": "string"}}


def _op(
    summary: str,
    body: str | None = None,
    params: list[str] | None = None,
    write: bool = False,
    query: Sequence[str] = (),
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": {"description": "OK, with `revision`", "content": {"application/json": {}}},
            **{
                code: {
                    "description": text,
                    "content": {"application/json": {"schema": _ref("Error")}},
                }
                for code, text in (
                    ("400", "invalid input"),
                    ("401", "missing or wrong token"),
                    ("404", "not found"),
                )
            },
        },
    }
    parameters = [_param(p, "path", True) for p in params or []]
    parameters += [_param(n, "query", False) for n in query]
    if write:
        op["responses"]["409"] = {"description": "If-Match revision moved, or record in use"}
        op["responses"]["503"] = {"description": "store unavailable; nothing applied"}
        parameters.append(
            {
                "name": "If-Match",
                "in": "header",
                "required": False,
                "schema": {"type": "integer"},
                "description": "expected registry revision (compare-and-set)",
            }
        )
    if parameters:
        op["parameters"] = parameters
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return op


_weights = {
    "type": "object",
    "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 10000},
}

SCHEMAS: dict[str, Any] = {
            "Error": {"type": "object", "required": ["error", "detail"],
                      "properties": {"error": {"type": "string"}, "detail": {"type": "string"}}},
            "Datacenter": {"type": "object", "additionalProperties": False, "properties": {
                "kind": {"enum": ["idc", "cloud"]}, "writable": {"type": "boolean"},
                "drained": {"type": "boolean"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
            "Region": {"type": "object", "additionalProperties": False, "properties": {
                "cidrs": {"type": "array", "items": {"type": "string"}}}},
            "Traffic": {"type": "object", "required": ["default"], "additionalProperties": _weights},
            "Service": {"type": "object", "additionalProperties": False, "required": ["traffic"],
                        "properties": {
                "access": {"enum": ["rw", "ro"]}, "ttl": {"type": "integer", "minimum": 0, "maximum": 86400},
                "answers": {"type": "integer", "minimum": 1, "maximum": 64},
                "all_down": {"enum": ["fail-open", "fail-closed"]}, "traffic": _ref("Traffic")}},
            "Release": {"type": "object", "additionalProperties": False, "properties": {
                "stable": {"type": ["string", "null"]}, "canary": {"type": ["string", "null"]},
                "canary_percent": {"type": "number", "minimum": 0, "maximum": 100, "multipleOf": 0.01}}},
            "Endpoint": {"type": "object", "additionalProperties": False, "required": ["dc", "address"],
                         "properties": {
                "dc": {"type": "string"}, "address": {"type": "string"},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "version": {"type": "string"}, "weight": {"type": "integer", "minimum": 0, "maximum": 10000},
                "healthy": {"type": "boolean"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
            "Shift": {"type": "object", "required": ["from", "to", "percent"], "properties": {
                "from": {"type": "string"}, "to": {"type": "string"},
                "percent": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
                "services": {"type": ["array", "null"], "items": {"type": "string"}}}},
            "Revert": {"type": "object", "required": ["to"], "additionalProperties": False,
                       "properties": {"to": {"type": "integer", "minimum": 0}}},
            "Registry": {"type": "object", "additionalProperties": False, "properties": {
                "datacenters": {"type": "object", "additionalProperties": _ref("Datacenter")},
                "regions": {"type": "object", "additionalProperties": _ref("Region")},
                "services": {"type": "object", "additionalProperties": {"type": "object"}}}},
            "Zone": {"type": "object", "additionalProperties": False, "required": ["nameservers"],
                     "properties": {
                "nameservers": {"type": "object", "minProperties": 1, "additionalProperties": {
                    "type": "array", "items": {"type": "string"}}},
                "soa": {"type": "object", "additionalProperties": False, "properties": {
                    "mname": {"type": "string"}, "rname": {"type": "string"},
                    **{k: {"type": "integer", "minimum": 1}
                       for k in ("refresh", "retry", "expire")},
                    "minimum": {"type": "integer", "minimum": 0, "maximum": 86400}}}}},
        }  # fmt: skip


_PARAM = re.compile(r"{(\w+)}")


def document(routes: Sequence[Route], schemas: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The OpenAPI document of ``routes`` (those with a summary)."""
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        if not r.summary:
            continue
        op = _op(r.summary, r.body, _PARAM.findall(r.path), r.write, r.query)
        if r.public:
            op["security"] = []
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "httpdns admin API", "version": "1"},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {**SCHEMAS, **(schemas or {})},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }
