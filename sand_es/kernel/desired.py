"""What one host's kernel should hold, derived purely from the views.

For every network with a local endpoint: its overlay namespace, bridge (with the
gateway address) and VXLAN device; a veth pair for every active local endpoint; and
a neighbour plus an FDB entry for every active endpoint of that network on another
host. Inactive endpoints keep their address but get no device, and peers drop them.
"""

from __future__ import annotations

from collections import defaultdict

from sand_es.kernel.model import (
    BRIDGE,
    Address,
    Bridge,
    Fdb,
    HostConfig,
    HostState,
    Neigh,
    Netns,
    Veth,
    Vxlan,
)
from sand_es.projections import Endpoint, Network, Snapshot


def desired(snapshot: Snapshot, config: HostConfig) -> HostState:
    """The kernel state `config`'s host should have for `snapshot`."""
    local: dict[str, list[Endpoint]] = defaultdict(list)
    for endpoint in snapshot.endpoints.select(hostname=config.hostname):
        local[endpoint.network_id].append(endpoint)
    namespaces: set[Netns] = set()
    bridges: set[Bridge] = set()
    vxlans: set[Vxlan] = set()
    veths: set[Veth] = set()
    addresses: set[Address] = set()
    neighbours: set[Neigh] = set()
    fdb: set[Fdb] = set()
    for network_id in sorted(local):
        network = snapshot.networks.get(network_id)
        if network is None:  # endpoints of a deleted network: only a hand-made log has them
            continue
        netns = config.overlay_netns(network_id)
        namespaces.add(Netns(netns))
        bridges.add(Bridge(netns=netns, mtu=network.mtu))
        addresses.add(Address(netns=netns, dev=BRIDGE, cidr=network.gateway))
        vxlans.add(_vxlan(network, netns, config))
        for endpoint in local[network_id]:
            if endpoint.active:
                veth = _veth(endpoint, netns)
                veths.add(veth)
                ip = endpoint.target_veth_ip
                addresses.add(Address(netns=veth.target_netns, dev=veth.target_name, cidr=ip))
        entries = _remote_entries(snapshot, network_id, netns, config.hostname)
        neighbours.update(n for n, _ in entries)
        fdb.update(f for _, f in entries)
    return HostState(
        namespaces=frozenset(namespaces),
        bridges=frozenset(bridges),
        vxlans=frozenset(vxlans),
        veths=frozenset(veths),
        addresses=frozenset(addresses),
        neighbours=frozenset(neighbours),
        fdb=frozenset(fdb),
    )


def _vxlan(network: Network, netns: str, config: HostConfig) -> Vxlan:
    return Vxlan(
        netns=netns, vni=network.vxlan_vni, local=config.host_ip, port=config.vxlan_port, mtu=network.mtu
    )


def _veth(endpoint: Endpoint, netns: str) -> Veth:
    return Veth(
        endpoint_id=endpoint.endpoint_id,
        overlay_netns=netns,
        overlay_name=endpoint.overlay_veth_name,
        overlay_mac=endpoint.overlay_veth_mac,
        target_netns=endpoint.target_netns_path,
        target_name=endpoint.target_veth_name,
        target_mac=endpoint.target_veth_mac,
        mtu=endpoint.mtu,
    )


def _remote_entries(
    snapshot: Snapshot, network_id: str, netns: str, hostname: str
) -> list[tuple[Neigh, Fdb]]:
    """A neighbour and an FDB entry per active remote endpoint that names its host's IP.

    One MAC can only point at one host: should two remote endpoints share one (only
    possible in an imported log), the lowest endpoint id wins, on every host alike.
    """
    entries: list[tuple[Neigh, Fdb]] = []
    macs: set[str] = set()
    peers = sorted(snapshot.peers.remote_peers(network_id, hostname), key=lambda p: p.endpoint_id)
    for peer in peers:
        if not peer.host_ip or peer.mac in macs:
            continue
        macs.add(peer.mac)
        entries.append(
            (Neigh(netns=netns, ip=peer.ip, mac=peer.mac), Fdb(netns=netns, mac=peer.mac, dst=peer.host_ip))
        )
    return entries
