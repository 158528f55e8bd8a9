"""Ids and hand-made events for unit tests; every field not given takes a plausible value."""

from __future__ import annotations

import ipaddress

from sand_es.commands.naming import overlay_veth_mac, overlay_veth_name, target_veth_mac, target_veth_name
from sand_es.events import (
    EndpointActivated,
    EndpointAdded,
    EndpointDeactivated,
    EndpointRemoved,
    NetworkCreated,
    NetworkDeleted,
)

NET_A = "0b8c5a4e-2f61-4d4b-9c0e-7a1d3e5f6a01"
NET_B = "1c9d6b5f-3a72-4e5c-8d1f-8b2e4f607b12"
NET_C = "2daf7c60-4b83-4f6d-9e20-9c3f50718c23"

EP_1 = "a1000000-0000-4000-8000-000000000001"
EP_2 = "a2000000-0000-4000-8000-000000000002"
EP_3 = "a3000000-0000-4000-8000-000000000003"
EP_4 = "a4000000-0000-4000-8000-000000000004"

HOST_A = "host-a"
HOST_B = "host-b"
HOST_C = "host-c"

HOST_IPS = {HOST_A: "192.0.2.10", HOST_B: "192.0.2.11", HOST_C: "192.0.2.12"}

NETNS = "/var/run/docker/netns/1234abcd"


def ident(n: int) -> str:
    """The n-th made-up UUID; distinct in the first hex digits, so device names never clash."""
    return f"{n:08x}-0000-4000-8000-{n:012x}"


def network_created(
    network_id: str = NET_A,
    *,
    ip_range: str = "10.0.0.0/24",
    gateway: str | None = None,
    vni: int = 1,
    mtu: int = 1450,
) -> NetworkCreated:
    """A network as `CreateNetwork` would define it (gateway: first host address by default)."""
    network = ipaddress.IPv4Network(ip_range)
    return NetworkCreated(
        network_id=network_id,
        name=f"net-sc-{network_id}",
        ip_range=ip_range,
        gateway=gateway or f"{network[1]}/{network.prefixlen}",
        vxlan_vni=vni,
        mtu=mtu,
        ns_handle_path=f"/var/run/netns/sc-ns-{network_id}",
    )


def network_deleted(network_id: str = NET_A) -> NetworkDeleted:
    """A network removed."""
    return NetworkDeleted(network_id=network_id)


def endpoint_added(
    endpoint_id: str,
    *,
    network_id: str = NET_A,
    ip: str = "10.0.0.2/24",
    hostname: str = HOST_A,
    mac: str | None = None,
) -> EndpointAdded:
    """An endpoint as `AddEndpoint` would add it, at `ip` (with its prefix)."""
    return EndpointAdded(
        endpoint_id=endpoint_id,
        network_id=network_id,
        hostname=hostname,
        host_ip=HOST_IPS.get(hostname, ""),
        target_veth_ip=ip,
        target_veth_mac=mac or target_veth_mac(ipaddress.IPv4Interface(ip).ip),
        target_veth_name=target_veth_name(endpoint_id),
        overlay_veth_name=overlay_veth_name(endpoint_id),
        overlay_veth_mac=overlay_veth_mac(endpoint_id),
    )


def activated(endpoint_id: str, *, network_id: str = NET_A, path: str = NETNS) -> EndpointActivated:
    """An endpoint wired into `path`."""
    return EndpointActivated(endpoint_id=endpoint_id, network_id=network_id, target_netns_path=path)


def deactivated(endpoint_id: str, *, network_id: str = NET_A, reason: str = "") -> EndpointDeactivated:
    """An endpoint unplugged."""
    return EndpointDeactivated(endpoint_id=endpoint_id, network_id=network_id, reason=reason)


def removed(endpoint_id: str, *, network_id: str = NET_A, ip: str = "10.0.0.2/24") -> EndpointRemoved:
    """An endpoint removed, naming the address it frees."""
    return EndpointRemoved(endpoint_id=endpoint_id, network_id=network_id, target_veth_ip=ip)
