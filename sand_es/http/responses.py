"""JSON responses encoded with msgspec."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from starlette.responses import Response

from sand_es.http.schemas import ErrorResponse

_encoder = msgspec.json.Encoder()


class JSON(Response):
    """A response whose body is a msgspec-encodable value."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encoder.encode(content)


def error_response(status: int, message: str, *, headers: Mapping[str, str] | None = None) -> Response:
    """`{"error": message}` with a status code."""
    return JSON(ErrorResponse(error=message), status_code=status, headers=headers)
