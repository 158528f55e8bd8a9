"""`desired(snapshot, host)`: one host's kernel state, derived from the views alone."""

from __future__ import annotations

from sand_es.events import Event
from sand_es.kernel.desired import desired
from sand_es.kernel.model import Address, Bridge, Fdb, HostConfig, HostState, Neigh, Netns, Vxlan
from tests.unit.builders import (
    EP_1,
    EP_2,
    EP_3,
    HOST_A,
    HOST_B,
    HOST_C,
    HOST_IPS,
    NET_A,
    NET_B,
    NETNS,
    activated,
    deactivated,
    endpoint_added,
    network_created,
    removed,
)
from tests.unit.gwt import history

RANGE = "198.18.0.0/24"
HOST = HostConfig(hostname=HOST_A, host_ip=HOST_IPS[HOST_A])
OVERLAY = f"/var/run/netns/sc-ns-{NET_A}"


def local_and_remote() -> list[Event]:
    """NET_A with an active endpoint on host-a (.2) and one on host-b (.3)."""
    return [
        network_created(ip_range=RANGE, vni=7),
        endpoint_added(EP_1, ip="198.18.0.2/24", hostname=HOST_A),
        activated(EP_1),
        endpoint_added(EP_2, ip="198.18.0.3/24", hostname=HOST_B),
        activated(EP_2),
    ]


class TestDesired:
    def test_network_with_a_local_endpoint_gets_namespace_bridge_vxlan_veth_and_peers(self) -> None:
        """A local active endpoint brings its network's overlay, its veth, and the remote peer's entries."""
        state = desired(history(*local_and_remote()), HOST)
        [veth] = state.veths
        assert (
            HostState(
                namespaces=frozenset({Netns(OVERLAY)}),
                bridges=frozenset({Bridge(netns=OVERLAY, mtu=1450)}),
                vxlans=frozenset({Vxlan(netns=OVERLAY, vni=7, local=HOST_IPS[HOST_A], port=4789, mtu=1450)}),
                veths=frozenset({veth}),
                addresses=frozenset(
                    {
                        Address(netns=OVERLAY, dev="br0", cidr="198.18.0.1/24"),
                        Address(netns=NETNS, dev=veth.target_name, cidr="198.18.0.2/24"),
                    }
                ),
                neighbours=frozenset({Neigh(netns=OVERLAY, ip="198.18.0.3", mac="02:84:c6:12:00:03")}),
                fdb=frozenset({Fdb(netns=OVERLAY, mac="02:84:c6:12:00:03", dst=HOST_IPS[HOST_B])}),
            )
            == state
        )
        assert (EP_1, NETNS, OVERLAY) == (veth.endpoint_id, veth.target_netns, veth.overlay_netns)

    def test_the_other_host_sees_the_mirror_image(self) -> None:
        """host-b gets its own veth and host-a's endpoint as its peer."""
        state = desired(history(*local_and_remote()), HostConfig(hostname=HOST_B, host_ip=HOST_IPS[HOST_B]))
        assert ([EP_2], [HOST_IPS[HOST_A]]) == (
            [v.endpoint_id for v in state.veths],
            [f.dst for f in state.fdb],
        )

    def test_a_network_without_local_endpoint_is_not_built_here(self) -> None:
        """Only remote endpoints: nothing on this host, not even peer entries."""
        events: list[Event] = [
            network_created(ip_range=RANGE),
            endpoint_added(EP_2, ip="198.18.0.3/24", hostname=HOST_B),
            activated(EP_2),
        ]
        assert HostState() == desired(history(*events), HOST)

    def test_inactive_local_endpoint_keeps_the_overlay_but_no_veth(self) -> None:
        """A passive local endpoint: the network's overlay exists, its device does not."""
        events: list[Event] = [*local_and_remote(), deactivated(EP_1)]
        state = desired(history(*events), HOST)
        assert (1, 0, 1) == (len(state.namespaces), len(state.veths), len(state.neighbours))

    def test_inactive_or_removed_peers_are_pruned(self) -> None:
        """A remote endpoint deactivated or removed leaves no neighbour or FDB entry."""
        for gone in (deactivated(EP_2), removed(EP_2, ip="198.18.0.3/24")):
            state = desired(history(*local_and_remote(), gone), HOST)
            assert (frozenset(), frozenset()) == (state.neighbours, state.fdb)

    def test_last_local_endpoint_removed_removes_the_overlay(self) -> None:
        """With no local endpoint left in the network, nothing of it is desired here."""
        state = desired(history(*local_and_remote(), removed(EP_1, ip="198.18.0.2/24")), HOST)
        assert HostState() == state

    def test_a_shared_mac_points_at_one_host_only(self) -> None:
        """Two remote endpoints with one MAC (an imported log): the lowest endpoint id wins."""
        mac = "02:00:00:00:00:aa"
        events: list[Event] = [
            *local_and_remote()[:3],
            endpoint_added(EP_3, ip="198.18.0.4/24", hostname=HOST_C, mac=mac),
            activated(EP_3),
            endpoint_added(EP_2, ip="198.18.0.3/24", hostname=HOST_B, mac=mac),
            activated(EP_2),
        ]
        state = desired(history(*events), HOST)
        assert [Fdb(netns=OVERLAY, mac=mac, dst=HOST_IPS[HOST_B])] == list(state.fdb)

    def test_two_networks_are_kept_apart(self) -> None:
        """Each network gets its own namespace, and peers only in their own."""
        events: list[Event] = [
            *local_and_remote(),
            network_created(NET_B, ip_range=RANGE, vni=8),
            endpoint_added(EP_3, network_id=NET_B, ip="198.18.0.2/24", hostname=HOST_A),
            activated(EP_3, network_id=NET_B),
        ]
        state = desired(history(*events), HOST)
        assert {OVERLAY, f"/var/run/netns/sc-ns-{NET_B}"} == {n.path for n in state.namespaces}
        assert {OVERLAY} == {n.netns for n in state.neighbours}
