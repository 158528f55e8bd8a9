"""The endpoint catalog: every endpoint, wired or not, with its activation state."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime

import msgspec

from sand_es.events import (
    EndpointActivated,
    EndpointAdded,
    EndpointDeactivated,
    EndpointRemoved,
    Envelope,
    Position,
)
from sand_es.projections.cow import CowMap


class Endpoint(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An endpoint as it stands now.

    `active` means it should be wired into `target_netns_path`; an inactive endpoint
    keeps its address and MAC (SAND's "passive" endpoint), and `inactive_reason`
    says why it was last deactivated.
    """

    endpoint_id: str
    network_id: str
    hostname: str
    host_ip: str
    api_hostname: str
    target_veth_ip: str
    target_veth_mac: str
    target_veth_name: str
    overlay_veth_name: str
    overlay_veth_mac: str
    mtu: int
    created_at: datetime
    active: bool = False
    target_netns_path: str = ""
    inactive_reason: str = ""


class EndpointCatalog(msgspec.Struct, frozen=True, kw_only=True):
    """Endpoints by id, as of `position`."""

    position: Position = Position()
    endpoints: Mapping[str, Endpoint] = {}

    def get(self, endpoint_id: str) -> Endpoint | None:
        """The endpoint with this id, or None."""
        return self.endpoints.get(endpoint_id)

    def select(self, *, network_id: str | None = None, hostname: str | None = None) -> Iterator[Endpoint]:
        """Endpoints matching every filter given (none given: all of them)."""
        for endpoint in self.endpoints.values():
            if network_id is not None and endpoint.network_id != network_id:
                continue
            if hostname is not None and endpoint.hostname != hostname:
                continue
            yield endpoint


class EndpointCatalogBuilder:
    """Folds events into the next `EndpointCatalog`."""

    def __init__(self, view: EndpointCatalog) -> None:
        self._endpoints = CowMap(view.endpoints)

    def apply(self, envelope: Envelope) -> None:
        """Apply one event."""
        match envelope.data:
            case EndpointAdded() as e:
                self._endpoints.set(e.endpoint_id, _endpoint(e, envelope.at))
            case EndpointActivated(endpoint_id=eid, target_netns_path=path):
                self._update(eid, active=True, target_netns_path=path, inactive_reason="")
            case EndpointDeactivated(endpoint_id=eid, reason=reason):
                self._update(eid, active=False, target_netns_path="", inactive_reason=reason)
            case EndpointRemoved(endpoint_id=eid):
                self._endpoints.discard(eid)
            case _:
                pass

    def freeze(self, position: Position) -> EndpointCatalog:
        """The view reached, stamped with `position`."""
        return EndpointCatalog(position=position, endpoints=self._endpoints.freeze())

    def _update(self, endpoint_id: str, **changes: object) -> None:
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is not None:
            self._endpoints.set(endpoint_id, msgspec.structs.replace(endpoint, **changes))


def _endpoint(e: EndpointAdded, created_at: datetime) -> Endpoint:
    return Endpoint(
        endpoint_id=e.endpoint_id,
        network_id=e.network_id,
        hostname=e.hostname,
        host_ip=e.host_ip,
        api_hostname=e.api_hostname,
        target_veth_ip=e.target_veth_ip,
        target_veth_mac=e.target_veth_mac,
        target_veth_name=e.target_veth_name,
        overlay_veth_name=e.overlay_veth_name,
        overlay_veth_mac=e.overlay_veth_mac,
        mtu=e.mtu,
        created_at=created_at,
    )
