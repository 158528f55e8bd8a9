"""The peer map: network -> host -> active endpoints, with what a VTEP needs to reach them.

This is what a host's kernel projection reads to program neighbour (IP -> MAC) and
FDB (MAC -> remote host) entries. Only active endpoints are peers: a deactivated
endpoint has no device behind its MAC, so peers must stop sending to it (SAND kept
programming entries for deactivated endpoints).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import msgspec

from sand_es.events import (
    EndpointActivated,
    EndpointAdded,
    EndpointDeactivated,
    EndpointRemoved,
    Envelope,
    NetworkDeleted,
    Position,
)
from sand_es.projections.cow import CowMap, Handlers
from sand_es.projections.sharded import ShardedCowMap


class Peer(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One endpoint as a remote VTEP sees it."""

    endpoint_id: str
    network_id: str
    hostname: str
    host_ip: str
    ip: str
    mac: str


HostPeers = Mapping[str, Peer]
NetworkPeers = Mapping[str, HostPeers]


class PeerMap(msgspec.Struct, frozen=True, kw_only=True):
    """Active endpoints by network, then host, then endpoint id, as of `position`.

    `known` holds every endpoint's peer data, active or not, so that activation
    needs nothing but this view.
    """

    position: Position = Position()
    networks: Mapping[str, NetworkPeers] = {}
    known: Mapping[str, Peer] = {}

    def hosts(self, network_id: str) -> NetworkPeers:
        """Host -> active endpoints of a network (empty if it has none)."""
        return self.networks.get(network_id, {})

    def remote_peers(self, network_id: str, hostname: str) -> list[Peer]:
        """Active endpoints of a network on every host but `hostname`."""
        return [
            peer
            for host, peers in self.hosts(network_id).items()
            if host != hostname
            for peer in peers.values()
        ]


class PeerMapBuilder:
    """Folds events into the next `PeerMap`."""

    def __init__(self, view: PeerMap) -> None:
        self._known = ShardedCowMap(view.known)
        self._networks = ShardedCowMap(view.networks)
        self._touched: dict[tuple[str, str], CowMap[str, Peer]] = {}
        self._touched_networks: dict[str, CowMap[str, HostPeers]] = {}

    def handlers(self) -> Handlers:
        """The function applying each event type this view changes on."""
        return {
            EndpointAdded: self._on_added,
            EndpointActivated: self._on_activated,
            EndpointDeactivated: self._on_deactivated,
            EndpointRemoved: self._on_removed,
            NetworkDeleted: self._on_network_deleted,
        }

    def _on_added(self, envelope: Envelope) -> None:
        e = cast(EndpointAdded, envelope.data)
        self._known.set(e.endpoint_id, _peer(e))

    def _on_activated(self, envelope: Envelope) -> None:
        endpoint_id = cast(EndpointActivated, envelope.data).endpoint_id
        peer = self._known.get(endpoint_id)
        if peer is not None:
            self._host(peer.network_id, peer.hostname).set(endpoint_id, peer)

    def _on_deactivated(self, envelope: Envelope) -> None:
        self._forget_active(cast(EndpointDeactivated, envelope.data).endpoint_id)

    def _on_removed(self, envelope: Envelope) -> None:
        endpoint_id = cast(EndpointRemoved, envelope.data).endpoint_id
        self._forget_active(endpoint_id)
        self._known.discard(endpoint_id)

    def _on_network_deleted(self, envelope: Envelope) -> None:
        self._drop_network(cast(NetworkDeleted, envelope.data).network_id)

    def freeze(self, position: Position) -> PeerMap:
        """The view reached, stamped with `position`."""
        for (network_id, hostname), peers in self._touched.items():
            self._network(network_id).set(hostname, peers.freeze())
        for network_id, hosts in self._touched_networks.items():
            frozen = {host: peers for host, peers in hosts.freeze().items() if peers}
            if frozen:
                self._networks.set(network_id, frozen)
            else:
                self._networks.discard(network_id)
        self._touched.clear()
        self._touched_networks.clear()
        return PeerMap(position=position, networks=self._networks.freeze(), known=self._known.freeze())

    def peek(self, position: Position) -> PeerMap:
        """The view so far, sharing this builder's tables: valid only until the next event.

        Unlike `freeze`, it may show a host or network left with no peer.
        """
        for (network_id, hostname), peers in self._touched.items():
            self._network(network_id).set(hostname, peers.peek())
        for network_id, hosts in self._touched_networks.items():
            self._networks.set(network_id, hosts.peek())
        return PeerMap(position=position, networks=self._networks.peek(), known=self._known.peek())

    def _forget_active(self, endpoint_id: str) -> None:
        peer = self._known.get(endpoint_id)
        if peer is not None:
            self._host(peer.network_id, peer.hostname).discard(endpoint_id)

    def _drop_network(self, network_id: str) -> None:
        for key in [key for key in self._touched if key[0] == network_id]:
            del self._touched[key]
        self._touched_networks.pop(network_id, None)
        self._networks.discard(network_id)

    def _network(self, network_id: str) -> CowMap[str, HostPeers]:
        hosts = self._touched_networks.get(network_id)
        if hosts is None:
            hosts = CowMap(self._networks.get(network_id) or {})
            self._touched_networks[network_id] = hosts
        return hosts

    def _host(self, network_id: str, hostname: str) -> CowMap[str, Peer]:
        key = (network_id, hostname)
        peers = self._touched.get(key)
        if peers is None:
            peers = CowMap(self._network(network_id).get(hostname) or {})
            self._touched[key] = peers
        return peers


def _peer(e: EndpointAdded) -> Peer:
    return Peer(
        endpoint_id=e.endpoint_id,
        network_id=e.network_id,
        hostname=e.hostname,
        host_ip=e.host_ip,
        ip=e.target_veth_ip.split("/", 1)[0],
        mac=e.target_veth_mac,
    )
