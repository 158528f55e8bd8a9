"""Carry out a plan through netlink: the only code that changes the kernel.

Every operation is idempotent: creating what exists or deleting what is gone counts
as done, so a pass interrupted half-way (or planned from a stale belief) is simply
run again. Operations run one by one in the plan's order; one that fails is reported
and the others still run, since most are independent (another endpoint, another
network) and the next pass retries the failed ones.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Sequence
from typing import Any, Final

import msgspec
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import ndmsg

from sand_es.kernel import nsfs
from sand_es.kernel.model import (
    Address,
    Bridge,
    Create,
    Fdb,
    KernelObject,
    Neigh,
    Netns,
    Op,
    Veth,
    Vxlan,
)
from sand_es.kernel.netlink import Netlink

_GONE: Final = frozenset({errno.ENOENT, errno.ENODEV, errno.ESRCH, errno.EADDRNOTAVAIL})
_PERMANENT: Final = ndmsg.states["permanent"]
_FDB_STATE: Final = ndmsg.states["permanent"] | ndmsg.states["noarp"]
_FDB_SELF: Final = ndmsg.flags["self"]


class Failure(msgspec.Struct, frozen=True):
    """An operation that did not happen, and why."""

    op: Op
    reason: str


class VanishedTarget(msgspec.Struct, frozen=True):
    """A local endpoint whose container namespace is gone: it cannot be wired any more."""

    endpoint_id: str
    target_netns: str


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """What one `apply` did."""

    done: tuple[Op, ...] = ()
    failed: tuple[Failure, ...] = ()
    vanished: tuple[VanishedTarget, ...] = ()


async def apply(netlink: Netlink, ops: Sequence[Op]) -> Report:
    """Run `ops` in order; report which were done, which failed, and which containers vanished."""
    applier = _Applier(netlink)
    done: list[Op] = []
    failed: list[Failure] = []
    vanished: list[VanishedTarget] = []
    for op in ops:
        try:
            if isinstance(op, Create):
                await applier.create(op.target)
            else:
                await applier.delete(op.target)
        except _TargetGone as gone:
            veth = gone.veth
            vanished.append(VanishedTarget(endpoint_id=veth.endpoint_id, target_netns=veth.target_netns))
            failed.append(Failure(op, f"target namespace {veth.target_netns} does not exist"))
        except Exception as exc:  # one operation's failure must not stop the others
            failed.append(Failure(op, _describe(exc)))
        else:
            done.append(op)
    netlink.release_transient()
    return Report(done=tuple(done), failed=tuple(failed), vanished=tuple(vanished))


class _TargetGone(Exception):
    def __init__(self, veth: Veth) -> None:
        super().__init__(veth.target_netns)
        self.veth = veth


class _Applier:
    """One run's sockets and interface indexes (looked up once per run, forgotten on change)."""

    def __init__(self, netlink: Netlink) -> None:
        self.netlink = netlink
        self.indexes: dict[tuple[str, str], int] = {}

    async def create(self, obj: KernelObject) -> None:
        match obj:
            case Netns(path=path):
                await self.create_netns(path)
            case Bridge():
                await self.ensure_bridge(obj)
            case Vxlan():
                await self.create_vxlan(obj)
            case Veth():
                await self.create_veth(obj)
            case Address():
                await self.add_address(obj)
            case Neigh():
                ipr = await self.netlink.at(obj.netns)
                index = await self.index(obj.netns, obj.dev)
                await ipr.neigh("replace", ifindex=index, dst=obj.ip, lladdr=obj.mac, state=_PERMANENT)
            case Fdb():
                ipr = await self.netlink.at(obj.netns)
                index = await self.index(obj.netns, obj.dev)
                # pyroute2 only fills in state and flags for add/append/del: replace needs them given.
                await ipr.fdb(
                    "replace", ifindex=index, lladdr=obj.mac, dst=obj.dst, state=_FDB_STATE, flags=_FDB_SELF
                )

    async def delete(self, obj: KernelObject) -> None:
        match obj:
            case Netns(path=path):
                self.netlink.forget(path)
                self.indexes = {key: i for key, i in self.indexes.items() if key[0] != path}
                await nsfs.remove(path)
            case Bridge() | Vxlan():
                await self.delete_link(obj.netns, obj.name)
            case Veth():
                # Deleting one end of a pair deletes the other.
                await self.delete_link(obj.overlay_netns, obj.overlay_name)
            case Address():
                await self.quietly_gone(self.del_address(obj))
            case Neigh():
                ipr = await self.netlink.at(obj.netns)
                index = await self.index(obj.netns, obj.dev)
                await self.quietly_gone(ipr.neigh("del", ifindex=index, dst=obj.ip, lladdr=obj.mac))
            case Fdb():
                ipr = await self.netlink.at(obj.netns)
                index = await self.index(obj.netns, obj.dev)
                await self.quietly_gone(ipr.fdb("del", ifindex=index, lladdr=obj.mac, dst=obj.dst))

    async def create_netns(self, path: str) -> None:
        self.netlink.forget(path)
        await nsfs.create(path)
        ipr = await self.netlink.at(path)
        await ipr.link("set", index=await self.index(path, "lo"), state="up")

    async def ensure_bridge(self, bridge: Bridge) -> None:
        ipr = await self.netlink.at(bridge.netns)
        index = await self.lookup(bridge.netns, bridge.name)
        if index is None:
            await ipr.link("add", ifname=bridge.name, kind="bridge", mtu=bridge.mtu)
            index = await self.index(bridge.netns, bridge.name)
        await ipr.link("set", index=index, mtu=bridge.mtu, state="up")

    async def create_vxlan(self, vxlan: Vxlan) -> None:
        """Requested from the agent's own namespace with the overlay namespace as destination.

        The kernel builds the device in the destination, but binds its UDP socket in
        the namespace the request came from (`link-netns` in `ip -d link`): the
        underlay. It is the create-then-move of SAND in one step, without the ~20 ms
        a move costs.
        """
        await self.delete_link(vxlan.netns, vxlan.name)  # a stale one (another VNI, a half-made one)
        home = await self.netlink.home()
        with nsfs.handle(vxlan.netns) as fd:
            spec: dict[str, Any] = {"vxlan_local": vxlan.local} if vxlan.local else {}
            await home.link(
                "add",
                ifname=vxlan.name,
                kind="vxlan",
                vxlan_id=vxlan.vni,
                vxlan_port=vxlan.port,
                vxlan_learning=0,
                vxlan_proxy=1,
                mtu=vxlan.mtu,
                net_ns_fd=fd,
                **spec,
            )
        ipr = await self.netlink.at(vxlan.netns)
        master = await self.index(vxlan.netns, vxlan.master)
        await ipr.link("set", index=await self.index(vxlan.netns, vxlan.name), master=master, state="up")

    async def create_veth(self, veth: Veth) -> None:
        """The pair is made in the overlay namespace with its peer born in the container's (no move).

        Two requests in the common case: the creation (enslaved and up on the overlay
        side) and the container side brought up by name. Leftovers holding either
        name are only looked for when the creation says they exist.
        """
        try:
            target = await self.netlink.at(veth.target_netns)
        except nsfs.NamespaceGone:
            raise _TargetGone(veth) from None
        overlay = await self.netlink.at(veth.overlay_netns)
        master = await self.index(veth.overlay_netns, veth.master)
        try:
            await _add_veth(overlay, veth, master)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise
            await self.delete_link(veth.overlay_netns, veth.overlay_name)
            await self.delete_link(veth.target_netns, veth.target_name)
            await _add_veth(overlay, veth, master)
        self.indexes.pop((veth.overlay_netns, veth.overlay_name), None)
        self.indexes.pop((veth.target_netns, veth.target_name), None)
        await target.link("set", ifname=veth.target_name, state="up")

    async def add_address(self, address: Address) -> None:
        ipr = await self.netlink.at(address.netns)
        ip, prefix = address.cidr.split("/")
        try:
            index = await self.index(address.netns, address.dev)
            await ipr.addr("add", index=index, address=ip, prefixlen=int(prefix))
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise

    async def del_address(self, address: Address) -> None:
        ipr = await self.netlink.at(address.netns)
        ip, prefix = address.cidr.split("/")
        index = await self.lookup(address.netns, address.dev)
        if index is not None:
            await ipr.addr("del", index=index, address=ip, prefixlen=int(prefix), family=socket.AF_INET)

    async def delete_link(self, path: str, name: str) -> None:
        try:
            ipr = await self.netlink.at(path)
        except nsfs.NamespaceGone:
            return  # gone with its namespace
        index = await self.lookup(path, name)
        if index is not None:
            await self.quietly_gone(ipr.link("del", index=index))
        self.indexes.pop((path, name), None)

    async def index(self, path: str, name: str) -> int:
        index = await self.lookup(path, name)
        if index is None:
            raise OSError(errno.ENODEV, f"no device {name} in {path}")
        return index

    async def lookup(self, path: str, name: str) -> int | None:
        key = (path, name)
        if key not in self.indexes:
            ipr = await self.netlink.at(path)
            try:
                [link] = await ipr.link("get", ifname=name)
            except NetlinkError as exc:
                if exc.code in _GONE:
                    return None
                raise
            self.indexes[key] = link["index"]
        return self.indexes[key]

    @staticmethod
    async def quietly_gone(call: Any) -> None:
        try:
            await call
        except NetlinkError as exc:
            if exc.code not in _GONE:
                raise


async def _add_veth(overlay: Any, veth: Veth, master: int) -> None:
    with nsfs.handle(veth.target_netns) as fd:
        await overlay.link(
            "add",
            ifname=veth.overlay_name,
            kind="veth",
            address=veth.overlay_mac,
            mtu=veth.mtu,
            master=master,
            state="up",
            peer={"ifname": veth.target_name, "net_ns_fd": fd, "address": veth.target_mac, "mtu": veth.mtu},
        )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, NetlinkError):
        return f"netlink error {exc.code} ({os.strerror(exc.code)})"
    return str(exc) or type(exc).__name__
