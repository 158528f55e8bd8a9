"""`create_app`: the Starlette application of one agent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
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
from sand_es.http.history import Past
from sand_es.http.middleware import BodyLimit, RequestLog
from sand_es.http.openapi import document
from sand_es.http.responses import JSON
from sand_es.kernel.reconciler import Reconciler
from sand_es.ports import EventLog
from sand_es.service import Service

Handler = Callable[[Request], Awaitable[Response]]


def _route(path: str, **by_method: Handler) -> Route:
    """One route per path, so a 405 lists every method the path allows in `Allow`."""

    async def dispatch(request: Request) -> Response:
        return await by_method[request.method if request.method != "HEAD" else "GET"](request)

    return Route(path, dispatch, methods=list(by_method), name=path)


def create_app(
    service: Service,
    settings: AgentSettings,
    *,
    kernel: Reconciler | None = None,
    log: EventLog | None = None,
) -> Starlette:
    """The API over `service`; the caller runs the views' tail, the kernel projection and owns the service.

    With `kernel`, creating an endpoint on this host answers once its devices are wired.
    With `log` (the service's own), `GET /events` and `?revision=` read the log's past;
    without it they answer 503.
    """
    openapi = document()

    async def openapi_json(request: Request) -> Response:
        return JSON(openapi)

    routes = [
        _route("/version", GET=handlers.version),
        _route("/health", GET=handlers.health),
        _route("/openapi.json", GET=openapi_json),
        _route("/networks", GET=handlers.list_networks, POST=handlers.create_network),
        _route("/networks/{id}", GET=handlers.show_network, DELETE=handlers.delete_network),
        _route("/endpoints", GET=handlers.list_endpoints, POST=handlers.create_endpoint),
        _route("/endpoints/{id}", DELETE=handlers.delete_endpoint),
        _route("/events", GET=handlers.list_events),
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
    app.state.kernel = kernel
    app.state.settings = settings
    app.state.past = None if log is None else Past(log, service.views)
    return app
