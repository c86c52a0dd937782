"""The OpenAPI 3.1 description of the controller's HTTP API (served at /openapi.json)."""

from __future__ import annotations

from typing import Any

_ENDPOINT: dict[str, Any] = {
    "type": "object",
    "required": ["name", "host", "port"],
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$"},
        "host": {"type": "string", "maxLength": 255},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "version": {"type": "string", "maxLength": 255},
        "health_check_url": {
            "type": "string",
            "description": "path starting with /; empty: TCP check",
        },
        "zone": {"type": "string", "maxLength": 255},
        "cluster": {"type": "string", "maxLength": 255},
        "labels": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "maxProperties": 64,
        },
        "weight": {"type": "integer", "minimum": 1},
    },
}
_ERROR: dict[str, Any] = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
}
_INSTANCE = {
    "allOf": [
        {"$ref": "#/components/schemas/Endpoint"},
        {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "health": {"enum": ["healthy", "unhealthy", "unknown"]},
                "active_requests": {"type": "integer"},
                "latency_ewma": {"type": ["number", "null"]},
            },
        },
    ]
}
_SERVICE = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "healthy": {"type": "integer"},
        "instances": {"type": "array", "items": {"$ref": "#/components/schemas/Instance"}},
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_ID_PARAMS = [
    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
    {
        "name": "address",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "host:port",
    },
]

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "dmsc controller", "version": "1"},
    "paths": {
        "/v1/registry/instances": {
            "put": {
                "summary": "Register (or update) an instance",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "allOf": [
                                    {"$ref": "#/components/schemas/Endpoint"},
                                    {
                                        "type": "object",
                                        "properties": {
                                            "ttl": {
                                                "type": "number",
                                                "exclusiveMinimum": 0,
                                                "maximum": 86400,
                                            }
                                        },
                                    },
                                ]
                            }
                        }
                    },
                },
                "responses": {
                    "201": _json(
                        {
                            "type": "object",
                            "properties": {
                                "id": {"type": "string"},
                                "revision": {"type": "integer"},
                            },
                        },
                        "registered",
                    ),
                    "400": _json(_ERROR_REF, "invalid registration; `field` names it"),
                    "503": _json(_ERROR_REF, "store unavailable"),
                },
            }
        },
        "/v1/registry/instances/{name}/{address}": {
            "delete": {
                "summary": "Deregister an instance",
                "parameters": _ID_PARAMS,
                "responses": {
                    "200": _json({"type": "object"}, "deregistered"),
                    "404": _json(_ERROR_REF, "no such instance"),
                },
            }
        },
        "/v1/registry/instances/{name}/{address}/heartbeat": {
            "put": {
                "summary": "Refresh the TTL of a registration",
                "parameters": _ID_PARAMS,
                "responses": {
                    "200": _json({"type": "object"}, "refreshed"),
                    "404": _json(_ERROR_REF, "no live registration"),
                },
            }
        },
        "/v1/registry/instances/{name}/{address}/load": {
            "put": {
                "summary": "Load report from an instance's sidecar",
                "parameters": _ID_PARAMS,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["active_requests"],
                                "properties": {
                                    "active_requests": {"type": "integer", "minimum": 0},
                                    "latency_ewma": {"type": "number", "minimum": 0},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json({"type": "object"}, "recorded"),
                    "400": _json(_ERROR_REF, "invalid report; `field` names it"),
                    "404": _json(_ERROR_REF, "no such instance"),
                },
            }
        },
        "/v1/registry/services": {
            "get": {
                "summary": "Every service with its instances and their health",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "revision": {"type": "integer"},
                                "services": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Service"},
                                },
                            },
                        },
                        "the registry",
                    )
                },
            }
        },
        "/v1/registry/services/{name}": {
            "get": {
                "summary": "One service",
                "parameters": _ID_PARAMS[:1],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Service"}, "the service"),
                    "404": _json(_ERROR_REF, "no such service"),
                },
            }
        },
        "/v1/registry/discover/{name}": {
            "get": {
                "summary": "Pick one healthy instance with the mesh's balancing algorithm",
                "parameters": [
                    *_ID_PARAMS[:1],
                    {"name": "version", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "key",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "hash key for consistent hashing",
                    },
                ],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Endpoint"}, "an instance"),
                    "404": _json(_ERROR_REF, "no healthy instance"),
                },
            }
        },
        "/v1/registry/watch": {
            "get": {
                "summary": "Long-poll until the registry's revision passes `index`",
                "parameters": [
                    {"name": "index", "in": "query", "schema": {"type": "integer"}},
                    {"name": "wait", "in": "query", "schema": {"type": "number", "maximum": 300}},
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "revision": {"type": "integer"},
                                "services": {
                                    "type": "object",
                                    "additionalProperties": {
                                        "$ref": "#/components/schemas/Service"
                                    },
                                },
                            },
                        },
                        "the whole registry at `revision`",
                    )
                },
            }
        },
        "/v1/status": {
            "get": {
                "summary": "Controller status (ok or degraded)",
                "responses": {"200": _json({"type": "object"}, "status")},
            }
        },
        "/v1/build": {
            "get": {
                "summary": "Compiled parts in use",
                "responses": {"200": _json({"type": "object"}, "build")},
            }
        },
        "/healthz": {
            "get": {"summary": "Liveness", "responses": {"200": {"description": "alive"}}}
        },
    },
    "components": {
        "schemas": {
            "Endpoint": _ENDPOINT,
            "Instance": _INSTANCE,
            "Service": _SERVICE,
            "Error": _ERROR,
        }
    },
}
