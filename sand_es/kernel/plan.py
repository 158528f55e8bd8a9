"""`plan(desired, observed) -> ops`: the pure step between reading the kernel and writing it.

Order matters to the kernel: a namespace before the links in it, a link before the
addresses, neighbour and FDB entries on it. So the plan deletes first, innermost
layer first (FDB, neighbours, addresses, veths, VXLAN, bridges, namespaces), then
creates, outermost first.

How a difference is resolved depends on what the kernel can change in place:
bridges, neighbour and FDB entries are updated in place (`Create` is an upsert);
a VXLAN or veth whose attributes differ is deleted and created again, and what lived
on it (its addresses, neighbour and FDB entries) is created again with it. Nothing
inside a namespace or on a link being deleted is deleted on its own: the kernel
removes it along with its container. Veths are the exception (see `_carried_away`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Final

import msgspec

from sand_es.kernel.model import (
    Address,
    Bridge,
    Create,
    Delete,
    Fdb,
    HostState,
    KernelObject,
    Neigh,
    Netns,
    Op,
    Veth,
    Vxlan,
)

LAYERS: Final = ("namespaces", "bridges", "vxlans", "veths", "addresses", "neighbours", "fdb")

Key = tuple[Hashable, ...]
LinkKey = tuple[str, str]
"""A link by (namespace, name): what addresses and entries hang on."""


def identity(obj: KernelObject) -> Key:
    """What names an object in the kernel: two objects with one identity are one object."""
    match obj:
        case Netns(path=path):
            return (path,)
        case Bridge() | Vxlan():
            return (obj.netns, obj.name)
        case Veth():
            return (obj.overlay_netns, obj.overlay_name)
        case Address():
            return (obj.netns, obj.dev, obj.cidr)
        case Neigh():
            return (obj.netns, obj.dev, obj.ip)
        case Fdb():
            return (obj.netns, obj.dev, obj.mac)


def plan(desired: HostState, observed: HostState) -> list[Op]:
    """The operations that turn `observed` into `desired`, in an order the kernel accepts.

    Only what differs is looked at (set differences first): a pass on a converged host
    with thousands of devices costs little more than one on an empty host.
    """
    gone_namespaces = {n.path for n in observed.namespaces - desired.namespaces}
    gone_links: set[LinkKey] = set()
    deletes: list[list[Op]] = []
    creates: list[Op] = []
    for layer in LAYERS:
        want: frozenset[KernelObject] = getattr(desired, layer)
        have: frozenset[KernelObject] = getattr(observed, layer)
        stale, fresh = have - want, want - have
        fresh_keys = {identity(obj) for obj in fresh}
        layer_deletes: list[Op] = []
        for obj in _ordered(stale):
            if _carried_away(obj, gone_namespaces, gone_links):
                continue
            if identity(obj) in fresh_keys and _updatable_in_place(obj):
                continue
            layer_deletes.append(Delete(obj))
            gone_links.update(links_of(obj))
        deletes.append(layer_deletes)
        if gone_namespaces or gone_links:  # what lived on a deleted link is made again
            fresh = fresh | {obj for obj in want & have if _carried_away(obj, gone_namespaces, gone_links)}
        creates.extend(Create(obj) for obj in _ordered(fresh))
    return [op for layer_ops in reversed(deletes) for op in layer_ops] + creates


def simulate(state: HostState, ops: Iterable[Op]) -> HostState:
    """What the kernel holds after `ops` succeeded on `state`, deletions cascading as in the kernel.

    The reconciler keeps this as its belief between full observations, so a pass
    triggered by an event plans without dumping the kernel.
    """
    layers: dict[str, dict[Key, KernelObject]] = {}

    def layer_of(name: str) -> dict[Key, KernelObject]:
        # Indexed on first use: a pass that wires one endpoint touches two layers, not seven.
        if name not in layers:
            layers[name] = {identity(obj): obj for obj in getattr(state, name)}
        return layers[name]

    for op in ops:
        layer = layer_of(_layer_of(op.target))
        key = identity(op.target)
        if isinstance(op, Create):
            layer[key] = op.target
            continue
        layer.pop(key, None)
        gone_namespaces = {op.target.path} if isinstance(op.target, Netns) else set()
        gone_links = set(links_of(op.target))
        for name in LAYERS:
            objects = layer_of(name)
            for obj_key, obj in list(objects.items()):
                if _carried_away(obj, gone_namespaces, gone_links):
                    del objects[obj_key]
    changed = {name: frozenset(objects.values()) for name, objects in layers.items()}
    return msgspec.structs.replace(state, **changed)


def links_of(obj: KernelObject) -> tuple[LinkKey, ...]:
    """The links an object is (a veth is two: its overlay end and its target end)."""
    match obj:
        case Bridge() | Vxlan():
            return ((obj.netns, obj.name),)
        case Veth():
            return ((obj.overlay_netns, obj.overlay_name), (obj.target_netns, obj.target_name))
        case _:
            return ()


def namespaces_of(obj: KernelObject) -> tuple[str, ...]:
    """The namespaces an object lives in: it dies with any of them."""
    match obj:
        case Netns():
            return ()
        case Veth():
            return (obj.overlay_netns, obj.target_netns)
        case _:
            return (obj.netns,)


def _carried_away(obj: KernelObject, gone_namespaces: set[str], gone_links: set[LinkKey]) -> bool:
    """Whether the kernel removes `obj` along with a namespace or link being deleted.

    Veths are deleted explicitly even in a namespace being deleted: their other end
    is in a container, and a namespace dies only when its last user lets go of it
    (asynchronously, at that), which would leave the container's end behind.
    """
    if not isinstance(obj, Veth) and any(ns in gone_namespaces for ns in namespaces_of(obj)):
        return True
    match obj:
        case Address() | Neigh() | Fdb():
            return (obj.netns, obj.dev) in gone_links
        case Veth():
            # Deleting either end of a pair deletes both.
            return any(link in gone_links for link in links_of(obj))
        case _:
            return False


def _updatable_in_place(obj: KernelObject) -> bool:
    return isinstance(obj, Bridge | Neigh | Fdb)


def _layer_of(obj: KernelObject) -> str:
    match obj:
        case Netns():
            return "namespaces"
        case Bridge():
            return "bridges"
        case Vxlan():
            return "vxlans"
        case Veth():
            return "veths"
        case Address():
            return "addresses"
        case Neigh():
            return "neighbours"
        case Fdb():
            return "fdb"


def _ordered(objects: Iterable[KernelObject]) -> list[KernelObject]:
    by: Callable[[KernelObject], str] = repr  # a stable order, so plans are reproducible
    return sorted(objects, key=by)
