"""The only place errors become HTTP status codes; every error body is `{"error": "…"}`."""

from __future__ import annotations

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from sand_es.errors import Conflicting, InfraError, Invalid, KeyReused, NotFound, Rejected
from sand_es.http.responses import error_response

log = structlog.get_logger(__name__)


class BadRequest(Exception):
    """A body or query the API cannot read (malformed JSON, wrong types, unknown fields)."""


class PayloadTooLarge(Exception):
    """A request body over the configured limit."""


class NotReady(Exception):
    """The agent has not caught up with the log yet."""


def status_of(error: Exception) -> int:
    """The HTTP status of a sand-es error."""
    match error:
        case Invalid() | BadRequest():
            return 400
        case NotFound():
            return 404
        case KeyReused():
            return 422  # as the IETF Idempotency-Key draft answers a key reused for another request
        case Conflicting():
            return 409
        case PayloadTooLarge():
            return 413
        case Rejected():
            return 400
        case InfraError() | NotReady():
            return 503
        case _:
            return 500


async def on_error(request: Request, exc: Exception) -> Response:
    """Exception handler for everything sand-es raises on purpose."""
    status = status_of(exc)
    request.state.error = str(exc)
    if status >= 500:
        log.warning("request failed", error=str(exc), error_type=type(exc).__name__)
    return error_response(status, str(exc))


async def on_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (unknown path) and 405 (wrong method), with a JSON body."""
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, exc.detail, headers=exc.headers)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    """A bug: logged with its traceback, answered 500 without internals."""
    log.exception("unexpected error", path=request.url.path)
    # Starlette re-raises after this handler and uvicorn then drops the connection:
    # say so, or a client reusing the connection sees a reset on its next request.
    return error_response(500, "internal error", headers={"Connection": "close"})
