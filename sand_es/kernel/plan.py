"""`plan(desired, observed) -> ops`: the pure step between reading the kernel and writing it.

Order matters to the kernel: a namespace before the links in it, a bridge before the
devices enslaved to it, links before the neighbour and FDB entries on them. So the
plan deletes first, innermost layer first (FDB, neighbours, veths, VXLAN, bridges,
namespaces), then creates, outermost first. Links whose attributes differ are
recreated; neighbour and FDB entries are replaced in place (the apply uses
`NLM_F_REPLACE`); and nothing inside a namespace being deleted is deleted on its own,
since the kernel removes it with the namespace.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Final

from sand_es.kernel.model import (
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

_LAYERS: Final = ("namespaces", "bridges", "vxlans", "veths", "neighbours", "fdb")


def identity(obj: KernelObject) -> tuple[Hashable, ...]:
    """What names an object in the kernel: two objects with one identity are one object."""
    match obj:
        case Netns(path=path):
            return (path,)
        case Bridge() | Vxlan():
            return (obj.netns, obj.name)
        case Veth():
            return (obj.overlay_netns, obj.overlay_name)
        case Neigh():
            return (obj.netns, obj.dev, obj.ip)
        case Fdb():
            return (obj.netns, obj.dev, obj.mac)


def plan(desired: HostState, observed: HostState) -> list[Op]:
    """The operations that turn `observed` into `desired`, in an order the kernel accepts."""
    doomed = {n.path for n in observed.namespaces - desired.namespaces}
    deletes: list[list[Op]] = []
    creates: list[Op] = []
    for layer in _LAYERS:
        want = _by_identity(getattr(desired, layer))
        have = _by_identity(getattr(observed, layer))
        deletes.append([Delete(obj) for key, obj in have.items() if _must_delete(obj, want.get(key), doomed)])
        creates.extend(Create(obj) for key, obj in want.items() if have.get(key) != obj)
    return [op for layer_ops in reversed(deletes) for op in layer_ops] + creates


def _must_delete(obj: KernelObject, wanted: KernelObject | None, doomed: set[str]) -> bool:
    if wanted == obj:
        return False
    if not isinstance(obj, Netns) and _namespace_of(obj) in doomed:
        return False  # goes with its namespace
    # A neighbour or FDB entry wanted with other attributes is replaced, not deleted.
    return wanted is None or not isinstance(obj, Neigh | Fdb)


def _namespace_of(obj: KernelObject) -> str:
    return obj.overlay_netns if isinstance(obj, Veth) else getattr(obj, "netns", "")


def _by_identity(objects: Iterable[KernelObject]) -> dict[tuple[Hashable, ...], KernelObject]:
    ordered: Callable[[KernelObject], str] = repr  # a stable order, so plans are reproducible
    return {identity(obj): obj for obj in sorted(objects, key=ordered)}
