"""The network catalog: every network that exists, as SAND would show it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import cast

import msgspec

from sand_es.events import Envelope, NetworkCreated, NetworkDeleted, Position
from sand_es.projections.cow import Handlers
from sand_es.projections.sharded import ShardedCowMap


class Network(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A network as it stands now."""

    network_id: str
    name: str
    type: str
    ip_range: str
    gateway: str
    vxlan_vni: int
    mtu: int
    ns_handle_path: str
    created_at: datetime
    created_by: str


class NetworkCatalog(msgspec.Struct, frozen=True, kw_only=True):
    """Networks by id, as of `position`."""

    position: Position = Position()
    networks: Mapping[str, Network] = {}

    def get(self, network_id: str) -> Network | None:
        """The network with this id, or None."""
        return self.networks.get(network_id)


class NetworkCatalogBuilder:
    """Folds events into the next `NetworkCatalog` (see `sand_es.projections.cow`)."""

    def __init__(self, view: NetworkCatalog) -> None:
        self._networks = ShardedCowMap(view.networks)

    def handlers(self) -> Handlers:
        """The function applying each event type this view changes on."""
        return {NetworkCreated: self._on_created, NetworkDeleted: self._on_deleted}

    def _on_created(self, envelope: Envelope) -> None:
        e = cast(NetworkCreated, envelope.data)
        self._networks.set(e.network_id, _network(e, envelope))

    def _on_deleted(self, envelope: Envelope) -> None:
        self._networks.discard(cast(NetworkDeleted, envelope.data).network_id)

    def freeze(self, position: Position) -> NetworkCatalog:
        """The view reached, stamped with `position`."""
        return NetworkCatalog(position=position, networks=self._networks.freeze())

    def peek(self, position: Position) -> NetworkCatalog:
        """The view so far, sharing this builder's tables: valid only until the next event."""
        return NetworkCatalog(position=position, networks=self._networks.peek())


def _network(e: NetworkCreated, envelope: Envelope) -> Network:
    return Network(
        network_id=e.network_id,
        name=e.name,
        type=e.type,
        ip_range=e.ip_range,
        gateway=e.gateway,
        vxlan_vni=e.vxlan_vni,
        mtu=e.mtu,
        ns_handle_path=e.ns_handle_path,
        created_at=envelope.at,
        created_by=envelope.actor,
    )
