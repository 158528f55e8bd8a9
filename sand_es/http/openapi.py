"""The OpenAPI document, built from the same msgspec types the handlers decode and encode."""

from __future__ import annotations

from typing import Any

import msgspec

from sand_es import __version__
from sand_es.http import schemas

_TYPES: tuple[type[msgspec.Struct], ...] = (
    schemas.NetworkCreate,
    schemas.EndpointCreate,
    schemas.NetworkResponse,
    schemas.NetworksResponse,
    schemas.EndpointResponse,
    schemas.EndpointsResponse,
    schemas.ErrorResponse,
    schemas.VersionResponse,
    schemas.HealthResponse,
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _errors(*codes: int) -> dict[str, Any]:
    meaning = {
        400: "malformed or impossible request",
        404: "no such network or endpoint (or, for a create retried with its Idempotency-Key, "
        "it was deleted since)",
        409: "conflicts with the current state",
        413: "request body too large",
        422: "this Idempotency-Key was already used for a different request",
        503: "etcd unreachable, or the agent is catching up",
    }
    return {str(code): _json("ErrorResponse", meaning[code]) for code in codes}


def _path_id(what: str) -> dict[str, Any]:
    return {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}, "description": what}


_IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Retrying with the same key returns the first outcome instead of acting twice.",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
}


def _paths() -> dict[str, Any]:
    return {
        "/version": {
            "get": {
                "summary": "The agent's version",
                "responses": {"200": _json("VersionResponse", "version")},
            }
        },
        "/health": {
            "get": {
                "summary": "Whether the agent has caught up with the log and accepts writes",
                "responses": {"200": _json("HealthResponse", "ready"), **_errors(503)},
            }
        },
        "/networks": {
            "get": {
                "summary": "Every network",
                "responses": {"200": _json("NetworksResponse", "networks, by id")},
            },
            "post": {
                "summary": "Create a network (allocates its VNI and address pool)",
                "parameters": [_IDEMPOTENCY],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _ref("NetworkCreate")}},
                },
                "responses": {
                    "201": _json("NetworkResponse", "the network"),
                    **_errors(400, 404, 409, 413, 422, 503),
                },
            },
        },
        "/networks/{id}": {
            "get": {
                "summary": "One network",
                "parameters": [_path_id("network id")],
                "responses": {"200": _json("NetworkResponse", "the network"), **_errors(404)},
            },
            "delete": {
                "summary": "Delete a network with no endpoint left",
                "parameters": [_path_id("network id"), _IDEMPOTENCY],
                "responses": {"204": {"description": "deleted"}, **_errors(400, 404, 409, 422, 503)},
            },
        },
        "/endpoints": {
            "get": {
                "summary": "Endpoints, optionally of one network and/or one host",
                "parameters": [
                    {"name": "network_id", "in": "query", "required": False, "schema": {"type": "string"}},
                    {"name": "hostname", "in": "query", "required": False, "schema": {"type": "string"}},
                ],
                "responses": {"200": _json("EndpointsResponse", "endpoints, by id")},
            },
            "post": {
                "summary": "Add an endpoint on this agent's host (and wire it into a namespace)",
                "parameters": [_IDEMPOTENCY],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("EndpointCreate")}},
                },
                "responses": {
                    "201": _json("EndpointResponse", "the endpoint"),
                    **_errors(400, 404, 409, 413, 422, 503),
                },
            },
        },
        "/endpoints/{id}": {
            "delete": {
                "summary": "Remove an endpoint, whichever host owns it",
                "parameters": [_path_id("endpoint id"), _IDEMPOTENCY],
                "responses": {"204": {"description": "removed"}, **_errors(400, 404, 422, 503)},
            },
        },
    }


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API."""
    _, components = msgspec.json.schema_components(_TYPES, ref_template="#/components/schemas/{name}")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sand-es agent API",
            "version": __version__,
            "description": "SAND's REST API (same routes and JSON field names), served by sand-es.",
        },
        "paths": _paths(),
        "components": {"schemas": components},
    }
