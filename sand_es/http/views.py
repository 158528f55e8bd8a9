"""From projections to API bodies."""

from __future__ import annotations

from sand_es.http import schemas
from sand_es.projections import Endpoint, Network


def network(network: Network, *, netns_path: str, netns_prefix: str) -> schemas.Network:
    """A network as this agent shows it: `ns_handle_path` is where its overlay lives here."""
    return schemas.Network(
        id=network.network_id,
        created_at=network.created_at,
        name=network.name,
        type=network.type,
        ns_handle_path=f"{netns_path.rstrip('/')}/{netns_prefix}{network.network_id}",
        vxlan_vni=network.vxlan_vni,
        ip_range=network.ip_range,
        gateway=network.gateway,
        mtu=network.mtu,
    )


def endpoint(endpoint: Endpoint) -> schemas.Endpoint:
    """An endpoint with SAND's field names."""
    return schemas.Endpoint(
        id=endpoint.endpoint_id,
        network_id=endpoint.network_id,
        hostname=endpoint.hostname,
        host_ip=endpoint.host_ip,
        api_hostname=endpoint.api_hostname,
        created_at=endpoint.created_at,
        target_netns_path=endpoint.target_netns_path,
        overlay_veth_name=endpoint.overlay_veth_name,
        overlay_veth_mac=endpoint.overlay_veth_mac,
        target_veth_name=endpoint.target_veth_name,
        target_veth_mac=endpoint.target_veth_mac,
        target_veth_ip=endpoint.target_veth_ip,
        active=endpoint.active,
    )
