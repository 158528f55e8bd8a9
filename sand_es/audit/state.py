"""The full state at one point of the log, as `replay` prints it and `diff` compares it.

A `State` is a plain, sorted, JSON-ready picture of a `Snapshot`: networks,
endpoints, the VNI table, each network's address pool and the peers each host holds.
It reuses the projections' own `Network`, `Endpoint` and `Peer` records, so what the
tool shows is exactly what the agents decide on.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import msgspec

from sand_es.projections import Endpoint, Network, Peer, Snapshot


class VniRow(msgspec.Struct, frozen=True, kw_only=True):
    """A VNI in use and the network holding it."""

    vni: int
    network_id: str


class AddressRow(msgspec.Struct, frozen=True, kw_only=True):
    """An address handed out in a network, and the endpoint holding it."""

    network_id: str
    ip: str
    endpoint_id: str


class PoolRow(msgspec.Struct, frozen=True, kw_only=True):
    """One network's IPAM: its range, gateway, how full it is, and who holds what."""

    network_id: str
    ip_range: str
    gateway: str
    capacity: int
    used: int
    addresses: list[AddressRow]


class HostPeers(msgspec.Struct, frozen=True, kw_only=True):
    """The active endpoints one host holds in one network: what every other host's VTEP points at."""

    hostname: str
    network_id: str
    peers: list[Peer]


class State(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the log says at `seq` (etcd `revision`)."""

    seq: int
    revision: int
    networks: list[Network]
    endpoints: list[Endpoint]
    vnis: list[VniRow]
    pools: list[PoolRow]
    peers: list[HostPeers]


def state_of(snapshot: Snapshot) -> State:
    """The state a snapshot holds, sorted so two states read (and diff) line by line."""
    networks = sorted(snapshot.networks.networks.values(), key=lambda n: (n.vxlan_vni, n.network_id))
    endpoints = sorted(
        snapshot.endpoints.endpoints.values(), key=lambda e: (e.network_id, _ip_key(e.target_veth_ip))
    )
    vnis = [VniRow(vni=vni, network_id=nid) for vni, nid in sorted(snapshot.vnis.owners.items())]
    pools = []
    for network_id in sorted(snapshot.addresses.pools):
        pool = snapshot.addresses.pools[network_id]
        rows = [
            AddressRow(network_id=network_id, ip=str(ipaddress.IPv4Address(address)), endpoint_id=holder)
            for address, holder in sorted(pool.allocated.items())
        ]
        pools.append(
            PoolRow(
                network_id=network_id,
                ip_range=f"{ipaddress.IPv4Address(pool.base)}/{pool.prefix}",
                gateway=str(ipaddress.IPv4Address(pool.gateway)),
                capacity=pool.capacity,
                used=len(rows),
                addresses=rows,
            )
        )
    peers = [
        HostPeers(
            hostname=host,
            network_id=network_id,
            peers=sorted(on_host.values(), key=lambda p: _ip_key(p.ip)),
        )
        for network_id, hosts in snapshot.peers.networks.items()
        for host, on_host in hosts.items()
        if on_host
    ]
    peers.sort(key=lambda h: (h.hostname, h.network_id))
    position = snapshot.position
    return State(
        seq=position.seq,
        revision=position.rev,
        networks=networks,
        endpoints=endpoints,
        vnis=vnis,
        pools=pools,
        peers=peers,
    )


def _ip_key(cidr: str) -> tuple[int, str]:
    # Sorting by the address as a number keeps .10 after .9; a malformed one sorts last.
    try:
        return int(ipaddress.IPv4Address(cidr.partition("/")[0])), cidr
    except ValueError:
        return 1 << 32, cidr


def render(state: State) -> str:
    """The state as text: one titled table per view."""
    sections = [
        f"state at seq {state.seq} (revision {state.revision}): {len(state.networks)} networks, "
        f"{len(state.endpoints)} endpoints ({sum(e.active for e in state.endpoints)} active)",
        _titled(
            "NETWORKS",
            ("ID", "NAME", "RANGE", "GATEWAY", "VNI", "MTU", "CREATED", "BY"),
            [
                (
                    n.network_id,
                    n.name,
                    n.ip_range,
                    n.gateway,
                    str(n.vxlan_vni),
                    str(n.mtu),
                    _at(n),
                    n.created_by,
                )
                for n in state.networks
            ],
        ),
        _titled(
            "ENDPOINTS",
            ("ID", "NETWORK", "HOST", "IP", "MAC", "STATE", "NS"),
            [
                (
                    e.endpoint_id,
                    e.network_id,
                    e.hostname,
                    e.target_veth_ip,
                    e.target_veth_mac,
                    "active"
                    if e.active
                    else f"inactive{f' ({e.inactive_reason})' if e.inactive_reason else ''}",
                    e.target_netns_path or "-",
                )
                for e in state.endpoints
            ],
        ),
        _titled("VNIS", ("VNI", "NETWORK"), [(str(v.vni), v.network_id) for v in state.vnis]),
        _titled(
            "IPAM",
            ("NETWORK", "RANGE", "GATEWAY", "USED", "CAPACITY", "IP", "ENDPOINT"),
            [
                (p.network_id, p.ip_range, p.gateway, str(p.used), str(p.capacity), a.ip, a.endpoint_id)
                for p in state.pools
                for a in p.addresses or [AddressRow(network_id=p.network_id, ip="-", endpoint_id="-")]
            ],
        ),
        _titled(
            "PEERS",
            ("HOST", "NETWORK", "ENDPOINT", "IP", "MAC", "VTEP"),
            [
                (h.hostname, h.network_id, p.endpoint_id, p.ip, p.mac, p.host_ip or "-")
                for h in state.peers
                for p in h.peers
            ],
        ),
    ]
    return "\n\n".join(sections)


def _at(network: Network) -> str:
    return network.created_at.isoformat().replace("+00:00", "Z")


def _titled(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return f"{title}: none"
    return f"{title} ({len(rows)})\n{table(header, rows)}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns as wide as their widest cell, two spaces apart."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in (header, *rows)
    )
