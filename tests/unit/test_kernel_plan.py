"""`plan(desired, observed)`: table-tested, no root, no kernel."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

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
from sand_es.kernel.plan import identity, plan, simulate

NS = "/var/run/netns/sc-ns-net-a"
OTHER_NS = "/var/run/netns/sc-ns-net-b"
NETNS = Netns(NS)
BRIDGE = Bridge(netns=NS, mtu=1450)
VXLAN = Vxlan(netns=NS, vni=7, local="192.0.2.1", port=4789, mtu=1450)
VETH = Veth(
    endpoint_id="ep-1",
    overlay_netns=NS,
    overlay_name="sandaaaaaaaaaao",
    overlay_mac="06:00:00:00:00:01",
    target_netns="/var/run/netns/app1",
    target_name="sandaaaaaaaaaa",
    target_mac="02:84:c6:12:00:02",
    mtu=1450,
)
BRIDGE_ADDRESS = Address(netns=NS, dev="br0", cidr="198.18.0.1/24")
OTHER_VXLAN = Vxlan(netns=NS, vni=8, local="192.0.2.1", port=4789, mtu=1450)
OTHER_GATEWAY = Address(netns=NS, dev="br0", cidr="198.18.9.1/24")
TARGET_ADDRESS = Address(netns="/var/run/netns/app1", dev="sandaaaaaaaaaa", cidr="198.18.0.2/24")
NEIGH = Neigh(netns=NS, ip="198.18.0.3", mac="02:84:c6:12:00:03")
FDB = Fdb(netns=NS, mac="02:84:c6:12:00:03", dst="192.0.2.2")
FULL = HostState(
    namespaces=frozenset({NETNS}),
    bridges=frozenset({BRIDGE}),
    vxlans=frozenset({VXLAN}),
    veths=frozenset({VETH}),
    addresses=frozenset({BRIDGE_ADDRESS, TARGET_ADDRESS}),
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
        [
            Create(NETNS),
            Create(BRIDGE),
            Create(VXLAN),
            Create(VETH),
            Create(TARGET_ADDRESS),
            Create(BRIDGE_ADDRESS),
            Create(NEIGH),
            Create(FDB),
        ],
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
        without(FULL, vxlans=frozenset({OTHER_VXLAN})),
        FULL,
        # Its neighbour and FDB entries go with the old device: they are created again.
        [
            Delete(VXLAN),
            Create(OTHER_VXLAN),
            Create(NEIGH),
            Create(FDB),
        ],
    ),
    (
        "last-local-endpoint-gone-veth-then-namespace",
        EMPTY,
        FULL,
        # The veth explicitly (its other end is in a container); the rest goes with the namespace.
        [Delete(VETH), Delete(NETNS)],
    ),
    (
        "endpoint-deactivated-veth-only",
        without(FULL, veths=frozenset(), addresses=frozenset({BRIDGE_ADDRESS})),
        FULL,
        [Delete(VETH)],
    ),
    (
        "veth-with-new-mtu-recreated-with-its-address",
        without(FULL, veths=frozenset({msgspec.structs.replace(VETH, mtu=1400)})),
        FULL,
        [Delete(VETH), Create(msgspec.structs.replace(VETH, mtu=1400)), Create(TARGET_ADDRESS)],
    ),
    (
        "bridge-brought-up-in-place",
        FULL,
        without(FULL, bridges=frozenset({Bridge(netns=NS, mtu=1450, up=False)})),
        [Create(BRIDGE)],
    ),
    (
        "gateway-address-changed",
        without(FULL, addresses=frozenset({TARGET_ADDRESS, OTHER_GATEWAY})),
        FULL,
        [Delete(BRIDGE_ADDRESS), Create(OTHER_GATEWAY)],
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
    """Simulating a plan's operations on the observed state gives the desired state."""
    desired = without(FULL, namespaces=frozenset({NETNS, Netns(OTHER_NS)}), fdb=frozenset())
    observed = without(
        FULL, veths=frozenset(), neighbours=frozenset({Neigh(netns=NS, ip="198.18.0.3", mac="x")})
    )
    assert desired == simulate(observed, plan(desired, observed))
    assert [] == plan(desired, simulate(observed, plan(desired, observed)))


def test_deleting_a_namespace_cascades_in_the_simulation() -> None:
    """What lived in a deleted namespace, or on a deleted link, is gone from the belief too."""
    no_endpoint = without(FULL, veths=frozenset(), addresses=frozenset({BRIDGE_ADDRESS}))
    assert EMPTY == simulate(no_endpoint, [Delete(NETNS)])
    after_veth = simulate(FULL, [Delete(VETH)])
    assert TARGET_ADDRESS not in after_veth.addresses
    assert BRIDGE_ADDRESS in after_veth.addresses


_objects: dict[str, list[KernelObject]] = {
    "namespaces": [NETNS, Netns(OTHER_NS)],
    "bridges": [BRIDGE, Bridge(netns=NS, mtu=1500), Bridge(netns=OTHER_NS, mtu=1450, up=False)],
    "vxlans": [VXLAN, OTHER_VXLAN],
    "veths": [
        VETH,
        msgspec.structs.replace(VETH, mtu=1400),
        msgspec.structs.replace(VETH, overlay_netns=OTHER_NS),
    ],
    "addresses": [BRIDGE_ADDRESS, TARGET_ADDRESS, OTHER_GATEWAY],
    "neighbours": [
        NEIGH,
        Neigh(netns=NS, ip="198.18.0.3", mac="02:84:c6:12:00:99"),
        Neigh(netns=OTHER_NS, ip="198.18.0.4", mac="m"),
    ],
    "fdb": [
        FDB,
        Fdb(netns=NS, mac="02:84:c6:12:00:03", dst="192.0.2.9"),
        Fdb(netns=OTHER_NS, mac="m", dst="192.0.2.2"),
    ],
}


@st.composite
def host_states(draw: st.DrawFn) -> HostState:
    """A state built from a small universe, so that desired and observed often overlap."""
    layers: dict[str, frozenset[object]] = {}
    for layer, choices in _objects.items():
        picked = draw(st.sets(st.sampled_from(choices)))
        # One object per identity, as in a kernel.
        layers[layer] = frozenset({identity(o): o for o in picked}.values())
    return HostState(**layers)  # type: ignore[arg-type]


@given(desired=host_states(), observed=host_states())
def test_any_plan_converges_in_one_pass(desired: HostState, observed: HostState) -> None:
    """Whatever the kernel holds, one plan's operations reach the desired state, and nothing is left to do."""
    after = simulate(observed, plan(desired, observed))
    assert [] == plan(desired, after)
