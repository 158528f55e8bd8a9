"""The SAND import's pure part: SAND keys → records → events, the invariant check, the chunks."""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import msgspec
import pytest

from migrations.base import Fact
from migrations.chunked import EVENT_OVERHEAD, chunk
from migrations.sandkeys import SandPool, allocated_ordinals, read_keyspace
from migrations.sandmap import Leak, Translation, check, translate
from sand_es.commands import naming
from sand_es.errors import Invalid
from sand_es.events import CODEC, EndpointActivated, EndpointAdded, Event, NetworkCreated
from sand_es.ports import TxnLimits
from tests.support.sand_fixture import FIXTURE_PREFIX, LEAKED, fixture_kvs, fixture_records

E = TypeVar("E", bound=Event)

NET_1 = "11111111-1111-4111-8111-111111111111"
NET_2 = "22222222-2222-4222-8222-222222222222"
EP_1 = "aaaaaaaa-0000-4000-8000-000000000001"
EP_2 = "bbbbbbbb-0000-4000-8000-000000000002"
AT = "2026-11-27T19:54:42.60998902Z"


def sand_network(nid: str, vni: int, *, ip_range: str = "198.18.0.0/24", **fields: Any) -> tuple[str, bytes]:
    """A `/network/<nid>` key as the Go agent writes it."""
    gateway = str(ipaddress.IPv4Network(ip_range, strict=False).network_address + 1)
    gateway = f"{gateway}/{ip_range.partition('/')[2]}"
    record: dict[str, Any] = {"id": nid, "created_at": AT, "name": f"net-{vni}", "type": "overlay"}
    record |= {"vxlan_vni": vni, "ip_range": ip_range, "gateway": gateway, **fields}
    return f"/sc-net/network/{nid}", json.dumps(record).encode()


def sand_endpoint(
    eid: str, nid: str, ip: str, *, host: str = "hostA", **fields: Any
) -> list[tuple[str, bytes]]:
    """An endpoint's two keys, `/network-endpoints/…` and `/node-endpoints/…`, holding one record."""
    mac = naming.target_veth_mac(ipaddress.IPv4Interface(ip).ip)
    record: dict[str, Any] = {"id": eid, "network_id": nid, "hostname": host, "host_ip": "192.0.2.1"}
    record |= {"created_at": AT, "target_veth_ip": ip, "target_veth_mac": mac, "active": False, **fields}
    raw = json.dumps(record).encode()
    return [(f"/sc-net/network-endpoints/{nid}/{eid}", raw), (f"/sc-net/node-endpoints/{host}/{eid}", raw)]


def translated(kvs: list[tuple[str, bytes]]) -> Translation:
    return translate(read_keyspace("/sc-net", kvs))


def subject(event: Event) -> str:
    """The id of what an event is about: its endpoint's, else its network's."""
    endpoint_id: str | None = getattr(event, "endpoint_id", None)
    return endpoint_id or event.network_id


def events_of(translation: Translation, kind: type[E]) -> dict[str, E]:
    """The translation's events of one kind, by the id of what they are about."""
    return {subject(f.event): f.event for f in translation.facts if isinstance(f.event, kind)}


def near(at: datetime, go_time: str) -> bool:
    """Whether `at` is the Go timestamp, to the microsecond Python keeps."""
    return abs(at - msgspec.convert(go_time, datetime)) <= timedelta(microseconds=1)


FIXTURE = translate(read_keyspace(FIXTURE_PREFIX, fixture_kvs()))


class TestReadKeyspace:
    """Sorting SAND's keys by kind, and merging an endpoint's two copies."""

    def test_fixture_keys_are_sorted_by_kind(self) -> None:
        """The fixture holds 2 networks, 3 endpoints (each twice), 2 pools and 4 host links."""
        keyspace = read_keyspace(FIXTURE_PREFIX, fixture_kvs())
        actual = (len(keyspace.networks), len(keyspace.endpoints), len(keyspace.pools), keyspace.derived_keys)
        assert (2, 3, 2, 4) == actual
        assert ((), (), ()) == (keyspace.problems, keyspace.warnings, keyspace.ignored_keys)

    def test_bitset_positions(self) -> None:
        """The fixture's pool of "demo" marks the network, the gateway, .2 to .5 and the broadcast."""
        pool = read_keyspace(FIXTURE_PREFIX, fixture_kvs()).pools[LEAKED[0]]
        assert [0, 1, 2, 3, 4, 5, 255] == allocated_ordinals(pool)

    def test_unreadable_bitset_is_invalid(self) -> None:
        """A bitset that is not whole 64-bit words is refused with a message."""
        with pytest.raises(Invalid, match="whole number of 64-bit words"):
            allocated_ordinals(SandPool(id="n", address_range="198.18.0.0/24", bit_set="AAAA"))

    def test_copies_that_differ_import_the_owners(self) -> None:
        """When an endpoint's two copies differ, the `/node-endpoints/` one wins, with a warning."""
        [by_network, by_node] = sand_endpoint(EP_1, NET_1, "198.18.0.2/24")
        active = {**json.loads(by_node[1]), "active": True, "target_netns_path": "/var/run/netns/c1"}
        keyspace = read_keyspace("/sc-net", [by_network, (by_node[0], json.dumps(active).encode())])
        assert (True, 1) == (keyspace.endpoints[EP_1].record.active, len(keyspace.warnings))
        assert "the owner's copy" in keyspace.warnings[0]

    def test_endpoint_under_one_key_only_is_kept(self) -> None:
        """An endpoint whose second put never happened is still imported, with a warning."""
        [by_network, _] = sand_endpoint(EP_1, NET_1, "198.18.0.2/24")
        keyspace = read_keyspace("/sc-net", [by_network])
        assert [EP_1] == list(keyspace.endpoints)
        assert "cut half-way" in keyspace.warnings[0]

    @pytest.mark.parametrize(
        ("key", "value", "problem"),
        [
            (f"/sc-net/network/{NET_2}", sand_network(NET_1, 1)[1], "differs from its key"),
            (f"/sc-net/network/{NET_1}", b"{not json", "not a SAND network"),
            (
                f"/sc-net/node-endpoints/hostB/{EP_1}",
                sand_endpoint(EP_1, NET_1, "198.18.0.2/24")[1][1],
                "hostname",
            ),
        ],
        ids=["network id", "not json", "endpoint host"],
    )
    def test_records_that_do_not_match_their_key_are_problems(
        self, key: str, value: bytes, problem: str
    ) -> None:
        """A value that cannot be read, or that contradicts its key, is reported by key."""
        [found] = read_keyspace("/sc-net", [(key, value)]).problems
        assert key in found
        assert problem in found


class TestTranslateFixture:
    """The fixture, key by key: every network, VNI, endpoint, address and MAC is kept."""

    @pytest.mark.parametrize(("nid", "sand"), fixture_records("network").items())
    def test_every_network_keeps_its_fields(self, nid: str, sand: dict[str, Any]) -> None:
        """A network keeps its id, name, type, range, gateway, VNI and namespace path."""
        e = events_of(FIXTURE, NetworkCreated)[nid]
        expected = [
            sand[f] for f in ("id", "name", "type", "ip_range", "gateway", "vxlan_vni", "ns_handle_path")
        ]
        assert expected == [
            e.network_id,
            e.name,
            e.type,
            e.ip_range,
            e.gateway,
            e.vxlan_vni,
            e.ns_handle_path,
        ]
        assert 1450 == e.mtu

    @pytest.mark.parametrize(("eid", "sand"), fixture_records("network-endpoints").items())
    def test_every_endpoint_keeps_its_fields(self, eid: str, sand: dict[str, Any]) -> None:
        """An endpoint keeps its network, host, address, MAC, device names and overlay MAC."""
        e = events_of(FIXTURE, EndpointAdded)[eid]
        fields = ("network_id", "hostname", "host_ip", "target_veth_ip", "target_veth_mac")
        assert [sand[f] for f in fields] == [getattr(e, f) for f in fields]
        for name in ("target_veth_name", "overlay_veth_name", "overlay_veth_mac"):
            assert getattr(e, name) == (sand[name] or getattr(naming, name)(eid))

    @pytest.mark.parametrize(("eid", "sand"), fixture_records("network-endpoints").items())
    def test_active_endpoints_are_activated_in_their_namespace(self, eid: str, sand: dict[str, Any]) -> None:
        """An active endpoint is followed by its activation in its target namespace; a passive one is not."""
        activated = events_of(FIXTURE, EndpointActivated).get(eid)
        actual = (activated is not None, activated.target_netns_path if activated else "")
        assert (sand["active"], sand["target_netns_path"]) == actual

    def test_creation_times_are_kept(self) -> None:
        """Each event is stamped with its SAND record's `created_at`, so the API reports it unchanged."""
        records = fixture_records("network") | fixture_records("network-endpoints")
        for fact in FIXTURE.facts:
            assert near(fact.at, records[subject(fact.event)]["created_at"])

    def test_events_follow_sands_history(self) -> None:
        """The events are in SAND's creation order ("second" was made after demo's first endpoints)."""
        stamps = [fact.at for fact in FIXTURE.facts]
        assert sorted(stamps) == stamps

    def test_nothing_else_is_made(self) -> None:
        """2 networks, 3 endpoints and 2 activations: the fixture's, and nothing more."""
        actual = (FIXTURE.networks, FIXTURE.endpoints, FIXTURE.active, len(FIXTURE.facts))
        assert (2, 3, 2, 7) == actual

    def test_the_deleted_endpoints_address_is_a_leak(self) -> None:
        """The one bit set by no endpoint is reported as a leak, not imported."""
        assert (Leak(LEAKED[0], "demo", LEAKED[1]),) == FIXTURE.leaks
        assert () == FIXTURE.warnings

    def test_leaked_address_is_free_in_the_views(self) -> None:
        """sand-es's pool holds the endpoints' addresses only: the leaked one is the next free."""
        pool = check(FIXTURE).addresses.get(LEAKED[0])
        assert pool is not None
        leaked = int(ipaddress.IPv4Address(LEAKED[1]))
        assert (None, leaked) == (pool.holder(leaked), pool.next_free())


class TestTranslateEdges:
    """What the import does with records SAND left in odd states."""

    def test_docker_bindings_are_reported_not_imported(self) -> None:
        """Docker plugin keys make no event; the warning names the endpoints Docker made."""
        binding = {
            "DockerNetworkID": "d",
            "SandNetworkID": NET_1,
            "DockerEndpointID": "x",
            "SandEndpointID": EP_1,
        }
        kvs = [
            sand_network(NET_1, 1),
            *sand_endpoint(EP_1, NET_1, "198.18.0.2/24"),
            (
                "/sc-net/docker-networks/d",
                json.dumps({"DockerNetworkID": "d", "SandNetworkID": NET_1}).encode(),
            ),
            ("/sc-net/docker-endpoints/x", json.dumps(binding).encode()),
        ]
        t = translated(kvs)
        assert (1, 1, 2) == (t.networks, t.endpoints, len(t.facts))
        [warning] = t.warnings
        assert "2 Docker plugin binding(s)" in warning
        assert EP_1 in warning

    def test_unusable_network_without_endpoints_is_skipped(self) -> None:
        """A network SAND stored before failing to make its pool (no endpoint) is left out, with a warning."""
        t = translated([sand_network(NET_1, 1), sand_network(NET_2, 2, gateway="10.9.9.1/24")])
        assert ([NET_1], 1) == (list(events_of(t, NetworkCreated)), len(t.warnings))
        assert f"/sc-net/network/{NET_2}" in t.warnings[0]
        assert "not imported" in t.warnings[0]

    def test_unusable_network_with_endpoints_refuses(self) -> None:
        """A network that cannot be represented but holds endpoints stops the import."""
        kvs = [sand_network(NET_1, 1, ip_range="198.18.0.0/31"), *sand_endpoint(EP_1, NET_1, "198.18.0.1/31")]
        with pytest.raises(Invalid, match=r"/sc-net/network/.*prefix must be between"):
            translated(kvs)

    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"target_veth_mac": "zz"}, "invalid mac_address"),
            ({"target_veth_ip": "198.18.0.2"}, "prefix length is missing"),
            ({"hostname": ""}, "hostname is empty"),
            ({"host_ip": "host-a"}, "invalid host_ip"),
            ({"target_veth_name": "a-name-longer-than-15"}, "target_veth_name"),
            ({"active": True, "target_netns_path": "relative/path"}, "invalid ns_handle_path"),
        ],
        ids=["mac", "ip", "hostname", "host ip", "device name", "netns"],
    )
    def test_malformed_endpoint_refuses_naming_its_key(self, fields: dict[str, Any], message: str) -> None:
        """A malformed endpoint stops the import; the message names its key and the field."""
        kvs = [sand_network(NET_1, 1), *sand_endpoint(EP_1, NET_1, "198.18.0.2/24", **fields)]
        with pytest.raises(Invalid, match=message) as raised:
            translated(kvs)
        assert "/sc-net/node-endpoints/" in str(raised.value)

    def test_active_without_namespace_is_imported_inactive(self) -> None:
        """An endpoint marked active with no namespace path is imported passive, with a warning."""
        t = translated([sand_network(NET_1, 1), *sand_endpoint(EP_1, NET_1, "198.18.0.2/24", active=True)])
        assert (0, 1) == (t.active, len(t.warnings))

    def test_endpoint_stamped_before_its_network_follows_it(self) -> None:
        """An endpoint whose agent's clock was behind still comes after its network; its time is kept."""
        early = "2026-11-27T19:00:00Z"
        kvs = [
            sand_network(NET_1, 1, created_at="2026-11-27T20:00:00Z"),
            sand_network(NET_2, 2, ip_range="10.0.0.0/24", created_at="2026-11-27T19:30:00Z"),
            *sand_endpoint(EP_1, NET_1, "198.18.0.2/24", created_at=early),
        ]
        facts = translated(kvs).facts
        assert [NET_2, NET_1, EP_1] == [subject(f.event) for f in facts]
        assert near(facts[2].at, early)

    def test_stored_mtu_is_kept(self) -> None:
        """A network record carrying an MTU keeps it, and its endpoints get it."""
        t = translated([sand_network(NET_1, 1, mtu=9000), *sand_endpoint(EP_1, NET_1, "198.18.0.2/24")])
        assert (9000, 9000) == (
            events_of(t, NetworkCreated)[NET_1].mtu,
            events_of(t, EndpointAdded)[EP_1].mtu,
        )

    def test_endpoint_missing_from_the_allocator_is_warned(self) -> None:
        """An endpoint whose bit SAND never set is imported holding its address, with a warning."""
        pool = {"id": NET_1, "address_range": "198.18.0.0/24", "address_count": 256}
        pool["bit_set"] = (
            "AAAAAAAAAQAAAAAAAAAAAwAAAAAAAAAAAAAAAAAAAACAAAAAAAAAAA=="  # network, gateway, broadcast
        )
        kvs = [
            sand_network(NET_1, 1),
            *sand_endpoint(EP_1, NET_1, "198.18.0.2/24"),
            (f"/sc-net/ipalloc/{NET_1}", json.dumps(pool).encode()),
        ]
        [warning] = translated(kvs).warnings
        assert "198.18.0.2" in warning
        assert "not marked taken" in warning


class TestCheck:
    """Folding the events refuses what sand-es could not hold, naming who clashes."""

    def test_fixture_passes(self) -> None:
        """The fixture's events fold into 2 networks and 3 endpoints."""
        snapshot = check(FIXTURE)
        assert (2, 3) == (len(snapshot.networks.networks), len(snapshot.endpoints.endpoints))

    @pytest.mark.parametrize(
        ("kvs", "message"),
        [
            ([sand_network(NET_1, 7), sand_network(NET_2, 7)], f"VNI 7 is used by networks {NET_1}, {NET_2}"),
            (
                [
                    sand_network(NET_1, 1),
                    *sand_endpoint(EP_1, NET_1, "198.18.0.2/24"),
                    *sand_endpoint(EP_2, NET_1, "198.18.0.2/24", target_veth_mac="02:00:00:00:00:01"),
                ],
                f"address 198.18.0.2/24 in network {NET_1} is held by {EP_1} and {EP_2}",
            ),
            (
                [
                    sand_network(NET_1, 1),
                    *sand_endpoint(EP_1, NET_1, "198.18.0.2/24"),
                    *sand_endpoint(EP_2, NET_1, "198.18.0.3/24", target_veth_mac="02:84:c6:12:00:02"),
                ],
                f"MAC 02:84:c6:12:00:02 is used by endpoints {EP_1} and {EP_2}",
            ),
            (
                [sand_network(NET_1, 1), *sand_endpoint(EP_1, NET_2, "198.18.0.2/24")],
                f"endpoint {EP_1} belongs to network {NET_2}, which is not imported",
            ),
            (
                [sand_network(NET_1, 1), *sand_endpoint(EP_1, NET_1, "198.18.0.1/24")],
                "its network's own, broadcast or gateway address",
            ),
            (
                [sand_network(NET_1, 1), *sand_endpoint(EP_1, NET_1, "10.0.0.2/24")],
                "is not in its network's range",
            ),
            (
                [
                    sand_network(NET_1, 1),
                    *sand_endpoint(EP_1, NET_1, "198.18.0.2/24", overlay_veth_name="sand1234"),
                    *sand_endpoint(EP_2, NET_1, "198.18.0.3/24", overlay_veth_name="sand1234"),
                ],
                f"device sand1234 on hostA belongs to endpoints {EP_1} and {EP_2}",
            ),
        ],
        ids=[
            "vni",
            "address",
            "mac",
            "missing network",
            "reserved address",
            "outside range",
            "overlay device",
        ],
    )
    def test_broken_invariant_refuses(self, kvs: list[tuple[str, bytes]], message: str) -> None:
        """Each broken invariant refuses the whole import with a message naming both parties."""
        with pytest.raises(Invalid, match="nothing was appended") as raised:
            check(translated(kvs))
        assert message in str(raised.value)


class TestChunk:
    """Packing units into appends that fit one etcd transaction, in order, units whole."""

    def units(self, count: int, size: int = 2) -> list[tuple[Fact, ...]]:
        at = datetime(2026, 1, 1, tzinfo=UTC)
        return [
            tuple(
                Fact(
                    NetworkCreated(network_id=f"n{i}-{j}", name="x", ip_range="r", gateway="g", vxlan_vni=1),
                    at,
                )
                for j in range(size)
            )
            for i in range(count)
        ]

    @pytest.mark.parametrize("max_ops", [4, 5, 9, 128])
    def test_chunks_respect_the_operation_limit(self, max_ops: int) -> None:
        """Every chunk is one command whose events, command key and head fit `max_ops`; units stay whole."""
        limits = TxnLimits(max_ops=max_ops)
        commands = chunk(self.units(10), limits, number=1, actor="me")
        assert all(limits.ops(1, len(c.envelopes)) <= max_ops for c in commands)
        assert all(len(c.envelopes) % 2 == 0 for c in commands)
        ids = [e.data.network_id for c in commands for e in c.envelopes]
        assert [f"n{i}-{j}" for i in range(10) for j in range(2)] == ids

    def test_chunks_respect_the_byte_limit(self) -> None:
        """A byte budget splits the appends too, counting each event's stored size and overhead."""
        limits = TxnLimits(max_bytes=2 * (EVENT_OVERHEAD + 400))
        commands = chunk(self.units(6, size=1), limits, number=1, actor="me")
        sizes = [sum(len(CODEC.encode(e)) + EVENT_OVERHEAD for e in c.envelopes) for c in commands]
        assert len(commands) > 1
        assert max(sizes) <= limits.max_bytes

    def test_command_and_event_ids_are_deterministic(self) -> None:
        """Chunk i is `migration:0001:i`; a second build makes the same envelopes (a re-run's check)."""
        first = chunk(self.units(4), TxnLimits(max_ops=4), number=1, actor="me")
        again = chunk(self.units(4), TxnLimits(max_ops=4), number=1, actor="me")
        assert [f"migration:0001:{i}" for i in range(4)] == [c.command_id for c in first]
        assert first == again

    def test_unit_larger_than_a_transaction_is_invalid(self) -> None:
        """A unit that cannot fit one append is refused before anything is appended."""
        with pytest.raises(Invalid, match="too large for one etcd transaction"):
            chunk(self.units(1, size=5), TxnLimits(max_ops=4), number=1, actor="me")
