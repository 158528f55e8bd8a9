"""The deciders: `decide(snapshot, command) -> events`, pure.

A decider reads the snapshot, checks the command against it and returns the events
that record its effect, or raises a `Rejected` error with a message for the caller.
It performs no I/O and reads no clock; a fresh id for whatever it creates is passed
in. An empty list means the command asks for what already is (nothing to append).
"""

from __future__ import annotations

import ipaddress

from sand_es.commands import parsing
from sand_es.commands.naming import (
    overlay_veth_mac,
    overlay_veth_name,
    target_veth_mac,
    target_veth_name,
)
from sand_es.commands.types import (
    DEFAULT_POLICY,
    ActivateEndpoint,
    AddEndpoint,
    Command,
    CreateNetwork,
    DeactivateEndpoint,
    DeleteNetwork,
    Policy,
    RemoveEndpoint,
)
from sand_es.errors import Conflicting, Invalid, NotFound
from sand_es.events import (
    EndpointActivated,
    EndpointAdded,
    EndpointDeactivated,
    EndpointRemoved,
    Event,
    NetworkCreated,
    NetworkDeleted,
)
from sand_es.projections import Endpoint, Network, Pool, Snapshot

DEFAULT_RANGE = "10.0.0.0/24"
MAX_NAME = 255
OVERLAY = "overlay"


def decide(
    snapshot: Snapshot, command: Command, *, new_id: str, policy: Policy = DEFAULT_POLICY
) -> list[Event]:
    """The events that carry out `command` on `snapshot`; raises `Rejected` if it cannot."""
    match command:
        case CreateNetwork():
            return create_network(snapshot, command, new_id=new_id, policy=policy)
        case DeleteNetwork():
            return delete_network(snapshot, command)
        case AddEndpoint():
            return add_endpoint(snapshot, command, new_id=new_id)
        case RemoveEndpoint():
            return remove_endpoint(snapshot, command)
        case ActivateEndpoint():
            return activate_endpoint(snapshot, command)
        case DeactivateEndpoint():
            return deactivate_endpoint(snapshot, command)


def create_network(snapshot: Snapshot, command: CreateNetwork, *, new_id: str, policy: Policy) -> list[Event]:
    """Define a network with the lowest free VNI."""
    network_id = parsing.network_id(command.network_id or new_id)
    if snapshot.networks.get(network_id) is not None:
        raise Conflicting(f"network {network_id} already exists")
    if command.type != OVERLAY:
        raise Invalid(f"invalid network type {command.type!r}: only 'overlay' is supported")
    if command.name is not None and len(command.name) > MAX_NAME:
        raise Invalid(f"invalid name: {len(command.name)} characters, at most {MAX_NAME}")
    network = _range_of(command)
    gateway = parsing.gateway(command.gateway, network) if command.gateway else network[1]
    mtu = policy.default_mtu if command.mtu is None else command.mtu
    if not 576 <= mtu <= 9000:
        raise Invalid(f"invalid mtu {mtu}: expected a value between 576 and 9000")
    vni = snapshot.vnis.lowest_free(policy.max_vni)
    if vni is None:
        raise Conflicting(f"no VXLAN identifier left: all {policy.max_vni} are in use")
    return [
        NetworkCreated(
            network_id=network_id,
            name=command.name or f"net-sc-{network_id}",
            type=OVERLAY,
            ip_range=str(network),
            gateway=f"{gateway}/{network.prefixlen}",
            vxlan_vni=vni,
            mtu=mtu,
            ns_handle_path=f"{policy.netns_path.rstrip('/')}/{policy.netns_prefix}{network_id}",
        )
    ]


def delete_network(snapshot: Snapshot, command: DeleteNetwork) -> list[Event]:
    """Remove a network; refused while any endpoint, on any host, is still in it."""
    network = _network(snapshot, command.network_id)
    remaining = snapshot.endpoints.count(network.network_id)
    if remaining:
        raise Conflicting(
            f"network {network.network_id} ({network.name}) still has {remaining} endpoint(s); "
            "delete them first"
        )
    return [NetworkDeleted(network_id=network.network_id)]


def add_endpoint(snapshot: Snapshot, command: AddEndpoint, *, new_id: str) -> list[Event]:
    """Give a new endpoint an address (and a MAC) in a network, optionally activating it."""
    network = _network(snapshot, command.network_id)
    pool = _pool(snapshot, network)
    target_path = parsing.netns_path(command.target_netns_path) if command.activate else None
    if not command.hostname:
        raise Invalid("the endpoint's hostname is empty")
    address = _address(pool, network, command.ipv4_address)
    mac = parsing.mac_address(command.mac_address) if command.mac_address else target_veth_mac(address)
    _check_mac_free(snapshot, network.network_id, mac)
    added = EndpointAdded(
        endpoint_id=new_id,
        network_id=network.network_id,
        hostname=command.hostname,
        host_ip=parsing.host_ip(command.host_ip),
        api_hostname=command.api_hostname,
        target_veth_ip=f"{address}/{pool.prefix}",
        target_veth_mac=mac,
        target_veth_name=target_veth_name(new_id),
        overlay_veth_name=overlay_veth_name(new_id),
        overlay_veth_mac=overlay_veth_mac(new_id),
        mtu=network.mtu,
    )
    _check_names_free(snapshot, added)
    if target_path is None:
        return [added]
    activated = EndpointActivated(
        endpoint_id=new_id, network_id=network.network_id, target_netns_path=target_path
    )
    return [added, activated]


def remove_endpoint(snapshot: Snapshot, command: RemoveEndpoint) -> list[Event]:
    """Remove an endpoint and free its address."""
    endpoint = _endpoint(snapshot, command.endpoint_id)
    return [
        EndpointRemoved(
            endpoint_id=endpoint.endpoint_id,
            network_id=endpoint.network_id,
            target_veth_ip=endpoint.target_veth_ip,
        )
    ]


def activate_endpoint(snapshot: Snapshot, command: ActivateEndpoint) -> list[Event]:
    """Wire an endpoint into a namespace; a no-op if it already is wired there."""
    endpoint = _endpoint(snapshot, command.endpoint_id)
    path = parsing.netns_path(command.target_netns_path)
    if endpoint.active and endpoint.target_netns_path == path:
        return []
    if endpoint.active:
        raise Conflicting(
            f"endpoint {endpoint.endpoint_id} is already active in {endpoint.target_netns_path}; "
            "deactivate it first"
        )
    return [
        EndpointActivated(
            endpoint_id=endpoint.endpoint_id, network_id=endpoint.network_id, target_netns_path=path
        )
    ]


def deactivate_endpoint(snapshot: Snapshot, command: DeactivateEndpoint) -> list[Event]:
    """Unplug an endpoint; a no-op if it is not active (as in SAND since v0.5.10)."""
    endpoint = _endpoint(snapshot, command.endpoint_id)
    if not endpoint.active:
        return []
    return [
        EndpointDeactivated(
            endpoint_id=endpoint.endpoint_id, network_id=endpoint.network_id, reason=command.reason
        )
    ]


def _range_of(command: CreateNetwork) -> ipaddress.IPv4Network:
    if command.ip_range:
        return parsing.ip_range(command.ip_range)
    if command.gateway:
        return parsing.gateway_network(command.gateway)
    return parsing.ip_range(DEFAULT_RANGE)


def _network(snapshot: Snapshot, network_id: str) -> Network:
    network = snapshot.networks.get(network_id)
    if network is None:
        raise NotFound(f"network {network_id} not found")
    return network


def _endpoint(snapshot: Snapshot, endpoint_id: str) -> Endpoint:
    endpoint = snapshot.endpoints.get(endpoint_id)
    if endpoint is None:
        raise NotFound(f"endpoint {endpoint_id} not found")
    return endpoint


def _pool(snapshot: Snapshot, network: Network) -> Pool:
    pool = snapshot.addresses.get(network.network_id)
    if pool is None:  # only a hand-edited log can get here
        raise Conflicting(f"network {network.network_id} has no address pool")
    return pool


def _address(pool: Pool, network: Network, requested: str | None) -> ipaddress.IPv4Address:
    ip_range = ipaddress.IPv4Network(network.ip_range)
    if requested is None or requested == "":
        free = pool.next_free()
        if free is None:
            raise Conflicting(
                f"network {network.network_id} has no free address left in {network.ip_range} "
                f"({pool.capacity} endpoints at most)"
            )
        return ipaddress.IPv4Address(free)
    address = parsing.endpoint_address(requested, ip_range)
    if pool.is_reserved(int(address)):
        raise Invalid(
            f"invalid ipv4_address {requested!r}: the network, broadcast and gateway addresses are reserved"
        )
    holder = pool.holder(int(address))
    if holder is not None:
        raise Conflicting(f"ipv4_address {address} is already allocated to endpoint {holder}")
    return address


def _check_mac_free(snapshot: Snapshot, network_id: str, mac: str) -> None:
    holder = snapshot.endpoints.holder_of_mac(network_id, mac)
    if holder is not None:
        raise Conflicting(f"mac_address {mac} is already used by endpoint {holder}")


def _check_names_free(snapshot: Snapshot, added: EndpointAdded) -> None:
    if snapshot.endpoints.get(added.endpoint_id) is not None:
        raise Conflicting(f"endpoint {added.endpoint_id} already exists")
    # Device names carry 40 bits of the id: a clash on one host is very unlikely,
    # and refusing it is better than two endpoints fighting over one device.
    if snapshot.endpoints.holder_of_device(added.hostname, added.target_veth_name) is not None:
        raise Conflicting(f"device name {added.target_veth_name} is taken on {added.hostname}")
