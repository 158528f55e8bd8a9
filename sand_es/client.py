"""`SandClient`: a typed, synchronous client of SAND's agent API (and of sand-es's).

It speaks the routes of `sand_es.http.app` and decodes every answer into the types
of `sand_es.http.schemas`. Unlike SAND's Go client it URL-encodes query strings and
path ids, checks every status code, and keeps the API's own error message (Go's
client turned every 404 into "Not found").
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote, urlsplit

import httpx
import msgspec

from sand_es import __version__
from sand_es.http.schemas import (
    ActivateParams,
    Endpoint,
    EndpointCreate,
    EndpointResponse,
    EndpointsResponse,
    ErrorResponse,
    Network,
    NetworkCreate,
    NetworkResponse,
    NetworksResponse,
    VersionResponse,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "SandApiError",
    "SandClient",
    "SandClientError",
    "SandConnectionError",
]

DEFAULT_URL = "http://localhost:9999"
DEFAULT_TIMEOUT = 30.0
USER_AGENT = f"sand-es-client/{__version__}"

Body = TypeVar("Body", bound=msgspec.Struct)

_error_decoder = msgspec.json.Decoder(ErrorResponse)


class SandClientError(Exception):
    """Root of the errors `SandClient` raises."""


class SandApiError(SandClientError):
    """The API answered with an error status; `message` is its `{"error": …}` text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        self.message = message


class SandConnectionError(SandClientError):
    """The API could not be reached, or did not answer in time."""


class SandClient:
    """A client of one agent's API, over a pooled `httpx.Client`; use it as a context manager.

    `cert_file` and `key_file` (given together) identify the client to an mTLS agent;
    `ca_file` is the CA that signed the agent's certificate (the system's CAs otherwise).
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        cert_file: str | None = None,
        key_file: str | None = None,
        ca_file: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`transport` replaces httpx's own (tests reach agents inside network namespaces this way)."""
        split = urlsplit(url)
        if split.scheme not in ("http", "https") or not split.hostname:
            raise ValueError(f"invalid API URL {url!r}: expected http://host:port or https://host:port")
        if not timeout > 0:
            raise ValueError(f"invalid timeout {timeout!r}: must be a positive number of seconds")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            verify=_ssl_context(cert_file, key_file, ca_file),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            transport=transport,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    # -- routes ------------------------------------------------------------------------------

    def version(self) -> str:
        """`GET /version`: the agent's version."""
        return self._call("GET", "/version", VersionResponse).version

    def networks(self) -> list[Network]:
        """`GET /networks`: every network of the cluster, by id."""
        return self._call("GET", "/networks", NetworksResponse).networks

    def network_create(
        self,
        *,
        name: str | None = None,
        ip_range: str | None = None,
        gateway: str | None = None,
        id: str | None = None,
        type: str | None = None,
        idempotency_key: str | None = None,
    ) -> Network:
        """`POST /networks`; with `idempotency_key`, a retried call returns the first call's network."""
        body = NetworkCreate(id=id, name=name, type=type, ip_range=ip_range, gateway=gateway)
        return self._call(
            "POST", "/networks", NetworkResponse, json=_given(body), idempotency_key=idempotency_key
        ).network

    def network_show(self, id: str) -> Network:
        """`GET /networks/{id}`."""
        return self._call("GET", _path("networks", id), NetworkResponse).network

    def network_delete(self, id: str) -> None:
        """`DELETE /networks/{id}`: refused (409) while the network has endpoints."""
        self._send("DELETE", _path("networks", id))

    def endpoints(self, *, network_id: str | None = None, hostname: str | None = None) -> list[Endpoint]:
        """`GET /endpoints`: filtered by network, by host, by both, or (neither) all of them."""
        query = {key: value for key, value in (("network_id", network_id), ("hostname", hostname)) if value}
        return self._call("GET", "/endpoints", EndpointsResponse, params=query).endpoints

    def endpoint_create(
        self,
        *,
        network_id: str,
        ns_handle_path: str | None = None,
        ipv4_address: str | None = None,
        mac_address: str | None = None,
        activate: bool | None = None,
        idempotency_key: str | None = None,
    ) -> Endpoint:
        """`POST /endpoints`: an endpoint on the agent's host, activated in `ns_handle_path` if given.

        As SAND's CLI does, a namespace is sent as `activate: true` with
        `activate_params.ns_handle_path`; `activate` defaults to whether one is given.
        """
        if activate is None:
            activate = ns_handle_path is not None
        if ns_handle_path is not None and not activate:
            raise ValueError("ns_handle_path is only used to activate the endpoint: drop it or activate")
        body = EndpointCreate(
            network_id=network_id,
            activate=activate,
            activate_params=None if ns_handle_path is None else ActivateParams(ns_handle_path=ns_handle_path),
            ipv4_address=ipv4_address,
            mac_address=mac_address,
        )
        return self._call(
            "POST", "/endpoints", EndpointResponse, json=_given(body), idempotency_key=idempotency_key
        ).endpoint

    def endpoint_delete(self, id: str) -> None:
        """`DELETE /endpoints/{id}`: from any agent; the owner's host unplugs it."""
        self._send("DELETE", _path("endpoints", id))

    # -- plumbing ----------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        kind: type[Body],
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> Body:
        response = self._send(method, path, json=json, params=params, idempotency_key=idempotency_key)
        try:
            return msgspec.json.decode(response.content, type=kind)
        except msgspec.DecodeError as exc:
            raise SandApiError(response.status_code, f"unexpected answer to {method} {path}: {exc}") from exc

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
        content = None
        if json is not None:
            content = msgspec.json.encode(json)
            headers["Content-Type"] = "application/json"
        try:
            response = self._http.request(method, path, content=content, params=params, headers=headers)
        except httpx.TimeoutException as exc:
            raise SandConnectionError(
                f"{method} {self.url}{path}: no answer within {self.timeout:g} s ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise SandConnectionError(f"cannot reach the SAND API at {self.url}: {exc}") from exc
        if not response.is_success:
            raise SandApiError(response.status_code, _error_message(response))
        return response


def _ssl_context(cert_file: str | None, key_file: str | None, ca_file: str | None) -> ssl.SSLContext:
    if (cert_file is None) != (key_file is None):
        raise ValueError("cert_file and key_file must be given together")
    try:
        context = ssl.create_default_context(cafile=ca_file)
        if cert_file is not None:
            context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load the TLS files: {exc}") from exc
    return context


def _given(body: msgspec.Struct) -> dict[str, Any]:
    """The fields of a request body that are set: SAND's Go decoder and ours treat absent as default."""
    return {name: value for name, value in msgspec.structs.asdict(body).items() if value is not None}


def _path(collection: str, id: str) -> str:
    if not id:
        raise ValueError(f"the id of the {collection[:-1]} is empty")
    return f"/{collection}/{quote(id, safe='')}"


def _error_message(response: httpx.Response) -> str:
    try:
        return _error_decoder.decode(response.content).error
    except msgspec.DecodeError:
        return response.text.strip() or response.reason_phrase or f"HTTP {response.status_code}"
