"""`plan(desired, observed)`: table-tested, no root, no kernel."""

from __future__ import annotations

import pytest

from sand_es.kernel.model import Bridge, Create, Delete, Fdb, HostState, Neigh, Netns, Op, Veth, Vxlan
from sand_es.kernel.plan import identity, plan

NS = "/var/run/netns/sc-ns-net-a"
OTHER_NS = "/var/run/netns/sc-ns-net-b"
NETNS = Netns(NS)
BRIDGE = Bridge(netns=NS, address="198.18.0.1/24", mtu=1450)
VXLAN = Vxlan(netns=NS, vni=7, local="192.0.2.1", port=4789, mtu=1450)
VETH = Veth(
    endpoint_id="ep-1",
    overlay_netns=NS,
    overlay_name="sandaaaaaaaaaao",
    overlay_mac="06:00:00:00:00:01",
    target_netns="/var/run/netns/app1",
    target_name="sandaaaaaaaaaa",
    target_mac="02:84:c6:12:00:02",
    address="198.18.0.2/24",
    mtu=1450,
)
NEIGH = Neigh(netns=NS, ip="198.18.0.3", mac="02:84:c6:12:00:03")
FDB = Fdb(netns=NS, mac="02:84:c6:12:00:03", dst="192.0.2.2")
FULL = HostState(
    namespaces=frozenset({NETNS}),
    bridges=frozenset({BRIDGE}),
    vxlans=frozenset({VXLAN}),
    veths=frozenset({VETH}),
    neighbours=frozenset({NEIGH}),
    fdb=frozenset({FDB}),
)
EMPTY = HostState()


def without(state: HostState, **layers: frozenset[object]) -> HostState:
    """`state` with some layers replaced."""
    values = {field: getattr(state, field) for field in state.__struct_fields__}
    values.update(layers)
    return HostState(**values)


CASES: list[tuple[str, HostState, HostState, list[Op]]] = [
    ("nothing-to-do", EMPTY, EMPTY, []),
    ("converged", FULL, FULL, []),
    (
        "build-from-nothing-outermost-first",
        FULL,
        EMPTY,
        [Create(NETNS), Create(BRIDGE), Create(VXLAN), Create(VETH), Create(NEIGH), Create(FDB)],
    ),
    (
        "peer-left-fdb-then-neighbour",
        without(FULL, neighbours=frozenset(), fdb=frozenset()),
        FULL,
        [Delete(FDB), Delete(NEIGH)],
    ),
    (
        "drifted-neighbour-restored",
        FULL,
        without(FULL, neighbours=frozenset()),
        [Create(NEIGH)],
    ),
    (
        "neighbour-with-new-mac-replaced-in-place",
        without(FULL, neighbours=frozenset({Neigh(netns=NS, ip="198.18.0.3", mac="02:84:c6:12:00:99")})),
        FULL,
        [Create(Neigh(netns=NS, ip="198.18.0.3", mac="02:84:c6:12:00:99"))],
    ),
    (
        "vxlan-with-other-vni-recreated",
        without(FULL, vxlans=frozenset({Vxlan(netns=NS, vni=8, local="192.0.2.1", port=4789, mtu=1450)})),
        FULL,
        [Delete(VXLAN), Create(Vxlan(netns=NS, vni=8, local="192.0.2.1", port=4789, mtu=1450))],
    ),
    (
        "last-local-endpoint-gone-namespace-only",
        EMPTY,
        FULL,
        [Delete(NETNS)],
    ),
    (
        "endpoint-deactivated-veth-only",
        without(FULL, veths=frozenset()),
        FULL,
        [Delete(VETH)],
    ),
    (
        "deletes-before-creates",
        without(FULL, namespaces=frozenset({NETNS, Netns(OTHER_NS)}), neighbours=frozenset()),
        FULL,
        [Delete(NEIGH), Create(Netns(OTHER_NS))],
    ),
]


@pytest.mark.parametrize(
    ("desired", "observed", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_plan(desired: HostState, observed: HostState, expected: list[Op]) -> None:
    """The plan is exactly the expected operations, in the expected order."""
    assert expected == plan(desired, observed)


def test_applying_the_plan_converges() -> None:
    """Applying a plan's operations to the observed state gives the desired state."""
    desired = without(FULL, namespaces=frozenset({NETNS, Netns(OTHER_NS)}), fdb=frozenset())
    observed = without(
        FULL, veths=frozenset(), neighbours=frozenset({Neigh(netns=NS, ip="198.18.0.3", mac="x")})
    )
    assert desired == _apply(observed, plan(desired, observed))
    assert [] == plan(desired, _apply(observed, plan(desired, observed)))


def _apply(state: HostState, ops: list[Op]) -> HostState:
    """A toy kernel: creates replace what has the same identity, a namespace takes its contents along."""
    layers = {field: set(getattr(state, field)) for field in state.__struct_fields__}
    kinds = {
        Netns: "namespaces",
        Bridge: "bridges",
        Vxlan: "vxlans",
        Veth: "veths",
        Neigh: "neighbours",
        Fdb: "fdb",
    }
    for op in ops:
        layer = layers[kinds[type(op.target)]]
        same = {obj for obj in layer if identity(obj) == identity(op.target)}
        layer -= same
        if isinstance(op, Create):
            layer.add(op.target)
        elif isinstance(op.target, Netns):
            for field, objects in layers.items():
                if field != "namespaces":
                    objects -= {
                        o
                        for o in objects
                        if op.target.path in (getattr(o, "netns", None), getattr(o, "overlay_netns", None))
                    }
    return HostState(**{field: frozenset(objects) for field, objects in layers.items()})
