"""The router's OpenAPI document, served at `/_bluegreen/openapi.json`.

The router has no framework to derive one from: this describes its admin API and the
proxied paths (any plain path goes to the live color unchanged), for clients and for the
schemathesis fuzz in the tests.
"""

from __future__ import annotations

from typing import Any

_ERROR = {
    "description": "error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error", "detail"],
                "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
            }
        }
    },
}
_ROUTE = {
    "type": "object",
    "required": ["color", "revision"],
    "properties": {
        "color": {"type": "string", "enum": ["blue", "green"]},
        "revision": {"type": "string"},
    },
}
_PROXIED = {
    "200": {"description": "the live color's answer, passed through"},
    "400": _ERROR,
    "413": _ERROR,
    "502": _ERROR,
}


def _proxied(summary: str, *, body: bool) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": dict(_PROXIED)}
    if body:
        operation["requestBody"] = {
            "content": {"application/json": {"schema": {}}},
            "required": False,
        }
    return operation


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "bluegreen local router",
        "version": "0.1.0",
        "description": "Proxies every plain path to the live color; flips on a conditional "
        "admin call. Any other request target is refused with 400.",
    },
    "paths": {
        "/_bluegreen/healthz": {
            "get": {"summary": "The router is up", "responses": {"200": {"description": "ok"}}}
        },
        "/_bluegreen/metrics": {
            "get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "ok"}}}
        },
        "/_bluegreen/route": {
            "get": {
                "summary": "The live color and its revision",
                "responses": {
                    "200": {
                        "description": "the route",
                        "content": {"application/json": {"schema": _ROUTE}},
                    }
                },
            },
            "put": {
                "summary": "Flip the live color, if the route is still at `expected_revision`",
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["color", "expected_revision"],
                                "properties": {
                                    "color": {"type": "string", "enum": ["blue", "green"]},
                                    "expected_revision": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "the new route; `saved` says whether it was written",
                        "content": {"application/json": {"schema": _ROUTE}},
                    },
                    "400": _ERROR,
                    "401": _ERROR,
                    "409": _ERROR,
                },
            },
        },
        "/predict": {"post": _proxied("Proxied to the live color", body=True)},
        "/invocations": {"post": _proxied("Proxied to the live color", body=True)},
        "/{path}": {
            "parameters": [
                {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "get": _proxied("Any other path, proxied to the live color", body=False),
            "post": _proxied("Any other path, proxied to the live color", body=True),
        },
    },
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
}
