"""The deciders, given → when → then: past events, one command, the events it decides or its refusal."""

from __future__ import annotations

import hashlib
import ipaddress

import pytest

import sand_es.commands
import sand_es.projections
from sand_es.commands import (
    ActivateEndpoint,
    AddEndpoint,
    CreateNetwork,
    DeactivateEndpoint,
    DeleteNetwork,
    Policy,
    RemoveEndpoint,
)
from sand_es.commands.naming import overlay_veth_mac, overlay_veth_name, target_veth_name
from sand_es.errors import Conflicting, Invalid, NotFound, Rejected
from sand_es.events import (
    EndpointActivated,
    EndpointAdded,
    EndpointDeactivated,
    EndpointRemoved,
    Event,
    NetworkCreated,
    NetworkDeleted,
)
from tests.unit.builders import (
    EP_1,
    EP_2,
    HOST_A,
    HOST_B,
    HOST_IPS,
    NET_A,
    NET_B,
    NETNS,
    activated,
    deactivated,
    endpoint_added,
    ident,
    network_created,
    network_deleted,
    removed,
)
from tests.unit.gwt import NEW_ID, given

#: `NEW_ID` without dashes, cut to the 10 hex digits device names carry.
NEW_HEX = "5e7d2c1a9b"


def created(network_id: str = NEW_ID, **fields: object) -> NetworkCreated:
    """The `NetworkCreated` of SAND's defaults, with `fields` overriding them."""
    defaults: dict[str, object] = {
        "network_id": network_id,
        "name": f"net-sc-{network_id}",
        "type": "overlay",
        "ip_range": "10.0.0.0/24",
        "gateway": "10.0.0.1/24",
        "vxlan_vni": 1,
        "mtu": 1450,
        "ns_handle_path": f"/var/run/netns/sc-ns-{network_id}",
    }
    return NetworkCreated(**{**defaults, **fields})  # type: ignore[arg-type]


def added(ip: str = "10.0.0.2/24", mac: str = "02:84:0a:00:00:02", **fields: object) -> EndpointAdded:
    """The `EndpointAdded` for `NEW_ID` in `NET_A` on host A, with `fields` overriding."""
    defaults: dict[str, object] = {
        "endpoint_id": NEW_ID,
        "network_id": NET_A,
        "hostname": HOST_A,
        "host_ip": HOST_IPS[HOST_A],
        "api_hostname": "",
        "target_veth_ip": ip,
        "target_veth_mac": mac,
        "target_veth_name": f"sand{NEW_HEX}",
        "overlay_veth_name": f"sand{NEW_HEX}o",
        "overlay_veth_mac": overlay_veth_mac(NEW_ID),
        "mtu": 1450,
    }
    return EndpointAdded(**{**defaults, **fields})  # type: ignore[arg-type]


def add(**fields: object) -> AddEndpoint:
    """An `AddEndpoint` to `NET_A` from host A, with `fields` overriding."""
    defaults: dict[str, object] = {"network_id": NET_A, "hostname": HOST_A, "host_ip": HOST_IPS[HOST_A]}
    return AddEndpoint(**{**defaults, **fields})  # type: ignore[arg-type]


def filled(ip_range: str, count: int) -> list[Event]:
    """A network over `ip_range` (gateway first) with `count` endpoints on its lowest free addresses."""
    network = ipaddress.IPv4Network(ip_range)
    hosts = list(network.hosts())[1 : count + 1]
    return [
        network_created(ip_range=ip_range),
        *(endpoint_added(ident(n), ip=f"{a}/{network.prefixlen}") for n, a in enumerate(hosts, start=1)),
    ]


class TestCreateNetwork:
    """`CreateNetwork`: SAND's defaults, derived values, and the checks on what callers send."""

    def test_defaults(self) -> None:
        """With nothing given: the fresh id, 10.0.0.0/24, gateway .1/24, VNI 1, MTU 1450, SAND's names."""
        given().when(CreateNetwork(), new_id=NEW_ID).then(created())

    def test_policy_paths_and_mtu(self) -> None:
        """The namespace path and default MTU come from the agent's policy."""
        policy = Policy(netns_path="/run/netns/", netns_prefix="ovl-", default_mtu=1400)
        expected = created(ns_handle_path=f"/run/netns/ovl-{NEW_ID}", mtu=1400)
        given().when(CreateNetwork(), policy=policy).then(expected)

    @pytest.mark.parametrize(
        ("command", "ip_range", "gateway"),
        [
            (CreateNetwork(ip_range="172.16.0.0/16"), "172.16.0.0/16", "172.16.0.1/16"),
            (CreateNetwork(ip_range="198.18.4.0/30"), "198.18.4.0/30", "198.18.4.1/30"),
            (CreateNetwork(gateway="192.168.7.254/24"), "192.168.7.0/24", "192.168.7.254/24"),
            (CreateNetwork(gateway="10.20.30.40/8"), "10.0.0.0/8", "10.20.30.40/8"),
            (CreateNetwork(ip_range="10.1.0.0/24", gateway="10.1.0.254"), "10.1.0.0/24", "10.1.0.254/24"),
            (CreateNetwork(ip_range="10.1.0.0/24", gateway="10.1.0.9/24"), "10.1.0.0/24", "10.1.0.9/24"),
        ],
        ids=[
            "gateway-from-/16",
            "gateway-from-/30",
            "range-from-gateway",
            "range-from-gateway-/8",
            "bare-gateway-gets-prefix",
            "gateway-with-prefix",
        ],
    )
    def test_range_and_gateway(self, command: CreateNetwork, ip_range: str, gateway: str) -> None:
        """The gateway defaults to the range's first host; the range can come from a gateway with prefix."""
        given().when(command).then(created(ip_range=ip_range, gateway=gateway))

    def test_name_mtu_and_bounds_are_kept(self) -> None:
        """A given name is kept, and MTUs at both bounds are accepted."""
        given().when(CreateNetwork(name="backend", mtu=576)).then(created(name="backend", mtu=576))
        given().when(CreateNetwork(mtu=9000)).then(created(mtu=9000))

    @pytest.mark.parametrize(
        "spelling",
        [
            NET_A.upper(),
            NET_A.replace("-", ""),
            f"{{{NET_A}}}",
            f"urn:uuid:{NET_A}",
        ],
        ids=["upper-case", "no-dashes", "braces", "urn"],
    )
    def test_explicit_id_is_canonical(self, spelling: str) -> None:
        """A caller's id in any UUID spelling is stored in canonical lower case."""
        given().when(CreateNetwork(network_id=spelling)).then(created(NET_A))

    @pytest.mark.parametrize("spelling", [NET_A, NET_A.upper()], ids=["same", "upper-case"])
    def test_existing_id_conflicts(self, spelling: str) -> None:
        """An id that already names a network is refused, however it is spelled."""
        given(network_created(NET_A)).when(CreateNetwork(network_id=spelling)).then_rejected(
            Conflicting, match=f"network {NET_A} already exists"
        )

    def test_id_of_a_deleted_network_is_free(self) -> None:
        """The id of a deleted network can name a new one, which takes the freed VNI."""
        given(network_created(NET_A), network_deleted(NET_A)).when(CreateNetwork(network_id=NET_A)).then(
            created(NET_A)
        )

    @pytest.mark.parametrize(
        ("command", "match"),
        [
            (CreateNetwork(network_id="not-a-uuid"), "invalid UUID 'not-a-uuid'"),
            (CreateNetwork(ip_range="banana"), "invalid ip_range 'banana'"),
            (CreateNetwork(ip_range="10.0.0.0/33"), "invalid ip_range '10.0.0.0/33'"),
            (CreateNetwork(ip_range="10.0.0.0"), "invalid ip_range '10.0.0.0': the prefix length is missing"),
            (
                CreateNetwork(ip_range="10.0.0.0/7"),
                "invalid ip_range '10.0.0.0/7': the prefix must be between",
            ),
            (CreateNetwork(ip_range="10.0.0.0/31"), "invalid ip_range '10.0.0.0/31': the prefix must be"),
            (CreateNetwork(ip_range="10.0.0.1/32"), "invalid ip_range '10.0.0.1/32': the prefix must be"),
            (CreateNetwork(ip_range="10.0.0.5/24"), "invalid ip_range '10.0.0.5/24': host bits are set"),
            (CreateNetwork(gateway="10.0.1.1"), "invalid gateway '10.0.1.1'"),
            (
                CreateNetwork(gateway="10.0.1.1/24", ip_range="10.0.0.0/24"),
                "invalid gateway '10.0.1.1/24': outside",
            ),
            (
                CreateNetwork(gateway="10.0.0.0", ip_range="10.0.0.0/24"),
                "invalid gateway '10.0.0.0': the network",
            ),
            (
                CreateNetwork(gateway="10.0.0.255/24"),
                "invalid gateway '10.0.0.255/24': the network and broadcast",
            ),
            (
                CreateNetwork(gateway="10.0.0.1/16", ip_range="10.0.0.0/24"),
                "invalid gateway '10.0.0.1/16': the prefix",
            ),
            (CreateNetwork(gateway="router/24"), "invalid gateway 'router/24'"),
            (CreateNetwork(gateway="router", ip_range="10.0.0.0/24"), "invalid gateway 'router'"),
            (CreateNetwork(type="bridge"), "invalid network type 'bridge'"),
            (CreateNetwork(mtu=575), "invalid mtu 575"),
            (CreateNetwork(mtu=9001), "invalid mtu 9001"),
        ],
        ids=[
            "id-not-uuid",
            "range-not-cidr",
            "range-prefix-33",
            "range-no-prefix",
            "range-/7",
            "range-/31",
            "range-/32",
            "range-host-bits",
            "bare-gateway-without-range",
            "gateway-outside",
            "gateway-network-address",
            "gateway-broadcast",
            "gateway-other-prefix",
            "gateway-not-an-address",
            "bare-gateway-not-an-address",
            "type",
            "mtu-too-small",
            "mtu-too-large",
        ],
    )
    def test_invalid(self, command: CreateNetwork, match: str) -> None:
        """Malformed or out-of-bounds values are refused with a message naming the field."""
        given().when(command).then_rejected(Invalid, match=match)

    def test_gateway_prefix_out_of_bounds(self) -> None:
        """A gateway whose prefix implies a range outside /8../30 is refused."""
        given().when(CreateNetwork(gateway="10.0.0.1/31")).then_rejected(Invalid, match="the prefix must be")

    def test_vni_is_lowest_free(self) -> None:
        """A new network takes the lowest VNI left free by deleted networks."""
        history: list[Event] = [
            network_created(NET_A, vni=1),
            network_created(NET_B, vni=2),
            network_deleted(NET_A),
        ]
        given(*history).when(CreateNetwork()).then(created(vxlan_vni=1))
        given(*history[:2]).when(CreateNetwork()).then(created(vxlan_vni=3))

    def test_vni_exhausted(self) -> None:
        """With every VNI up to the policy's maximum taken, creation is refused."""
        given(network_created(NET_A, vni=1), network_created(NET_B, vni=2)).when(
            CreateNetwork(), policy=Policy(max_vni=2)
        ).then_rejected(Conflicting, match="no VXLAN identifier left: all 2 are in use")


class TestDeleteNetwork:
    """`DeleteNetwork`: only networks that exist and have no endpoint left."""

    def test_deletes(self) -> None:
        """An empty network is deleted."""
        given(network_created(NET_A)).when(DeleteNetwork(network_id=NET_A)).then(
            NetworkDeleted(network_id=NET_A)
        )

    def test_unknown(self) -> None:
        """Deleting a network that does not exist is NotFound."""
        given(network_created(NET_A), network_deleted(NET_A)).when(
            DeleteNetwork(network_id=NET_A)
        ).then_rejected(NotFound, match=f"network {NET_A} not found")

    def test_refused_while_endpoints_remain(self) -> None:
        """A network with endpoints, active or not, on any host, is kept and the count is given."""
        given(
            network_created(NET_A),
            endpoint_added(EP_1, hostname=HOST_A),
            endpoint_added(EP_2, hostname=HOST_B, ip="10.0.0.3/24"),
            activated(EP_2),
        ).when(DeleteNetwork(network_id=NET_A)).then_rejected(
            Conflicting, match=f"network {NET_A} (net-sc-{NET_A}) still has 2 endpoint(s)"
        )

    def test_allowed_once_endpoints_are_removed(self) -> None:
        """A network whose endpoints were removed can be deleted; other networks' endpoints do not count."""
        given(
            network_created(NET_A),
            network_created(NET_B, vni=2),
            endpoint_added(EP_1),
            endpoint_added(EP_2, network_id=NET_B),
            removed(EP_1),
        ).when(DeleteNetwork(network_id=NET_A)).then(NetworkDeleted(network_id=NET_A))


class TestAddEndpoint:
    """`AddEndpoint`: addresses, MACs, device names and optional activation."""

    def test_first_endpoint(self) -> None:
        """The first endpoint of a /24 with gateway .1 gets .2 and SAND's MAC for it."""
        given(network_created(NET_A)).when(add()).then(added())

    def test_next_endpoint_and_fields_carried(self) -> None:
        """The next endpoint gets the next address; hostname, API hostname and network MTU are carried."""
        command = add(hostname=HOST_B, host_ip=HOST_IPS[HOST_B], api_hostname="api.b")
        expected = added(
            "10.0.0.3/24",
            "02:84:0a:00:00:03",
            hostname=HOST_B,
            host_ip=HOST_IPS[HOST_B],
            api_hostname="api.b",
            mtu=9000,
        )
        given(network_created(NET_A, mtu=9000), endpoint_added(EP_1)).when(command).then(expected)

    def test_mac_from_address(self) -> None:
        """The default MAC is 02:84: followed by the four address octets in hex."""
        expected = added("198.18.5.2/24", "02:84:c6:12:05:02")
        given(network_created(NET_A, ip_range="198.18.5.0/24")).when(add()).then(expected)

    @pytest.mark.parametrize("requested", ["10.0.0.50", "10.0.0.50/24"], ids=["bare", "with-prefix"])
    def test_explicit_address(self, requested: str) -> None:
        """An explicit free address, bare or with the pool's prefix, is honoured."""
        expected = added("10.0.0.50/24", "02:84:0a:00:00:32")
        given(network_created(NET_A)).when(add(ipv4_address=requested)).then(expected)

    @pytest.mark.parametrize(
        ("requested", "match"),
        [
            ("10.0.1.5", "invalid ipv4_address '10.0.1.5': outside the network's range 10.0.0.0/24"),
            ("10.0.0.50/16", "invalid ipv4_address '10.0.0.50/16': the prefix must be /24"),
            ("10.0.0.300", "invalid ipv4_address '10.0.0.300': expected an IPv4 address"),
            ("10.0.0.0", "invalid ipv4_address '10.0.0.0': the network, broadcast and gateway"),
            ("10.0.0.1/24", "invalid ipv4_address '10.0.0.1/24': the network, broadcast and gateway"),
            ("10.0.0.255", "invalid ipv4_address '10.0.0.255': the network, broadcast and gateway"),
        ],
        ids=["outside", "wrong-prefix", "malformed", "network", "gateway", "broadcast"],
    )
    def test_invalid_address(self, requested: str, match: str) -> None:
        """An explicit address outside the range, with another prefix, or reserved is Invalid."""
        given(network_created(NET_A)).when(add(ipv4_address=requested)).then_rejected(Invalid, match=match)

    def test_taken_address(self) -> None:
        """An explicit address another endpoint holds is Conflicting."""
        given(network_created(NET_A), endpoint_added(EP_1, ip="10.0.0.9/24")).when(
            add(ipv4_address="10.0.0.9")
        ).then_rejected(Conflicting, match=f"ipv4_address 10.0.0.9 is already allocated to endpoint {EP_1}")

    def test_freed_address_can_be_asked_for(self) -> None:
        """An address freed by a removal can be requested explicitly."""
        given(
            network_created(NET_A), endpoint_added(EP_1, ip="10.0.0.9/24"), removed(EP_1, ip="10.0.0.9/24")
        ).when(add(ipv4_address="10.0.0.9")).then(added("10.0.0.9/24", "02:84:0a:00:00:09"))

    @pytest.mark.parametrize(
        ("ip_range", "capacity", "last"),
        [("10.0.0.0/30", 1, "10.0.0.2/30"), ("10.0.0.0/29", 5, "10.0.0.6/29")],
        ids=["/30", "/29"],
    )
    def test_range_fills_up(self, ip_range: str, capacity: int, last: str) -> None:
        """A range takes as many endpoints as it has hosts besides the gateway, and refuses the next."""
        mac = "02:84:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Interface(last).ip.packed)
        given(*filled(ip_range, capacity - 1)).when(add()).then(added(last, mac))
        given(*filled(ip_range, capacity)).when(add()).then_rejected(
            Conflicting, match=f"no free address left in {ip_range} ({capacity} endpoints at most)"
        )

    def test_unknown_network(self) -> None:
        """Adding to a network that does not exist is NotFound."""
        given(network_created(NET_A)).when(add(network_id=NET_B)).then_rejected(
            NotFound, match=f"network {NET_B} not found"
        )

    @pytest.mark.parametrize(
        ("fields", "match"),
        [
            ({"hostname": ""}, "the endpoint's hostname is empty"),
            ({"host_ip": "192.0.2"}, "invalid host_ip '192.0.2'"),
            ({"host_ip": "2001:db8::1"}, "invalid host_ip '2001:db8::1'"),
        ],
        ids=["no-hostname", "bad-host-ip", "ipv6-host-ip"],
    )
    def test_invalid_owner(self, fields: dict[str, str], match: str) -> None:
        """An endpoint needs its owner's hostname, and an IPv4 underlay address if any."""
        given(network_created(NET_A)).when(add(**fields)).then_rejected(Invalid, match=match)

    def test_no_host_ip(self) -> None:
        """An agent with no underlay address configured adds endpoints with an empty host_ip."""
        given(network_created(NET_A)).when(add(host_ip="")).then(added(host_ip=""))

    @pytest.mark.parametrize(
        ("requested", "stored"),
        [
            ("02:42:AC:11:00:02", "02:42:ac:11:00:02"),
            ("02-42-ac-11-00-02", "02:42:ac:11:00:02"),
            (" 02:42:ac:11:00:02 ", "02:42:ac:11:00:02"),
        ],
        ids=["upper-case", "dashes", "spaces"],
    )
    def test_explicit_mac(self, requested: str, stored: str) -> None:
        """An explicit MAC is stored in lower case with colons."""
        given(network_created(NET_A)).when(add(mac_address=requested)).then(added(mac=stored))

    @pytest.mark.parametrize(
        ("requested", "match"),
        [
            ("02:42:ac:11:00", "expected six hex octets"),
            ("02:42:ac:11:00:0g", "expected six hex octets"),
            ("0242.ac11.0002", "expected six hex octets"),
            ("01:00:5e:00:00:01", "a multicast address cannot name an endpoint"),
            ("ff:ff:ff:ff:ff:ff", "a multicast address cannot name an endpoint"),
            ("00:00:00:00:00:00", "the all-zero address is reserved"),
        ],
        ids=["five-octets", "not-hex", "dotted", "multicast", "broadcast", "all-zero"],
    )
    def test_invalid_mac(self, requested: str, match: str) -> None:
        """A malformed, multicast or all-zero MAC is Invalid, naming mac_address."""
        given(network_created(NET_A)).when(add(mac_address=requested)).then_rejected(
            Invalid, match=f"invalid mac_address {requested!r}: {match}"
        )

    def test_mac_used_in_network(self) -> None:
        """A MAC another endpoint of the network uses is Conflicting."""
        given(network_created(NET_A), endpoint_added(EP_1, mac="02:42:ac:11:00:02")).when(
            add(mac_address="02:42:AC:11:00:02")
        ).then_rejected(
            Conflicting, match=f"mac_address 02:42:ac:11:00:02 is already used by endpoint {EP_1}"
        )

    def test_mac_used_in_another_network(self) -> None:
        """A MAC used only in another network is accepted."""
        given(
            network_created(NET_A),
            network_created(NET_B, vni=2),
            endpoint_added(EP_1, network_id=NET_B, mac="02:42:ac:11:00:02"),
        ).when(add(mac_address="02:42:ac:11:00:02")).then(added(mac="02:42:ac:11:00:02"))

    def test_activate(self) -> None:
        """With `activate`, the endpoint is added and activated in one decision."""
        given(network_created(NET_A)).when(add(activate=True, target_netns_path=NETNS)).then(
            added(), EndpointActivated(endpoint_id=NEW_ID, network_id=NET_A, target_netns_path=NETNS)
        )

    def test_path_ignored_without_activate(self) -> None:
        """A namespace path without `activate` adds the endpoint inactive."""
        given(network_created(NET_A)).when(add(target_netns_path=NETNS)).then(added())

    @pytest.mark.parametrize(
        ("path", "match"),
        [
            (None, "missing ns_handle_path"),
            ("", "missing ns_handle_path"),
            ("var/run/netns/x", "invalid ns_handle_path 'var/run/netns/x'"),
            ("/var/run/../netns/x", "invalid ns_handle_path '/var/run/../netns/x'"),
            ("/var/run/netns/..", "invalid ns_handle_path '/var/run/netns/..'"),
            ("/var/run/netns/x\0", "invalid ns_handle_path"),
        ],
        ids=["none", "empty", "relative", "dot-dot", "dot-dot-last", "nul"],
    )
    def test_activate_needs_an_absolute_path(self, path: str | None, match: str) -> None:
        """Activation needs an absolute namespace path without `..`."""
        given(network_created(NET_A)).when(add(activate=True, target_netns_path=path)).then_rejected(
            Invalid, match=match
        )

    def test_endpoint_id_taken(self) -> None:
        """A fresh id that already names an endpoint is Conflicting."""
        given(network_created(NET_A), endpoint_added(NEW_ID)).when(add()).then_rejected(
            Conflicting, match=f"endpoint {NEW_ID} already exists"
        )

    def test_device_name_clash_on_a_host(self) -> None:
        """Two ids sharing their first 10 hex digits clash on one host, not on two."""
        twin = NEW_ID[:-1] + "f"
        history: list[Event] = [network_created(NET_A), endpoint_added(twin, hostname=HOST_B)]
        given(*history).when(add(hostname=HOST_B, host_ip=HOST_IPS[HOST_B])).then_rejected(
            Conflicting, match=f"device name sand{NEW_HEX} is taken on {HOST_B}"
        )
        given(*history).when(add()).then(added("10.0.0.3/24", "02:84:0a:00:00:03"))


class TestDeviceNames:
    """Device names and MACs derived from endpoint ids."""

    @pytest.mark.parametrize(
        ("endpoint_id", "target"),
        [
            (NEW_ID, f"sand{NEW_HEX}"),
            (NEW_ID.upper(), f"sand{NEW_HEX}"),
            ("ABCDEF0123456789", "sandabcdef0123"),
            ("web-1", "sand" + hashlib.sha256(b"web-1").hexdigest()[:10]),
        ],
        ids=["uuid", "upper-case-uuid", "hex", "not-hex"],
    )
    def test_names(self, endpoint_id: str, target: str) -> None:
        """The target veth is `sand` + 10 hex digits of the id; the overlay side adds `o` (15 chars)."""
        actual = (target_veth_name(endpoint_id), overlay_veth_name(endpoint_id))
        assert (target, target + "o") == actual
        assert 15 == len(actual[1])

    def test_overlay_macs_are_local_and_distinct(self) -> None:
        """Overlay MACs are locally administered unicast, stable per id and distinct across ids."""
        macs = [overlay_veth_mac(ident(n)) for n in range(50)]
        expected = (50, {"06"}, macs)
        assert expected == (
            len(set(macs)),
            {m[:2] for m in macs},
            [overlay_veth_mac(ident(n)) for n in range(50)],
        )


class TestRemoveEndpoint:
    """`RemoveEndpoint`."""

    def test_removal_carries_the_address(self) -> None:
        """Removal names the endpoint's network and address, so the address can be freed."""
        given(network_created(NET_A), endpoint_added(EP_1, ip="10.0.0.7/24"), activated(EP_1)).when(
            RemoveEndpoint(endpoint_id=EP_1)
        ).then(EndpointRemoved(endpoint_id=EP_1, network_id=NET_A, target_veth_ip="10.0.0.7/24"))

    def test_unknown(self) -> None:
        """Removing an endpoint that does not exist (or no longer does) is NotFound."""
        given(network_created(NET_A), endpoint_added(EP_1), removed(EP_1)).when(
            RemoveEndpoint(endpoint_id=EP_1)
        ).then_rejected(NotFound, match=f"endpoint {EP_1} not found")


class TestActivateEndpoint:
    """`ActivateEndpoint`."""

    def test_activates(self) -> None:
        """An inactive endpoint is activated in the given namespace."""
        given(network_created(NET_A), endpoint_added(EP_1), activated(EP_1), deactivated(EP_1)).when(
            ActivateEndpoint(endpoint_id=EP_1, target_netns_path="/run/netns/c2")
        ).then(EndpointActivated(endpoint_id=EP_1, network_id=NET_A, target_netns_path="/run/netns/c2"))

    def test_already_active_there(self) -> None:
        """Activating an endpoint already active in that namespace decides nothing."""
        given(network_created(NET_A), endpoint_added(EP_1), activated(EP_1)).when(
            ActivateEndpoint(endpoint_id=EP_1, target_netns_path=NETNS)
        ).then()

    def test_active_elsewhere(self) -> None:
        """Activating an endpoint active in another namespace is Conflicting."""
        given(network_created(NET_A), endpoint_added(EP_1), activated(EP_1)).when(
            ActivateEndpoint(endpoint_id=EP_1, target_netns_path="/run/netns/other")
        ).then_rejected(Conflicting, match=f"endpoint {EP_1} is already active in {NETNS}")

    @pytest.mark.parametrize(
        ("command", "error", "match"),
        [
            (
                ActivateEndpoint(endpoint_id=EP_2, target_netns_path=NETNS),
                NotFound,
                f"endpoint {EP_2} not found",
            ),
            (ActivateEndpoint(endpoint_id=EP_1, target_netns_path=""), Invalid, "missing ns_handle_path"),
            (
                ActivateEndpoint(endpoint_id=EP_1, target_netns_path="netns/x"),
                Invalid,
                "invalid ns_handle_path",
            ),
        ],
        ids=["unknown", "empty-path", "relative-path"],
    )
    def test_refused(self, command: ActivateEndpoint, error: type[Rejected], match: str) -> None:
        """Activation needs an existing endpoint and an absolute path."""
        given(network_created(NET_A), endpoint_added(EP_1)).when(command).then_rejected(error, match=match)


class TestDeactivateEndpoint:
    """`DeactivateEndpoint`."""

    def test_deactivates(self) -> None:
        """An active endpoint is deactivated, with the reason recorded."""
        given(network_created(NET_A), endpoint_added(EP_1), activated(EP_1)).when(
            DeactivateEndpoint(endpoint_id=EP_1, reason="container stopped")
        ).then(EndpointDeactivated(endpoint_id=EP_1, network_id=NET_A, reason="container stopped"))

    @pytest.mark.parametrize(
        "history",
        [
            [network_created(NET_A), endpoint_added(EP_1)],
            [network_created(NET_A), endpoint_added(EP_1), activated(EP_1), deactivated(EP_1)],
        ],
        ids=["never-active", "deactivated"],
    )
    def test_inactive_is_a_no_op(self, history: list[Event]) -> None:
        """Deactivating an inactive endpoint decides nothing (as in SAND since v0.5.10)."""
        given(*history).when(DeactivateEndpoint(endpoint_id=EP_1)).then()

    def test_unknown(self) -> None:
        """Deactivating an endpoint that does not exist is NotFound."""
        given(network_created(NET_A)).when(DeactivateEndpoint(endpoint_id=EP_1)).then_rejected(
            NotFound, match=f"endpoint {EP_1} not found"
        )


class TestNetworkName:
    def test_overlong_name_is_refused(self) -> None:
        """A network name over 255 characters is refused (it would bloat every read of the log)."""
        given().when(CreateNetwork(name="n" * 256), new_id=NET_A).then_rejected(Invalid, match="at most 255")

    def test_name_of_255_characters_is_kept(self) -> None:
        """A name of exactly 255 characters is accepted as given."""
        [event] = sand_es.commands.decide(
            sand_es.projections.EMPTY, CreateNetwork(name="n" * 255), new_id=NET_A
        )
        assert isinstance(event, NetworkCreated)
        assert "n" * 255 == event.name
