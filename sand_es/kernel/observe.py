"""Read what this agent owns from the kernel, in the model's vocabulary.

Owned means: the namespaces under `NETNS_PATH` whose name starts with this agent's
`NETNS_PREFIX`, everything in them, and, in containers' namespaces, only the veth
ends and addresses the desired state names. Nothing else is looked at, so nothing
else can ever be planned for deletion.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import msgspec
from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import ndmsg

from sand_es.kernel import nsfs
from sand_es.kernel.model import (
    BRIDGE,
    VXLAN,
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
from sand_es.kernel.netlink import Netlink

_IFF_UP = 0x1
_PERMANENT = ndmsg.states["permanent"]


class _Layers:
    """The objects found so far, layer by layer."""

    def __init__(self) -> None:
        self.namespaces: set[Netns] = set()
        self.bridges: set[Bridge] = set()
        self.vxlans: set[Vxlan] = set()
        self.veths: set[Veth] = set()
        self.addresses: set[Address] = set()
        self.neighbours: set[Neigh] = set()
        self.fdb: set[Fdb] = set()

    def state(self) -> HostState:
        return HostState(
            namespaces=frozenset(self.namespaces),
            bridges=frozenset(self.bridges),
            vxlans=frozenset(self.vxlans),
            veths=frozenset(self.veths),
            addresses=frozenset(self.addresses),
            neighbours=frozenset(self.neighbours),
            fdb=frozenset(self.fdb),
        )


def overlay_namespaces(config: HostConfig) -> list[str]:
    """The handle paths of this agent's overlay namespaces that exist now."""
    try:
        names = os.listdir(config.netns_path)
    except FileNotFoundError:
        return []
    paths = (os.path.join(config.netns_path, name) for name in names if name.startswith(config.netns_prefix))
    return sorted(path for path in paths if nsfs.exists(path))


async def observe(netlink: Netlink, config: HostConfig, desired: HostState) -> HostState:
    """The kernel state this agent owns; `desired` says where each veth's other end should be."""
    observer = _Observer(netlink, desired)
    for path in overlay_namespaces(config):
        await observer.overlay(path)
    return observer.found.state()


class _Observer:
    def __init__(self, netlink: Netlink, desired: HostState) -> None:
        self.netlink = netlink
        self.found = _Layers()
        self.veths_wanted = {(v.overlay_netns, v.overlay_name): v for v in desired.veths}

    async def overlay(self, path: str) -> None:
        self.found.namespaces.add(Netns(path))
        try:
            ipr = await self.netlink.at(path)
        except nsfs.NamespaceGone:
            return  # removed meanwhile: its contents are seen as absent
        links = [link async for link in await ipr.link("dump")]
        names = {link["index"]: link.get("IFLA_IFNAME") for link in links}
        vxlan_index = None
        for link in links:
            name = link.get("IFLA_IFNAME")
            kind = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
            master = names.get(link.get("IFLA_MASTER"), "")
            up = bool(link["flags"] & _IFF_UP)
            if name == BRIDGE and kind == "bridge":
                self.found.bridges.add(Bridge(netns=path, mtu=link.get("IFLA_MTU"), up=up))
            elif name == VXLAN and kind == "vxlan":
                vxlan_index = link["index"]
                self.found.vxlans.add(_vxlan(link, path, master, up))
            elif kind == "veth":
                self.found.veths.add(await self.veth(link, path, master, up))
        async for addr in await ipr.addr("dump", family=socket.AF_INET):
            if names.get(addr["index"]) == BRIDGE:
                self.found.addresses.add(Address(netns=path, dev=BRIDGE, cidr=_cidr(addr)))
        if vxlan_index is not None:
            await self.entries(ipr, path, vxlan_index)

    async def veth(self, link: Any, path: str, master: str, up: bool) -> Veth:
        """What the overlay end shows, plus its other end if that is where it should be."""
        name = link.get("IFLA_IFNAME")
        wanted = self.veths_wanted.get((path, name))
        overlay = Veth(
            endpoint_id=wanted.endpoint_id if wanted else "",
            overlay_netns=path,
            overlay_name=name,
            overlay_mac=link.get("IFLA_ADDRESS") or "",
            target_netns="",
            target_name=wanted.target_name if wanted else "",
            target_mac="",
            mtu=link.get("IFLA_MTU"),
            master=master,
            up=up,
        )
        if wanted is None:
            return overlay
        target = await self.target_end(wanted, peer_index=link.get("IFLA_LINK"))
        if target is None:
            return overlay
        target_mac, target_mtu, target_up = target
        return msgspec.structs.replace(
            overlay,
            target_netns=wanted.target_netns,
            target_mac=target_mac,
            mtu=overlay.mtu if target_mtu == overlay.mtu else -1,
            up=up and target_up,
        )

    async def target_end(self, wanted: Veth, *, peer_index: int | None) -> tuple[str, int, bool] | None:
        """(mac, mtu, up) of the veth's end in its container, noting its addresses, if it is there."""
        try:
            ipr = await self.netlink.at(wanted.target_netns)
        except nsfs.NamespaceGone:
            return None
        try:
            [target] = await ipr.link("get", ifname=wanted.target_name)
        except NetlinkError:
            return None
        if target["index"] != peer_index:
            return None  # a device of that name, but not this pair's end
        async for addr in await ipr.addr("dump", family=socket.AF_INET, index=target["index"]):
            self.found.addresses.add(
                Address(netns=wanted.target_netns, dev=wanted.target_name, cidr=_cidr(addr))
            )
        return target.get("IFLA_ADDRESS") or "", target.get("IFLA_MTU"), bool(target["flags"] & _IFF_UP)

    async def entries(self, ipr: AsyncIPRoute, path: str, vxlan_index: int) -> None:
        async for neigh in await ipr.neigh("dump", ifindex=vxlan_index, family=socket.AF_INET):
            if neigh["state"] & _PERMANENT and neigh.get("NDA_LLADDR"):
                mac = neigh.get("NDA_LLADDR")
                self.found.neighbours.add(Neigh(netns=path, ip=neigh.get("NDA_DST"), mac=mac))
        async for entry in await ipr.fdb("dump"):
            if entry["ifindex"] == vxlan_index and entry.get("NDA_DST"):
                self.found.fdb.add(Fdb(netns=path, mac=entry.get("NDA_LLADDR"), dst=entry.get("NDA_DST")))


def _vxlan(link: Any, path: str, master: str, up: bool) -> Vxlan:
    def data(attr: str) -> Any:
        return link.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA", attr)

    return Vxlan(
        netns=path,
        vni=data("IFLA_VXLAN_ID") or 0,
        local=data("IFLA_VXLAN_LOCAL") or "",
        port=data("IFLA_VXLAN_PORT") or 0,
        mtu=link.get("IFLA_MTU"),
        master=master,
        up=up,
    )


def _cidr(addr: Any) -> str:
    return f"{addr.get('IFA_ADDRESS')}/{addr['prefixlen']}"
