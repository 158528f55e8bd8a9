"""`create_app`: the Starlette application of one agent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sand_es.config import AgentSettings
from sand_es.errors import SandError
from sand_es.http import handlers
from sand_es.http.errors import (
    BadRequest,
    NotReady,
    PayloadTooLarge,
    on_error,
    on_http_exception,
    on_unexpected,
)
from sand_es.http.middleware import BodyLimit, RequestLog
from sand_es.http.openapi import document
from sand_es.http.responses import JSON
from sand_es.service import Service


def create_app(service: Service, settings: AgentSettings) -> Starlette:
    """The API over `service`; the caller runs the views' tail and owns the service."""
    openapi = document()

    async def openapi_json(request: Request) -> Response:
        return JSON(openapi)

    routes = [
        Route("/version", handlers.version, methods=["GET"]),
        Route("/health", handlers.health, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/networks", handlers.list_networks, methods=["GET"]),
        Route("/networks", handlers.create_network, methods=["POST"]),
        Route("/networks/{id}", handlers.show_network, methods=["GET"]),
        Route("/networks/{id}", handlers.delete_network, methods=["DELETE"]),
        Route("/endpoints", handlers.list_endpoints, methods=["GET"]),
        Route("/endpoints", handlers.create_endpoint, methods=["POST"]),
        Route("/endpoints/{id}", handlers.delete_endpoint, methods=["DELETE"]),
    ]
    handlers_by_error: Mapping[Any, Any] = {
        SandError: on_error,
        BadRequest: on_error,
        PayloadTooLarge: on_error,
        NotReady: on_error,
        HTTPException: on_http_exception,
        Exception: on_unexpected,
    }
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestLog), Middleware(BodyLimit, max_bytes=settings.max_body_bytes)],
        exception_handlers=handlers_by_error,
    )
    app.state.service = service
    app.state.settings = settings
    return app
