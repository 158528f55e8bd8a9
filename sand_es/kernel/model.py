"""The kernel state of one host, in the kernel's own vocabulary, and the operations on it.

Pure data: the desired state (derived from the views), the observed state (read from
netlink by the shell) and the plan between them are all built from these frozen,
hashable structs, so the planning can be tested without root.
"""

from __future__ import annotations

from typing import Final

import msgspec

BRIDGE: Final = "br0"
VXLAN: Final = "vxlan0"
VXLAN_PORT: Final = 4789


class HostConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Who this host is, and where its overlay namespaces live."""

    hostname: str
    host_ip: str
    netns_path: str = "/var/run/netns"
    netns_prefix: str = "sc-ns-"
    vxlan_port: int = VXLAN_PORT

    def overlay_netns(self, network_id: str) -> str:
        """The handle path of a network's overlay namespace on this host."""
        return f"{self.netns_path.rstrip('/')}/{self.netns_prefix}{network_id}"


class Netns(msgspec.Struct, frozen=True):
    """An overlay namespace, by its handle path."""

    path: str


class Bridge(msgspec.Struct, frozen=True, kw_only=True):
    """The overlay bridge of a network (its gateway address is an `Address` on it)."""

    netns: str
    mtu: int
    name: str = BRIDGE
    up: bool = True


class Vxlan(msgspec.Struct, frozen=True, kw_only=True):
    """The VXLAN device of a network: created in the agent's namespace, then moved in.

    Learning is off and ARP proxying on: peers are known from the log, not learned.
    """

    netns: str
    vni: int
    local: str
    port: int
    mtu: int
    name: str = VXLAN
    master: str = BRIDGE
    up: bool = True


class Veth(msgspec.Struct, frozen=True, kw_only=True):
    """An active local endpoint: one end on the overlay bridge, the other in its namespace."""

    endpoint_id: str
    overlay_netns: str
    overlay_name: str
    overlay_mac: str
    target_netns: str
    target_name: str
    target_mac: str
    mtu: int
    master: str = BRIDGE
    up: bool = True


class Address(msgspec.Struct, frozen=True, kw_only=True):
    """An IPv4 address (`ip/prefix`) on a device: the gateway on the bridge, an endpoint's IP."""

    netns: str
    dev: str
    cidr: str


class Neigh(msgspec.Struct, frozen=True, kw_only=True):
    """A permanent neighbour entry: a remote endpoint's IP answers with its MAC."""

    netns: str
    ip: str
    mac: str
    dev: str = VXLAN


class Fdb(msgspec.Struct, frozen=True, kw_only=True):
    """A permanent FDB entry: frames for a remote MAC go to its host's underlay IP."""

    netns: str
    mac: str
    dst: str
    dev: str = VXLAN


class HostState(msgspec.Struct, frozen=True, kw_only=True):
    """Everything sand-es owns on one host (desired, or observed)."""

    namespaces: frozenset[Netns] = frozenset()
    bridges: frozenset[Bridge] = frozenset()
    vxlans: frozenset[Vxlan] = frozenset()
    veths: frozenset[Veth] = frozenset()
    addresses: frozenset[Address] = frozenset()
    neighbours: frozenset[Neigh] = frozenset()
    fdb: frozenset[Fdb] = frozenset()


KernelObject = Netns | Bridge | Vxlan | Veth | Address | Neigh | Fdb


class Create(msgspec.Struct, frozen=True):
    """Make the object exist as described (an existing one counts as done)."""

    target: KernelObject


class Delete(msgspec.Struct, frozen=True):
    """Make the object not exist (a missing one counts as done)."""

    target: KernelObject


Op = Create | Delete
