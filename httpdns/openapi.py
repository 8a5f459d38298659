"""The OpenAPI 3.1 document served at ``/api/v1/openapi.json``."""

from __future__ import annotations

from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _op(summary: str, body: str | None = None, params: list[str] | None = None,
        write: bool = False) -> dict[str, Any]:  # fmt: skip
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
    parameters = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                  for p in params or []]  # fmt: skip
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

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "httpdns admin API", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
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
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/api/v1/state": {"get": _op("the whole registry snapshot")},
        "/api/v1/datacenters/{dc}": {
            "put": _op("create or replace a datacenter", "Datacenter", ["dc"], True),
            "delete": _op("delete an unused datacenter", None, ["dc"], True)},
        "/api/v1/regions/{region}": {
            "put": _op("create or replace a region", "Region", ["region"], True),
            "delete": _op("delete an unused region", None, ["region"], True)},
        "/api/v1/services/{name}": {
            "put": _op("create or replace a service", "Service", ["name"], True),
            "delete": _op("delete a service with its endpoints and release", None, ["name"], True)},
        "/api/v1/services/{name}/traffic": {
            "put": _op("replace a service's traffic tables", "Traffic", ["name"], True)},
        "/api/v1/services/{name}/release": {
            "put": _op("set stable / canary versions", "Release", ["name"], True)},
        "/api/v1/services/{name}/endpoints/{id}": {
            "put": _op("create or replace an endpoint", "Endpoint", ["name", "id"], True),
            "delete": _op("delete an endpoint", None, ["name", "id"], True)},
        "/api/v1/traffic/shift": {
            "post": _op("move a percentage of weight between datacenters", "Shift", None, True)},
        "/api/v1/explain": {"get": {**_op("the steering trace for one query"), "parameters": [
            {"name": n, "in": "query", "required": n == "name", "schema": {"type": "string"}}
            for n in ("name", "ip", "uid", "type")]}},
        "/api/v1/audit": {"get": {**_op("committed changes after a revision"), "parameters": [
            {"name": n, "in": "query", "required": False, "schema": {"type": "integer"}}
            for n in ("since", "limit")]}},
        "/api/v1/registry/restore": {
            "post": _op("re-seed a store that lost data (Redis) from this node's snapshot", None, None, True)},
        "/api/v1/nodes": {"get": _op("the fleet: every live node's id, address, version, revision, status and last heartbeat (`seen`); writes take `?wait=1[&timeout=S]` to answer `applied: {nodes, of}`")},
        "/healthz": {"get": {"summary": "node health: ok | degraded (200, `reasons`) | unavailable (503, nothing to serve)", "security": [],
                             "responses": {"200": {"description": "status, reasons, revision, store, stale_seconds"},
                                           "503": {"description": "status unavailable: no registry to serve"}}}},
    },
}  # fmt: skip
