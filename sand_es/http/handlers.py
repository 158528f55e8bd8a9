"""The route handlers: read the request, run one command or read the views, answer.

Handlers get the service and the settings from `request.app.state` (filled by
`create_app`); they hold no state of their own.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import TypeVar

import msgspec
import structlog
from starlette.requests import Request
from starlette.responses import Response

from sand_es import __version__
from sand_es.commands import AddEndpoint, Command, CreateNetwork, DeleteNetwork, RemoveEndpoint
from sand_es.config import AgentSettings
from sand_es.errors import Conflicting, Invalid, NotFound
from sand_es.events import EndpointAdded, NetworkCreated
from sand_es.http import history, schemas, views
from sand_es.http.errors import BadRequest, NotReady
from sand_es.http.responses import JSON
from sand_es.kernel.reconciler import Reconciler
from sand_es.nspath import check_netns_path
from sand_es.projections import Endpoint, Network, Snapshot
from sand_es.service import Outcome, Service

Body = TypeVar("Body", bound=msgspec.Struct)
EventT = TypeVar("EventT", NetworkCreated, EndpointAdded)

log = structlog.get_logger(__name__)

_IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


async def version(request: Request) -> Response:
    """`GET /version`"""
    return JSON(schemas.VersionResponse(version=__version__))


async def health(request: Request) -> Response:
    """`GET /health`: 200 once the agent has caught up with the log (writes accepted), else 503."""
    views = _service(request).views
    if not views.caught_up.is_set():
        raise NotReady("the agent is still catching up with the log")
    kernel = _kernel(request)
    return JSON(
        schemas.HealthResponse(
            status="ready",
            seq=views.position.seq,
            revision=views.position.rev,
            kernel=None if kernel is None else _kernel_health(kernel),
        )
    )


async def list_networks(request: Request) -> Response:
    """`GET /networks`: every network, by id (`?revision=N`: as of etcd revision N).

    Views are immutable, so the encoded body is kept until the catalog changes: the
    list is read far more often than networks are created (1 000 networks: ~1 ms of
    building and encoding saved per request).
    """
    revision = history.revision_of(request.query_params)
    if revision is not None:
        past = (await _past(request).snapshot(revision)).networks.networks
        settings = _settings(request)
        return JSON(
            schemas.NetworksResponse(networks=[_network(settings, past[key]) for key in sorted(past)])
        )
    networks = _snapshot(request).networks.networks
    cached: tuple[object, bytes] | None = getattr(request.app.state, "networks_body", None)
    if cached is None or cached[0] is not networks:
        settings = _settings(request)
        body = schemas.NetworksResponse(
            networks=[_network(settings, networks[key]) for key in sorted(networks)],
        )
        cached = (networks, msgspec.json.encode(body))
        request.app.state.networks_body = cached
    return Response(cached[1], media_type="application/json")


async def show_network(request: Request) -> Response:
    """`GET /networks/{id}` (`?revision=N`: as of etcd revision N)."""
    revision = history.revision_of(request.query_params)
    snapshot = _snapshot(request) if revision is None else await _past(request).snapshot(revision)
    network = snapshot.networks.get(_path_id(request))
    if network is None:
        raise NotFound(
            "network not found" if revision is None else f"network not found at revision {revision}"
        )
    return JSON(schemas.NetworkResponse(network=_network(_settings(request), network)))


async def create_network(request: Request) -> Response:
    """`POST /networks`"""
    body = await _body(request, schemas.NetworkCreate, empty_ok=True)
    command = CreateNetwork(
        network_id=body.id or None,
        name=body.name or None,
        type=body.type or "overlay",
        ip_range=body.ip_range or None,
        gateway=body.gateway or None,
        mtu=body.mtu,
    )
    outcome = await _execute(request, command)
    created = _first_event(outcome, NetworkCreated)
    network = outcome.snapshot.networks.get(created.network_id)
    if network is None:  # a replayed command whose network was deleted since
        raise NotFound(f"network {created.network_id} was created by this command, then deleted")
    return JSON(schemas.NetworkResponse(network=_network(_settings(request), network)), status_code=201)


async def delete_network(request: Request) -> Response:
    """`DELETE /networks/{id}`: refused while the network has endpoints."""
    await _execute(request, DeleteNetwork(network_id=_path_id(request)))
    return Response(status_code=204)


async def list_endpoints(request: Request) -> Response:
    """`GET /endpoints?network_id=&hostname=`: either filter, both, or none (`revision=N`: as of then)."""
    query = request.query_params
    network_id = query.get("network_id")
    revision = history.revision_of(query)
    snapshot = _snapshot(request) if revision is None else await _past(request).snapshot(revision)
    selected = snapshot.endpoints.select(
        network_id=network_id.lower() if network_id else None, hostname=query.get("hostname") or None
    )
    ordered = sorted(selected, key=lambda e: e.endpoint_id)
    return JSON(schemas.EndpointsResponse(endpoints=[views.endpoint(e) for e in ordered]))


async def list_events(request: Request) -> Response:
    """`GET /events`: the log's events, filtered, paged by revision (see `sand_es.http.history`)."""
    return JSON(await _past(request).events(request.query_params))


async def create_endpoint(request: Request) -> Response:
    """`POST /endpoints`: an endpoint owned by this agent's host."""
    body = await _body(request, schemas.EndpointCreate)
    settings = _settings(request)
    if not body.network_id:
        raise Invalid("network_id is required")
    path = None
    if body.wants_activation:
        roots = (settings.netns_path, settings.docker_netns_path)
        path = check_netns_path(body.target_netns_path, roots=roots)
    command = AddEndpoint(
        network_id=body.network_id.lower(),
        hostname=settings.hostname,
        host_ip=settings.host_ip,
        api_hostname=settings.api_hostname,
        ipv4_address=body.ipv4_address or None,
        mac_address=body.mac_address or None,
        activate=body.wants_activation,
        target_netns_path=path,
    )
    outcome = await _execute(request, command)
    added = _first_event(outcome, EndpointAdded)
    endpoint = outcome.snapshot.endpoints.get(added.endpoint_id)
    if endpoint is None:
        raise NotFound(f"endpoint {added.endpoint_id} was created by this command, then deleted")
    if endpoint.active:
        endpoint = await _wired(request, outcome, endpoint)
    return JSON(schemas.EndpointResponse(endpoint=views.endpoint(endpoint)), status_code=201)


async def _wired(request: Request, outcome: Outcome, endpoint: Endpoint) -> Endpoint:
    """The endpoint once this host's kernel projection has wired it (or marked it inactive).

    The caller's next step is to use the interface, so the answer waits for it, as
    SAND's did. Should the kernel be slow, the endpoint is answered as recorded: it is
    in the log and will be wired.
    """
    if not await _kernel_caught_up(request, outcome, endpoint.endpoint_id):
        return endpoint
    # A pass that found the target namespace gone has marked the endpoint inactive.
    return _service(request).views.current.endpoints.get(endpoint.endpoint_id) or endpoint


async def delete_endpoint(request: Request) -> Response:
    """`DELETE /endpoints/{id}`: from any agent; the owner's host does the kernel work.

    On the owner's agent the answer waits for the devices to be gone, as it waits for
    them to exist on creation; another agent answers once the removal is recorded.
    """
    endpoint_id = _path_id(request)
    before = _service(request).views.current.endpoints.get(endpoint_id)
    outcome = await _execute(request, RemoveEndpoint(endpoint_id=endpoint_id))
    if before is not None and before.active and before.hostname == _settings(request).hostname:
        await _kernel_caught_up(request, outcome, endpoint_id)
    return Response(status_code=204)


def _path_id(request: Request) -> str:
    # Ids are stored in canonical lower case; SAND clients may send them as they spelt them.
    return str(request.path_params["id"]).lower()


async def _kernel_caught_up(request: Request, outcome: Outcome, endpoint_id: str) -> bool:
    """Wait (bounded by `KERNEL_WAIT_TIMEOUT`) until this host's kernel reflects `outcome`."""
    kernel = _kernel(request)
    if kernel is None:
        return False
    try:
        async with asyncio.timeout(_settings(request).kernel_wait_timeout):
            await kernel.wait_applied(outcome.position)
    except TimeoutError:
        log.warning("the kernel is slow to follow; answering anyway", endpoint_id=endpoint_id)
        return False
    return True


def _kernel_health(kernel: Reconciler) -> schemas.KernelHealth:
    return msgspec.convert(kernel.stats, schemas.KernelHealth, from_attributes=True)


def _kernel(request: Request) -> Reconciler | None:
    kernel: Reconciler | None = request.app.state.kernel
    return kernel


def _settings(request: Request) -> AgentSettings:
    settings: AgentSettings = request.app.state.settings
    return settings


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _snapshot(request: Request) -> Snapshot:
    return _service(request).views.current


def _past(request: Request) -> history.Past:
    past: history.Past | None = request.app.state.past
    if past is None:  # an app built without the log (create_app's `log`)
        raise NotReady("this agent was started without access to the log's history")
    return past


def _network(settings: AgentSettings, network: Network) -> schemas.Network:
    return views.network(network, netns_path=settings.netns_path, netns_prefix=settings.netns_prefix)


async def _execute(request: Request, command: Command) -> Outcome:
    service = _service(request)
    if not service.views.caught_up.is_set():
        raise NotReady("the agent is still catching up with the log; retry shortly")
    outcome = await service.execute(command, command_id=_idempotency_key(request))
    request.state.command_id = outcome.command_id
    request.state.revision = outcome.position.rev
    return outcome


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.match(key):
        raise BadRequest("invalid Idempotency-Key: 1 to 128 characters among A-Z a-z 0-9 . _ : -")
    # One key per route: reusing a key on another route is another request.
    route = f"{request.method}:{request.url.path}"
    return f"http:{hashlib.sha256(route.encode()).hexdigest()[:16]}:{key}"


def _first_event(outcome: Outcome, kind: type[EventT]) -> EventT:
    """The event a creation command recorded (its id names what was created)."""
    event = outcome.records[0].envelope.data if outcome.records else None
    if not isinstance(event, kind):  # only a hand-made command id can lead here
        raise Conflicting("this Idempotency-Key belongs to another request")
    return event


async def _body(request: Request, kind: type[Body], *, empty_ok: bool = False) -> Body:
    raw = await request.body()
    if not raw.strip() and empty_ok:
        raw = b"{}"
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"invalid JSON: {exc}") from None
