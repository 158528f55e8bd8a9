"""The OpenAPI document, built from the same msgspec types the handlers decode and encode."""

from __future__ import annotations

from typing import Any

import msgspec

from sand_es import __version__
from sand_es.audit.filters import TAGS
from sand_es.http import history, schemas

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
    history.EventsResponse,
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _errors(*codes: int) -> dict[str, Any]:
    meaning = {
        400: "malformed or impossible request",
        404: "no such network or endpoint (or, for a create retried with its Idempotency-Key, "
        "it was deleted since), or a revision etcd has not reached",
        409: "conflicts with the current state",
        413: "request body too large",
        422: "this Idempotency-Key was already used for a different request",
        503: "etcd unreachable, or the agent is catching up",
    }
    return {str(code): _json("ErrorResponse", meaning[code]) for code in codes}


def _path_id(what: str) -> dict[str, Any]:
    return {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}, "description": what}


_REVISION = {
    "name": "revision",
    "in": "query",
    "required": False,
    "description": "The state as of this etcd revision: the log folded up to its last event written at "
    "that revision or before. 400 unless a positive integer; 404 beyond etcd's current revision.",
    "schema": {"type": "integer", "minimum": 1},
}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


_EVENTS_PARAMETERS = [
    _query("network_id", "Only events of this network."),
    _query("endpoint_id", "Only events of this endpoint."),
    _query(
        "hostname",
        "Only events appended by this host (the event's actor) or about an endpoint on it (the "
        "endpoint's hostname): either matches.",
    ),
    {
        **_query("type", "Only events of these types (repeat the parameter, or separate with commas)."),
        "schema": {"type": "array", "items": {"type": "string", "enum": list(TAGS)}},
        "style": "form",
        "explode": True,
    },
    _query("since", "Only events stamped at or after: ISO 8601, or a time ago (90s, 15m, 1h, 2d)."),
    _query("until", "Only events stamped at or before: ISO 8601, or a time ago."),
    _query(
        "after_revision",
        "Only events written after this etcd revision: 0 (the default) for the first page, then the "
        "previous page's next_after_revision.",
        {"type": "integer", "minimum": 0, "default": 0},
    ),
    _query(
        "limit",
        "Events per page (a page may hold more, to end with a whole transaction).",
        {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
    ),
]

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
                "summary": "Every network (now, or as of a revision)",
                "parameters": [_REVISION],
                "responses": {"200": _json("NetworksResponse", "networks, by id"), **_errors(400, 404, 503)},
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
                "summary": "One network (now, or as of a revision)",
                "parameters": [_path_id("network id"), _REVISION],
                "responses": {"200": _json("NetworkResponse", "the network"), **_errors(400, 404, 503)},
            },
            "delete": {
                "summary": "Delete a network with no endpoint left",
                "parameters": [_path_id("network id"), _IDEMPOTENCY],
                "responses": {"204": {"description": "deleted"}, **_errors(400, 404, 409, 422, 503)},
            },
        },
        "/endpoints": {
            "get": {
                "summary": "Endpoints, optionally of one network and/or one host (now, or as of a revision)",
                "parameters": [
                    {"name": "network_id", "in": "query", "required": False, "schema": {"type": "string"}},
                    {"name": "hostname", "in": "query", "required": False, "schema": {"type": "string"}},
                    _REVISION,
                ],
                "responses": {
                    "200": _json("EndpointsResponse", "endpoints, by id"),
                    **_errors(400, 404, 503),
                },
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
        "/events": {
            "get": {
                "summary": "The log's events, oldest first, filtered and paged by revision",
                "description": "Every filter given must match. A page ends with a whole etcd revision "
                "(a transaction is never split), and reads at most a bounded number of events: follow "
                "next_after_revision until it is null (the end of the log, for now).",
                "parameters": _EVENTS_PARAMETERS,
                "responses": {"200": _json("EventsResponse", "a page of events"), **_errors(400, 503)},
            }
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
