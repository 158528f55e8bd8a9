"""The endpoint catalog: every endpoint, wired or not, with its activation state."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import cast

import msgspec

from sand_es.events import (
    EndpointActivated,
    EndpointAdded,
    EndpointDeactivated,
    EndpointRemoved,
    Envelope,
    Position,
)
from sand_es.projections.cow import Handlers
from sand_es.projections.sharded import ShardedCowMap


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
    """Endpoints by id, as of `position`, with the indexes deciders check uniqueness in.

    `macs` maps "<network_id>/<mac>" and `devices` "<hostname>/<target veth name>" to
    an endpoint id (string keys keep the views encodable as JSON); `counts` gives each
    network's number of endpoints. They keep every decision O(1) however many
    endpoints exist.
    """

    position: Position = Position()
    endpoints: Mapping[str, Endpoint] = {}
    macs: Mapping[str, str] = {}
    devices: Mapping[str, str] = {}
    counts: Mapping[str, int] = {}

    def get(self, endpoint_id: str) -> Endpoint | None:
        """The endpoint with this id, or None."""
        return self.endpoints.get(endpoint_id)

    def holder_of_mac(self, network_id: str, mac: str) -> str | None:
        """The endpoint of a network using this MAC, if any."""
        return self.macs.get(f"{network_id}/{mac}")

    def holder_of_device(self, hostname: str, device: str) -> str | None:
        """The endpoint whose target device has this name on this host, if any."""
        return self.devices.get(f"{hostname}/{device}")

    def count(self, network_id: str) -> int:
        """How many endpoints a network has, on every host, active or not."""
        return self.counts.get(network_id, 0)

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
        self._endpoints = ShardedCowMap(view.endpoints)
        self._macs = ShardedCowMap(view.macs)
        self._devices = ShardedCowMap(view.devices)
        self._counts = ShardedCowMap(view.counts)

    def handlers(self) -> Handlers:
        """The function applying each event type this view changes on."""
        return {
            EndpointAdded: self._on_added,
            EndpointActivated: self._on_activated,
            EndpointDeactivated: self._on_deactivated,
            EndpointRemoved: self._on_removed,
        }

    def _on_added(self, envelope: Envelope) -> None:
        e = cast(EndpointAdded, envelope.data)
        self._remove(e.endpoint_id)  # a re-added id (hand-made log) replaces the old one
        self._add(_endpoint(e, envelope.at))

    def _on_activated(self, envelope: Envelope) -> None:
        e = cast(EndpointActivated, envelope.data)
        self._update(e.endpoint_id, active=True, target_netns_path=e.target_netns_path, inactive_reason="")

    def _on_deactivated(self, envelope: Envelope) -> None:
        e = cast(EndpointDeactivated, envelope.data)
        self._update(e.endpoint_id, active=False, target_netns_path="", inactive_reason=e.reason)

    def _on_removed(self, envelope: Envelope) -> None:
        self._remove(cast(EndpointRemoved, envelope.data).endpoint_id)

    def freeze(self, position: Position) -> EndpointCatalog:
        """The view reached, stamped with `position`."""
        return EndpointCatalog(
            position=position,
            endpoints=self._endpoints.freeze(),
            macs=self._macs.freeze(),
            devices=self._devices.freeze(),
            counts=self._counts.freeze(),
        )

    def peek(self, position: Position) -> EndpointCatalog:
        """The view so far, sharing this builder's tables: valid only until the next event."""
        return EndpointCatalog(
            position=position,
            endpoints=self._endpoints.peek(),
            macs=self._macs.peek(),
            devices=self._devices.peek(),
            counts=self._counts.peek(),
        )

    def _add(self, endpoint: Endpoint) -> None:
        self._endpoints.set(endpoint.endpoint_id, endpoint)
        self._macs.set(f"{endpoint.network_id}/{endpoint.target_veth_mac}", endpoint.endpoint_id)
        self._devices.set(f"{endpoint.hostname}/{endpoint.target_veth_name}", endpoint.endpoint_id)
        self._counts.set(endpoint.network_id, (self._counts.get(endpoint.network_id) or 0) + 1)

    def _remove(self, endpoint_id: str) -> None:
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is None:
            return
        self._endpoints.discard(endpoint_id)
        _discard_if(self._macs, f"{endpoint.network_id}/{endpoint.target_veth_mac}", endpoint_id)
        _discard_if(self._devices, f"{endpoint.hostname}/{endpoint.target_veth_name}", endpoint_id)
        left = (self._counts.get(endpoint.network_id) or 0) - 1
        if left > 0:
            self._counts.set(endpoint.network_id, left)
        else:
            self._counts.discard(endpoint.network_id)

    def _update(self, endpoint_id: str, **changes: object) -> None:
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is not None:
            self._endpoints.set(endpoint_id, msgspec.structs.replace(endpoint, **changes))


def _discard_if(index: ShardedCowMap[str, str], key: str, endpoint_id: str) -> None:
    if index.get(key) == endpoint_id:
        index.discard(key)


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
