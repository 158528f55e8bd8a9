"""The projections: pure folds of the log into the catalog, VNI, IPAM, endpoint and peer views."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import hypothesis
import msgspec
import pytest
from hypothesis import strategies as st

from sand_es.commands import (
    ActivateEndpoint,
    AddEndpoint,
    Command,
    CreateNetwork,
    DeactivateEndpoint,
    DeleteNetwork,
    Policy,
    RemoveEndpoint,
    decide,
)
from sand_es.errors import LogCorrupt, Rejected
from sand_es.events import CODEC, Event, Position, Record
from sand_es.projections import EMPTY, Network, Peer, Pool, Snapshot, SnapshotBuilder, encode_hook, fold
from sand_es.projections.stored import decode_snapshot, encode_snapshot
from tests.unit.builders import (
    EP_1,
    EP_2,
    EP_3,
    EP_4,
    HOST_A,
    HOST_B,
    HOST_C,
    HOST_IPS,
    NET_A,
    NET_B,
    NET_C,
    NETNS,
    activated,
    deactivated,
    endpoint_added,
    ident,
    network_created,
    network_deleted,
    removed,
)
from tests.unit.gwt import ACTOR, AT, extend, history, records


def ip(text: str) -> int:
    """An IPv4 address as the integer pools keep."""
    return int(ipaddress.IPv4Address(text))


def pool_of(snapshot: Snapshot, network_id: str = NET_A) -> Pool:
    """The pool of a network, which the test expects to exist."""
    pool = snapshot.addresses.get(network_id)
    assert pool is not None
    return pool


def add_endpoints(snapshot: Snapshot, count: int, network_id: str = NET_A) -> tuple[Snapshot, list[str]]:
    """Add `count` endpoints one command at a time, as agents would; their addresses in order."""
    addresses = []
    for _ in range(count):
        new_id = ident(snapshot.position.seq + 1)
        events = decide(snapshot, AddEndpoint(network_id=network_id, hostname=HOST_A), new_id=new_id)
        addresses.append(events[0].target_veth_ip)  # type: ignore[union-attr]
        snapshot = extend(snapshot, *events)
    return snapshot, addresses


class TestNetworkCatalog:
    """Networks by id."""

    def test_created_network_is_listed(self) -> None:
        """A created network appears with its fields, creation time and creating agent."""
        snapshot = history(network_created(NET_A, ip_range="198.18.0.0/16", vni=7, mtu=9000))
        expected = Network(
            network_id=NET_A,
            name=f"net-sc-{NET_A}",
            type="overlay",
            ip_range="198.18.0.0/16",
            gateway="198.18.0.1/16",
            vxlan_vni=7,
            mtu=9000,
            ns_handle_path=f"/var/run/netns/sc-ns-{NET_A}",
            created_at=AT,
            created_by=ACTOR,
        )
        assert expected == snapshot.networks.get(NET_A)

    def test_deleted_network_is_gone(self) -> None:
        """A deleted network is no longer listed; the others stay."""
        snapshot = history(network_created(NET_A), network_created(NET_B, vni=2), network_deleted(NET_A))
        assert list(snapshot.networks.networks) == [NET_B]

    def test_unknown_network(self) -> None:
        """Looking up an id never created gives None."""
        assert history(network_created(NET_A)).networks.get(NET_B) is None

    def test_catalog_is_stamped_with_the_position(self) -> None:
        """The catalog records the position of the last record folded."""
        assert Position(2, 2) == history(network_created(NET_A), network_created(NET_B)).networks.position


class TestVniTable:
    """Which VXLAN identifiers are taken, and the lowest free one."""

    @pytest.mark.parametrize(
        ("events", "maximum", "expected"),
        [
            ([], 999_999, 1),
            ([network_created(NET_A, vni=1), network_created(NET_B, vni=2)], 999_999, 3),
            ([network_created(NET_A, vni=2)], 999_999, 1),
            (
                [network_created(NET_A, vni=1), network_created(NET_B, vni=2), network_deleted(NET_A)],
                999_999,
                1,
            ),
            (
                [
                    network_created(NET_A, vni=1),
                    network_created(NET_B, vni=2),
                    network_created(NET_C, vni=3),
                    network_deleted(NET_B),
                ],
                999_999,
                2,
            ),
            ([network_created(NET_A, vni=1), network_created(NET_B, vni=2)], 2, None),
            ([network_created(NET_A, vni=1), network_created(NET_B, vni=2)], 3, 3),
            ([network_created(NET_A, vni=1)], 0, None),
        ],
        ids=[
            "empty-gives-1",
            "after-1-and-2",
            "below-a-taken-one",
            "reuses-first-gap",
            "reuses-middle-gap",
            "all-taken-up-to-maximum",
            "maximum-inclusive",
            "maximum-zero",
        ],
    )
    def test_lowest_free(self, events: Sequence[Event], maximum: int, expected: int | None) -> None:
        """The lowest VNI no network holds, within [1, maximum], reusing gaps first."""
        assert expected == history(*events).vnis.lowest_free(maximum)

    def test_tables_both_ways(self) -> None:
        """The table maps VNI to network and network to VNI."""
        vnis = history(network_created(NET_A, vni=4), network_created(NET_B, vni=9)).vnis
        assert (dict(vnis.owners), dict(vnis.of_network)) == ({4: NET_A, 9: NET_B}, {NET_A: 4, NET_B: 9})

    def test_duplicate_released_by_owner(self) -> None:
        """With a VNI duplicated by an imported log, deleting both networks frees it."""
        snapshot = history(
            network_created(NET_A, vni=1),
            network_created(NET_B, vni=1),
            network_deleted(NET_A),
            network_deleted(NET_B),
        )
        assert snapshot.vnis.lowest_free(10) == 1

    def test_duplicate_not_released_by_the_other_holder(self) -> None:
        """Deleting the first of two networks sharing a VNI leaves the VNI taken by the second."""
        snapshot = history(
            network_created(NET_A, vni=1), network_created(NET_B, vni=1), network_deleted(NET_A)
        )
        assert (snapshot.vnis.lowest_free(10), dict(snapshot.vnis.owners)) == (2, {1: NET_B})

    def test_duplicate_stays_taken_while_any_holder_remains(self) -> None:
        """Deleting the later of two networks sharing a VNI leaves the VNI taken by the earlier one."""
        snapshot = history(
            network_created(NET_A, vni=1), network_created(NET_B, vni=1), network_deleted(NET_B)
        )
        assert snapshot.vnis.lowest_free(10) == 2


class TestPool:
    """One network's pool: reserved addresses, capacity and the next free address."""

    @pytest.mark.parametrize(
        ("ip_range", "gateway", "expected"),
        [
            ("10.0.0.0/24", None, ("10.0.0.0", "10.0.0.255", "10.0.0.1", 253)),
            ("10.0.0.0/30", None, ("10.0.0.0", "10.0.0.3", "10.0.0.1", 1)),
            ("10.0.0.0/29", "10.0.0.6/29", ("10.0.0.0", "10.0.0.7", "10.0.0.6", 5)),
            ("172.16.0.0/16", None, ("172.16.0.0", "172.16.255.255", "172.16.0.1", 65_533)),
            ("10.0.0.0/8", None, ("10.0.0.0", "10.255.255.255", "10.0.0.1", 16_777_213)),
        ],
        ids=["/24", "/30", "/29-gateway-last", "/16", "/8"],
    )
    def test_bounds_and_capacity(
        self, ip_range: str, gateway: str | None, expected: tuple[str, str, str, int]
    ) -> None:
        """A pool spans its range, reserves network, broadcast and gateway, and holds the rest."""
        pool = pool_of(history(network_created(ip_range=ip_range, gateway=gateway)))
        actual = (
            str(ipaddress.IPv4Address(pool.base)),
            str(ipaddress.IPv4Address(pool.broadcast)),
            str(ipaddress.IPv4Address(pool.gateway)),
            pool.capacity,
        )
        assert expected == actual

    @pytest.mark.parametrize(
        ("address", "expected"),
        [
            ("10.0.0.0", True),
            ("10.0.0.1", True),
            ("10.0.0.255", True),
            ("10.0.0.2", False),
            ("10.0.0.254", False),
        ],
        ids=["network", "gateway", "broadcast", "first-host", "last-host"],
    )
    def test_reserved(self, address: str, expected: bool) -> None:
        """Network, broadcast and gateway addresses are reserved; every other address is not."""
        assert expected == pool_of(history(network_created())).is_reserved(ip(address))

    @pytest.mark.parametrize(
        ("address", "expected"),
        [("9.255.255.255", False), ("10.0.0.0", True), ("10.0.0.255", True), ("10.0.1.0", False)],
        ids=["below", "first", "last", "above"],
    )
    def test_contains(self, address: str, expected: bool) -> None:
        """A pool contains exactly the addresses of its range."""
        assert expected == pool_of(history(network_created())).contains(ip(address))

    @pytest.mark.parametrize(
        ("ip_range", "gateway", "taken", "expected"),
        [
            ("10.0.0.0/24", None, [], "10.0.0.2"),
            ("10.0.0.0/24", "10.0.0.254/24", [], "10.0.0.1"),
            ("10.0.0.0/24", None, ["10.0.0.2/24", "10.0.0.3/24"], "10.0.0.4"),
            ("10.0.0.0/24", None, ["10.0.0.3/24"], "10.0.0.2"),
            ("10.0.0.0/30", None, [], "10.0.0.2"),
            ("10.0.0.0/30", "10.0.0.2/30", [], "10.0.0.1"),
            ("10.0.0.0/30", None, ["10.0.0.2/30"], None),
            ("10.0.0.0/29", "10.0.0.6/29", [f"10.0.0.{n}/29" for n in range(1, 6)], None),
            ("10.0.0.0/29", "10.0.0.3/29", ["10.0.0.1/29", "10.0.0.2/29"], "10.0.0.4"),
            ("10.0.0.0/24", None, [f"10.0.0.{n}/24" for n in range(2, 255)], None),
        ],
        ids=[
            "empty",
            "gateway-last",
            "after-taken",
            "hole-below",
            "/30-one-host-left",
            "/30-gateway-second",
            "/30-full",
            "/29-full",
            "skips-gateway",
            "/24-full",
        ],
    )
    def test_next_free(
        self, ip_range: str, gateway: str | None, taken: list[str], expected: str | None
    ) -> None:
        """The lowest address that is neither reserved nor held, or None when the pool is full."""
        events = [endpoint_added(ident(n + 1), ip=a) for n, a in enumerate(taken)]
        pool = pool_of(history(network_created(ip_range=ip_range, gateway=gateway), *events))
        free = pool.next_free()
        assert expected == (None if free is None else str(ipaddress.IPv4Address(free)))


class TestAddressTable:
    """Pools by network, as endpoints take and release addresses."""

    def test_endpoint_holds_its_address(self) -> None:
        """An added endpoint holds its address in its network's pool only."""
        snapshot = history(
            network_created(NET_A),
            network_created(NET_B, vni=2),
            endpoint_added(EP_1, ip="10.0.0.7/24"),
        )
        actual = (
            pool_of(snapshot, NET_A).holder(ip("10.0.0.7")),
            pool_of(snapshot, NET_B).holder(ip("10.0.0.7")),
        )
        assert actual == (EP_1, None)

    def test_removal_frees_the_address_for_the_next_allocation(self) -> None:
        """An address freed by a removal is the next one handed out."""
        snapshot, _ = add_endpoints(history(network_created()), 3)
        holder = pool_of(snapshot).holder(ip("10.0.0.3"))
        assert holder is not None
        snapshot = extend(snapshot, removed(holder, ip="10.0.0.3/24"))
        _, addresses = add_endpoints(snapshot, 2)
        assert addresses == ["10.0.0.3/24", "10.0.0.5/24"]

    def test_removal_without_address_frees_by_endpoint(self) -> None:
        """A removal that does not name the address (a hand-made log) still frees the endpoint's."""
        snapshot = history(
            network_created(),
            endpoint_added(EP_1, ip="10.0.0.2/24"),
            endpoint_added(EP_2, ip="10.0.0.3/24"),
            removed(EP_1, ip=""),
        )
        pool = pool_of(snapshot)
        assert ({ip("10.0.0.3"): EP_2}, ip("10.0.0.2")) == (dict(pool.allocated), pool.next_free())

    def test_removal_of_another_holder_frees_nothing(self) -> None:
        """A removal naming an address held by another endpoint leaves that address held."""
        snapshot = history(
            network_created(), endpoint_added(EP_1, ip="10.0.0.2/24"), removed(EP_2, ip="10.0.0.2/24")
        )
        assert pool_of(snapshot).holder(ip("10.0.0.2")) == EP_1

    def test_network_deletion_drops_the_pool(self) -> None:
        """A deleted network has no pool, and a network created again under its id starts empty."""
        deleted = history(network_created(), endpoint_added(EP_1), removed(EP_1), network_deleted())
        recreated = extend(deleted, network_created(ip_range="10.9.0.0/24"))
        expected: tuple[None, int, dict[int, str]] = (None, ip("10.9.0.2"), {})
        assert expected == (
            deleted.addresses.get(NET_A),
            pool_of(recreated).next_free(),
            pool_of(recreated).allocated,
        )

    def test_slash_16_allocates_past_the_third_octet(self) -> None:
        """300 endpoints in a /16 get 300 distinct, consecutive addresses inside it (SAND's ordinal bug)."""
        network = ipaddress.IPv4Network("10.1.0.0/16")
        _, addresses = add_endpoints(history(network_created(ip_range=str(network))), 300)
        expected = [f"{network[n]}/16" for n in range(2, 302)]
        assert expected == addresses

    def test_slash_16_explicit_addresses_do_not_collide(self) -> None:
        """In a /16, explicit addresses whose octets sum alike are held by distinct endpoints."""
        snapshot = history(
            network_created(ip_range="10.1.0.0/16"),
            endpoint_added(EP_1, ip="10.1.1.2/16"),
            endpoint_added(EP_2, ip="10.1.0.3/16"),
            endpoint_added(EP_3, ip="10.1.2.0/16"),
        )
        pool = pool_of(snapshot)
        expected = {ip("10.1.1.2"): EP_1, ip("10.1.0.3"): EP_2, ip("10.1.2.0"): EP_3}
        assert (expected, ip("10.1.0.2")) == (dict(pool.allocated), pool.next_free())

    def test_slash_16_release_frees_exactly_that_address(self) -> None:
        """Releasing 10.1.1.0 in a full-ish /16 frees that address and no other."""
        snapshot, _ = add_endpoints(history(network_created(ip_range="10.1.0.0/16")), 300)
        holder = pool_of(snapshot).holder(ip("10.1.1.0"))
        assert holder is not None
        snapshot = extend(snapshot, removed(holder, ip="10.1.1.0/16"))
        pool = pool_of(snapshot)
        assert (299, ip("10.1.1.0")) == (len(pool.allocated), pool.next_free())

    def test_slash_8(self) -> None:
        """A /8 hands out its first hosts in order and honours an address near its end."""
        snapshot = history(
            network_created(ip_range="10.0.0.0/8"), endpoint_added(EP_1, ip="10.255.255.254/8")
        )
        _, addresses = add_endpoints(snapshot, 3)
        expected = (["10.0.0.2/8", "10.0.0.3/8", "10.0.0.4/8"], EP_1)
        assert expected == (addresses, pool_of(snapshot).holder(ip("10.255.255.254")))


class TestEndpointCatalog:
    """Endpoints by id, with their activation state."""

    def test_added_endpoint_is_inactive(self) -> None:
        """An added endpoint is listed, not active, with no namespace and its creation time."""
        endpoint = history(network_created(), endpoint_added(EP_1, hostname=HOST_B)).endpoints.get(EP_1)
        assert endpoint is not None
        expected = (False, "", "", HOST_B, HOST_IPS[HOST_B], "10.0.0.2/24", "02:84:0a:00:00:02", AT)
        actual = (
            endpoint.active,
            endpoint.target_netns_path,
            endpoint.inactive_reason,
            endpoint.hostname,
            endpoint.host_ip,
            endpoint.target_veth_ip,
            endpoint.target_veth_mac,
            endpoint.created_at,
        )
        assert expected == actual

    @pytest.mark.parametrize(
        ("after", "expected"),
        [
            ([activated(EP_1)], (True, NETNS, "")),
            ([activated(EP_1), deactivated(EP_1, reason="netns gone")], (False, "", "netns gone")),
            (
                [
                    activated(EP_1),
                    deactivated(EP_1, reason="netns gone"),
                    activated(EP_1, path="/run/netns/x"),
                ],
                (True, "/run/netns/x", ""),
            ),
            ([deactivated(EP_1, reason="asked")], (False, "", "asked")),
        ],
        ids=["activated", "deactivated", "reactivated-clears-reason", "deactivated-while-inactive"],
    )
    def test_activation_state(self, after: Sequence[Event], expected: tuple[bool, str, str]) -> None:
        """Activation sets the namespace; deactivation clears it and records the reason."""
        endpoint = history(network_created(), endpoint_added(EP_1), *after).endpoints.get(EP_1)
        assert endpoint is not None
        assert expected == (endpoint.active, endpoint.target_netns_path, endpoint.inactive_reason)

    def test_removed_endpoint_is_gone(self) -> None:
        """A removed endpoint is no longer listed."""
        snapshot = history(network_created(), endpoint_added(EP_1), activated(EP_1), removed(EP_1))
        assert (snapshot.endpoints.get(EP_1), snapshot.endpoints.endpoints) == (None, {})

    def test_events_for_unknown_endpoints_are_ignored(self) -> None:
        """Activating or deactivating an endpoint never added leaves the catalog empty."""
        snapshot = history(network_created(), activated(EP_1), deactivated(EP_2))
        assert snapshot.endpoints.endpoints == {}

    @pytest.mark.parametrize(
        ("network_id", "hostname", "expected"),
        [
            (None, None, {EP_1, EP_2, EP_3, EP_4}),
            (NET_A, None, {EP_1, EP_2}),
            (None, HOST_A, {EP_1, EP_3}),
            (NET_A, HOST_A, {EP_1}),
            (NET_B, HOST_B, {EP_4}),
            (NET_C, None, set()),
            (NET_A, HOST_C, set()),
        ],
        ids=["no-filter", "network", "host", "both", "both-other", "unknown-network", "no-match"],
    )
    def test_select(self, network_id: str | None, hostname: str | None, expected: set[str]) -> None:
        """Selection keeps the endpoints matching every filter given, and all of them with none."""
        snapshot = history(
            network_created(NET_A),
            network_created(NET_B, vni=2),
            endpoint_added(EP_1, network_id=NET_A, hostname=HOST_A, ip="10.0.0.2/24"),
            endpoint_added(EP_2, network_id=NET_A, hostname=HOST_B, ip="10.0.0.3/24"),
            endpoint_added(EP_3, network_id=NET_B, hostname=HOST_A, ip="10.0.0.2/24"),
            endpoint_added(EP_4, network_id=NET_B, hostname=HOST_B, ip="10.0.0.3/24"),
        )
        actual = {e.endpoint_id for e in snapshot.endpoints.select(network_id=network_id, hostname=hostname)}
        assert expected == actual


def peer(endpoint_id: str, *, network_id: str = NET_A, hostname: str = HOST_A, ip: str = "10.0.0.2") -> Peer:
    """The peer entry of an endpoint added by `endpoint_added` with these values."""
    return Peer(
        endpoint_id=endpoint_id,
        network_id=network_id,
        hostname=hostname,
        host_ip=HOST_IPS[hostname],
        ip=ip,
        mac="02:84:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed),
    )


#: Two networks; NET_A has endpoints on two hosts, NET_B one; all active.
PEERED: list[Event] = [
    network_created(NET_A),
    network_created(NET_B, vni=2),
    endpoint_added(EP_1, hostname=HOST_A, ip="10.0.0.2/24"),
    endpoint_added(EP_2, hostname=HOST_B, ip="10.0.0.3/24"),
    endpoint_added(EP_3, hostname=HOST_B, ip="10.0.0.4/24"),
    endpoint_added(EP_4, network_id=NET_B, hostname=HOST_C, ip="10.0.0.2/24"),
    activated(EP_1),
    activated(EP_2),
    activated(EP_3),
    activated(EP_4, network_id=NET_B),
]


class TestPeerMap:
    """Active endpoints by network, then host, then endpoint."""

    def test_groups_active_endpoints(self) -> None:
        """Active endpoints are grouped by network, host and endpoint id, with bare IP and MAC."""
        expected = {
            NET_A: {
                HOST_A: {EP_1: peer(EP_1)},
                HOST_B: {
                    EP_2: peer(EP_2, hostname=HOST_B, ip="10.0.0.3"),
                    EP_3: peer(EP_3, hostname=HOST_B, ip="10.0.0.4"),
                },
            },
            NET_B: {HOST_C: {EP_4: peer(EP_4, network_id=NET_B, hostname=HOST_C)}},
        }
        assert expected == history(*PEERED).peers.networks

    def test_inactive_endpoints_are_known_but_not_peers(self) -> None:
        """An endpoint never activated is known (for a later activation) but is nobody's peer."""
        peers = history(network_created(), endpoint_added(EP_1)).peers
        assert ({}, {EP_1: peer(EP_1)}) == (peers.hosts(NET_A), dict(peers.known))

    def test_remote_peers_exclude_the_host(self) -> None:
        """Remote peers are the active endpoints of the network on every other host."""
        peers = history(*PEERED).peers
        actual = sorted(p.endpoint_id for p in peers.remote_peers(NET_A, HOST_B))
        assert actual == [EP_1]

    def test_remote_peers_of_an_outside_host(self) -> None:
        """A host with no endpoint in the network sees all of the network's active endpoints."""
        actual = sorted(p.endpoint_id for p in history(*PEERED).peers.remote_peers(NET_A, HOST_C))
        assert actual == [EP_1, EP_2, EP_3]

    @pytest.mark.parametrize(
        ("after", "expected"),
        [
            ([deactivated(EP_2)], {HOST_A: {EP_1}, HOST_B: {EP_3}}),
            ([removed(EP_3, ip="10.0.0.4/24")], {HOST_A: {EP_1}, HOST_B: {EP_2}}),
            ([deactivated(EP_2), removed(EP_3, ip="10.0.0.4/24")], {HOST_A: {EP_1}}),
            ([deactivated(EP_1)], {HOST_B: {EP_2, EP_3}}),
            ([deactivated(EP_1), activated(EP_1)], {HOST_A: {EP_1}, HOST_B: {EP_2, EP_3}}),
            ([deactivated(EP_1), deactivated(EP_2), deactivated(EP_3)], {}),
        ],
        ids=[
            "deactivate",
            "remove",
            "host-emptied",
            "other-host-emptied",
            "reactivate",
            "all-gone",
        ],
    )
    def test_pruning(self, after: Sequence[Event], expected: dict[str, set[str]]) -> None:
        """Deactivation and removal prune a peer, and a host left with none disappears."""
        for snapshot in (history(*PEERED, *after), extend(history(*PEERED), *after)):
            actual = {host: set(peers) for host, peers in snapshot.peers.hosts(NET_A).items()}
            assert expected == actual

    def test_network_with_no_active_endpoint_is_absent(self) -> None:
        """A network whose last active endpoint left has no entry at all."""
        snapshot = extend(history(*PEERED), deactivated(EP_4, network_id=NET_B))
        assert list(snapshot.peers.networks) == [NET_A]

    def test_removed_endpoint_is_forgotten(self) -> None:
        """A removed endpoint leaves the known peers; a deactivated one stays known."""
        snapshot = extend(history(*PEERED), deactivated(EP_1), removed(EP_2, ip="10.0.0.3/24"))
        assert {EP_1, EP_3, EP_4} == set(snapshot.peers.known)

    @pytest.mark.parametrize("split", [True, False], ids=["separate-fold", "same-fold"])
    def test_network_deletion_drops_the_network(self, split: bool) -> None:
        """Deleting a network drops all of its peers, even when it arrives in the same batch."""
        deleted = network_deleted(NET_B)
        snapshot = extend(history(*PEERED), deleted) if split else history(*PEERED, deleted)
        assert (list(snapshot.peers.networks), snapshot.peers.hosts(NET_B)) == ([NET_A], {})


class TestFold:
    """`fold`: idempotent, gap-refusing, and pure."""

    def test_a_table_no_event_touched_keeps_its_identity(self) -> None:
        """Folding endpoint events hands the network table back as the same object (readers cache on it)."""
        before = history(network_created())
        after = extend(before, endpoint_added(EP_1))
        assert (True, False) == (
            after.networks.networks is before.networks.networks,
            after.endpoints.endpoints is before.endpoints.endpoints,
        )

    def test_position(self) -> None:
        """The snapshot and every view sit at the last record's seq and revision."""
        log = [Record(r.seq, 10 + 2 * r.seq, r.envelope) for r in records(PEERED)]
        snapshot = fold(EMPTY, log)
        views = (snapshot.networks, snapshot.endpoints, snapshot.vnis, snapshot.addresses, snapshot.peers)
        expected = [Position(10, 30)] * 6
        assert expected == [snapshot.position, *(v.position for v in views)]

    def test_redelivered_records_are_skipped(self) -> None:
        """Records at or before the snapshot's position change nothing."""
        log = records(PEERED)
        once = fold(EMPTY, log)
        overlapping = fold(fold(EMPTY, log[:6]), log[2:])
        assert (once, once) == (fold(once, log), overlapping)

    def test_fold_of_nothing_new_is_the_same_snapshot(self) -> None:
        """Folding only already-seen records returns the very snapshot passed in."""
        log = records(PEERED)
        snapshot = fold(EMPTY, log)
        assert fold(snapshot, log[3:]) is snapshot

    @pytest.mark.parametrize(
        ("start", "batch", "message"),
        [
            (0, [2, 3], "event 1 missing before 2"),
            (3, [4, 6], "event 5 missing before 6"),
            (3, [5], "event 4"),
        ],
        ids=["from-empty", "inside-batch", "after-snapshot"],
    )
    def test_gap_is_refused(self, start: int, batch: list[int], message: str) -> None:
        """A record that would skip a sequence number raises `LogCorrupt`."""
        log = records(PEERED)
        snapshot = fold(EMPTY, log[:start])
        with pytest.raises(LogCorrupt, match=f"log gap: {message}"):
            fold(snapshot, [log[seq - 1] for seq in batch])

    def test_input_snapshot_is_never_changed(self) -> None:
        """Folding more records leaves the snapshot passed in exactly as it was."""
        snapshot = history(*PEERED)
        before = msgspec.json.encode(snapshot, enc_hook=encode_hook)
        more: list[Event] = [
            deactivated(EP_1),
            activated(EP_1, path="/run/netns/other"),
            endpoint_added(EP_1 + "-x", ip="10.0.0.9/24"),
            activated(EP_1 + "-x"),
            removed(EP_2, ip="10.0.0.3/24"),
            deactivated(EP_4, network_id=NET_B),
            removed(EP_4, network_id=NET_B),
            network_deleted(NET_B),
            network_created(NET_C, vni=2),
        ]
        after = extend(snapshot, *more)
        assert (before, True) == (msgspec.json.encode(snapshot, enc_hook=encode_hook), after != snapshot)

    def test_builder_snapshots_stay_intact(self) -> None:
        """A snapshot built midway by a builder is not changed by records the builder adds later."""
        log = records([*PEERED, deactivated(EP_1), removed(EP_3, ip="10.0.0.4/24"), network_deleted(NET_B)])
        builder = SnapshotBuilder(EMPTY)
        builder.add(log[:8])
        first = builder.build()
        before = msgspec.json.encode(first, enc_hook=encode_hook)
        builder.add(log[8:])
        last = builder.build()
        assert (before, fold(EMPTY, log)) == (msgspec.json.encode(first, enc_hook=encode_hook), last)


# ---- property: any valid history folds the same, however it is cut into batches ----

RANGES = ["10.0.0.0/29", "10.0.0.0/30", "10.1.0.0/16"]
HOSTS = [HOST_A, HOST_B]
POLICY = Policy(max_vni=4)

Step = tuple[str, int, int]

steps = st.tuples(
    st.sampled_from(
        ["create", "delete", "add", "add-active", "add-active", "remove", "activate", "deactivate"]
    ),
    st.integers(0, 7),
    st.integers(0, 3),
)
#: Plans start with a /16 network so that most later steps have something to act on.
plans = st.lists(steps, min_size=3, max_size=60).map(lambda plan: [("create", 0, 2), *plan])


def _command(snapshot: Snapshot, step: Step) -> Command:
    kind, pick, choice = step
    networks = sorted(snapshot.networks.networks)
    endpoints = sorted(snapshot.endpoints.endpoints)
    network_id = networks[pick % len(networks)] if networks else NET_A
    endpoint_id = endpoints[pick % len(endpoints)] if endpoints else EP_1
    path = f"/var/run/netns/c{choice}"
    match kind:
        case "create":
            return CreateNetwork(ip_range=RANGES[choice % len(RANGES)])
        case "delete":
            return DeleteNetwork(network_id=network_id)
        case "add" | "add-active":
            host = HOSTS[choice % len(HOSTS)]
            activate = kind == "add-active"
            return AddEndpoint(
                network_id=network_id, hostname=host, activate=activate, target_netns_path=path
            )
        case "remove":
            return RemoveEndpoint(endpoint_id=endpoint_id)
        case "activate":
            return ActivateEndpoint(endpoint_id=endpoint_id, target_netns_path=path)
        case _:
            return DeactivateEndpoint(endpoint_id=endpoint_id, reason=f"r{choice}")


def decided_history(plan: Sequence[Step]) -> list[Record]:
    """The records of a log written by deciding each step's command; refused ones write nothing."""
    snapshot = EMPTY
    log: list[Record] = []
    for n, step in enumerate(plan, start=1):
        try:
            events = decide(snapshot, _command(snapshot, step), new_id=ident(n), policy=POLICY)
        except Rejected:
            continue
        envelopes = [
            CODEC.envelope(e, event_id=f"e{len(log) + i}", at=AT, actor=ACTOR, command_id=f"c{n}")
            for i, e in enumerate(events)
        ]
        # One command's events share one revision, as one etcd transaction writes them.
        new = [Record(len(log) + i, 100 + n, envelope) for i, envelope in enumerate(envelopes, start=1)]
        log += new
        snapshot = fold(snapshot, new)
    return log


class TestFoldProperty:
    """However a valid history is cut into batches, the fold reaches the same snapshot."""

    @hypothesis.settings(max_examples=150, deadline=None, database=None)
    @hypothesis.given(plan=plans, data=st.data())
    def test_batching_does_not_matter(self, plan: list[Step], data: st.DataObject) -> None:
        """One batch, one record at a time and random chunks all give the same snapshot."""
        log = decided_history(plan)
        cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(log) - 1))), label="cuts"))
        chunks = [log[a:b] for a, b in zip([0, *cuts], [*cuts, len(log)], strict=True)]

        one_by_one = EMPTY
        for record in log:
            one_by_one = fold(one_by_one, [record])
        chunked = EMPTY
        for chunk in chunks:
            chunked = fold(chunked, chunk)
        batch = fold(EMPTY, log)

        assert batch == one_by_one
        assert batch == chunked

    def test_histories_are_rich(self) -> None:
        """The history strategy reaches every event type (so the property above exercises them all)."""
        plan: list[Step] = [
            ("create", 0, 0),
            ("add", 0, 0),
            ("add-active", 0, 1),
            ("deactivate", 1, 0),
            ("activate", 1, 0),
            ("remove", 0, 0),
            ("remove", 0, 0),
            ("delete", 0, 0),
        ]
        actual = [r.envelope.type for r in decided_history(plan)]
        expected = [
            "network.created",
            "endpoint.added",
            "endpoint.added",
            "endpoint.activated",
            "endpoint.deactivated",
            "endpoint.activated",
            "endpoint.removed",
            "endpoint.removed",
            "network.deleted",
        ]
        assert expected == actual


class TestStoredSnapshotProperty:
    """An agent starting from a stored snapshot and folding the rest sees what a full replay sees."""

    @hypothesis.settings(max_examples=150, deadline=None, database=None)
    @hypothesis.given(plan=plans, data=st.data())
    def test_snapshot_then_tail_equals_full_replay(self, plan: list[Step], data: st.DataObject) -> None:
        """Cut anywhere: store the prefix's snapshot, decode it, fold the rest; the views are identical."""
        log = decided_history(plan)
        cut = data.draw(st.integers(0, len(log)), label="cut")
        stored = encode_snapshot(fold(EMPTY, log[:cut]))
        resumed = fold(decode_snapshot(stored), log[cut:])
        full = fold(EMPTY, log)
        assert full == resumed
        assert full.position == resumed.position

    def test_a_damaged_payload_is_refused_not_misread(self) -> None:
        """Bytes that are not a snapshot of this schema raise LogCorrupt."""
        payload = encode_snapshot(fold(EMPTY, decided_history([("create", 0, 2), ("add-active", 0, 0)])))
        with pytest.raises(LogCorrupt):
            decode_snapshot(payload[: len(payload) // 2])
        with pytest.raises(LogCorrupt):
            decode_snapshot(msgspec.msgpack.encode({"position": "yesterday"}))
