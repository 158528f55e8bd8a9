"""The events, their envelope and the codec that stores them, with upcasting on the way in."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest

from sand_es.errors import LogCorrupt
from sand_es.events import (
    CODEC,
    EVENT_TYPES,
    Codec,
    EndpointActivated,
    EndpointAdded,
    EndpointDeactivated,
    EndpointRemoved,
    Envelope,
    Event,
    NetworkCreated,
    NetworkDeleted,
    tag_of,
)
from sand_es.events.upcast import CURRENT_VERSIONS, EventData
from tests.unit.gwt import ACTOR, AT

EVENTS: list[tuple[Event, str]] = [
    (
        NetworkCreated(
            network_id="0b8c5a4e-2f61-4d4b-9c0e-7a1d3e5f6a01",
            name="backend",
            ip_range="198.18.0.0/16",
            gateway="198.18.0.1/16",
            vxlan_vni=4242,
            mtu=9000,
            ns_handle_path="/var/run/netns/sc-ns-0b8c5a4e-2f61-4d4b-9c0e-7a1d3e5f6a01",
        ),
        "network.created",
    ),
    (NetworkDeleted(network_id="0b8c5a4e-2f61-4d4b-9c0e-7a1d3e5f6a01"), "network.deleted"),
    (
        EndpointAdded(
            endpoint_id="a1000000-0000-4000-8000-000000000001",
            network_id="0b8c5a4e-2f61-4d4b-9c0e-7a1d3e5f6a01",
            hostname="host-b",
            host_ip="192.0.2.11",
            api_hostname="api.host-b",
            target_veth_ip="198.18.1.0/16",
            target_veth_mac="02:84:c6:12:01:00",
            target_veth_name="sanda100000000",
            overlay_veth_name="sanda100000000o",
            overlay_veth_mac="06:01:02:03:04:05",
            mtu=9000,
        ),
        "endpoint.added",
    ),
    (
        EndpointActivated(
            endpoint_id="a1000000-0000-4000-8000-000000000001",
            network_id="0b8c5a4e-2f61-4d4b-9c0e-7a1d3e5f6a01",
            target_netns_path="/var/run/docker/netns/1234abcd",
        ),
        "endpoint.activated",
    ),
    (
        EndpointDeactivated(
            endpoint_id="a1000000-0000-4000-8000-000000000001",
            network_id="0b8c5a4e-2f61-4d4b-9c0e-7a1d3e5f6a01",
            reason="namespace vanished",
        ),
        "endpoint.deactivated",
    ),
    (
        EndpointRemoved(
            endpoint_id="a1000000-0000-4000-8000-000000000001",
            network_id="0b8c5a4e-2f61-4d4b-9c0e-7a1d3e5f6a01",
            target_veth_ip="198.18.1.0/16",
        ),
        "endpoint.removed",
    ),
]
EVENT_IDS = [tag for _, tag in EVENTS]

NETWORK_V1: dict[str, Any] = {
    "event": "network.created",
    "network_id": "0b8c5a4e-2f61-4d4b-9c0e-7a1d3e5f6a01",
    "name": "backend",
    "ip_range": "198.18.0.0/24",
    "gateway": "198.18.0.1/24",
    "vxlan_vni": 7,
}


def envelope_of(event: Event, codec: Codec = CODEC) -> Envelope:
    """`event` in an envelope with fixed metadata."""
    return codec.envelope(event, event_id="event-1", at=AT, actor=ACTOR, command_id="command-1")


def stored(data: dict[str, Any], *, v: int = 1) -> bytes:
    """The stored bytes of an envelope around `data`, written by hand (as an older agent would)."""
    return msgspec.json.encode(
        {
            "id": "event-1",
            "v": v,
            "at": "2026-11-27T20:52:24.123456Z",
            "actor": ACTOR,
            "command_id": "command-1",
            "data": data,
        }
    )


def network_codec(*upcasters: tuple[int, Any], version: int = 2) -> Codec:
    """A codec where `network.created` is at `version`, with upcasters from the given versions."""
    return Codec(
        versions={**CURRENT_VERSIONS, "network.created": version},
        upcasters={("network.created", v): fn for v, fn in upcasters},
    )


class TestEventTypes:
    """The closed set of event types and their stored tags."""

    def test_tags_are_the_six_stored_names(self) -> None:
        """Exactly six event types exist, tagged with their stored names."""
        expected = {tag for _, tag in EVENTS}
        actual = {tag_of(event_type) for event_type in EVENT_TYPES}
        assert expected == actual

    @pytest.mark.parametrize(("event", "tag"), EVENTS, ids=EVENT_IDS)
    def test_events_are_frozen(self, event: Event, tag: str) -> None:
        """No field of a stored fact can be reassigned."""
        field = event.__struct_fields__[0]
        with pytest.raises(AttributeError):
            setattr(event, field, "changed")

    @pytest.mark.parametrize(("event", "tag"), EVENTS, ids=EVENT_IDS)
    def test_envelope_type_is_the_tag(self, event: Event, tag: str) -> None:
        """An envelope reports its event's stored tag as its type."""
        assert tag == envelope_of(event).type


class TestCodecRoundTrip:
    """Encoding an envelope and decoding the bytes gives it back."""

    @pytest.mark.parametrize(("event", "tag"), EVENTS, ids=EVENT_IDS)
    def test_round_trip(self, event: Event, tag: str) -> None:
        """Every event type survives encode then decode unchanged, metadata included."""
        envelope = envelope_of(event)
        assert envelope == CODEC.decode(CODEC.encode(envelope))

    @pytest.mark.parametrize(("event", "tag"), EVENTS, ids=EVENT_IDS)
    def test_stored_tag_is_under_data_event(self, event: Event, tag: str) -> None:
        """The stored JSON names the event type under `data.event`, at schema version 1."""
        raw = msgspec.json.decode(CODEC.encode(envelope_of(event)))
        assert (tag, 1) == (raw["data"]["event"], raw["v"])

    def test_stored_envelope_fields(self) -> None:
        """The stored envelope carries id, version, time, actor, command id, the event data and its link."""
        raw = msgspec.json.decode(CODEC.encode(envelope_of(NetworkDeleted(network_id="n-1"))))
        expected = {
            "id": "event-1",
            "v": 1,
            "at": "2026-11-27T20:52:24.123456Z",
            "actor": ACTOR,
            "command_id": "command-1",
            "data": {"event": "network.deleted", "network_id": "n-1"},
            "prev": "",
        }
        assert expected == raw

    def test_unknown_fields_are_ignored(self) -> None:
        """A field added by a newer agent at the same version does not stop an older one reading."""
        expected = envelope_of(NetworkCreated(**{k: v for k, v in NETWORK_V1.items() if k != "event"}))
        actual = CODEC.decode(stored({**NETWORK_V1, "colour": "blue"}))
        assert expected == actual


class TestUpcasting:
    """Events stored at an older schema version are upcast into today's types when read."""

    def test_v1_is_upcast_to_today(self) -> None:
        """A stored v1 event whose shape changed in v2 decodes into today's type via the upcaster."""

        def rename_vni(data: EventData) -> EventData:
            renamed = {k: v for k, v in data.items() if k != "vni"}
            return {**renamed, "vxlan_vni": data["vni"]}

        codec = network_codec((1, rename_vni))
        old = {k: v for k, v in NETWORK_V1.items() if k != "vxlan_vni"} | {"vni": 9}
        expected = Envelope(
            id="event-1",
            v=2,
            at=AT,
            actor=ACTOR,
            command_id="command-1",
            data=msgspec.convert({**NETWORK_V1, "vxlan_vni": 9}, NetworkCreated),
        )
        assert expected == codec.decode(stored(old, v=1))

    def test_v1_that_fits_today_still_goes_through_the_upcaster(self) -> None:
        """A v1 event whose meaning changed (not its shape) is upcast, not taken as it is."""
        codec = network_codec((1, lambda data: {**data, "name": data["name"].upper()}))
        actual = codec.decode(stored(NETWORK_V1, v=1))
        assert (actual.data.name, actual.v) == ("BACKEND", 2)  # type: ignore[union-attr]

    def test_current_version_takes_the_fast_path(self) -> None:
        """An event stored at the current version is decoded without calling any upcaster."""
        calls: list[EventData] = []

        def spy(data: EventData) -> EventData:
            calls.append(data)
            return data

        codec = network_codec((1, spy))
        envelope = envelope_of(msgspec.convert(NETWORK_V1, NetworkCreated), codec)
        assert (envelope, []) == (codec.decode(codec.encode(envelope)), calls)

    def test_upcasters_chain_in_version_order(self) -> None:
        """A v1 event under a v3 schema passes through the v1 then the v2 upcaster."""
        codec = network_codec(
            (2, lambda data: {**data, "name": data["name"] + "+v2"}),
            (1, lambda data: {**data, "name": data["name"] + "+v1"}),
            version=3,
        )
        actual = codec.decode(stored(NETWORK_V1, v=1))
        assert (actual.data.name, actual.v) == ("backend+v1+v2", 3)  # type: ignore[union-attr]

    def test_upcaster_may_drop_the_tag(self) -> None:
        """An upcaster that returns the data without `event` still yields the event of its tag."""

        def strip_tag(data: EventData) -> EventData:
            return {k: v for k, v in data.items() if k != "event"}

        actual = network_codec((1, strip_tag)).decode(stored(NETWORK_V1, v=1))
        assert msgspec.convert(NETWORK_V1, NetworkCreated) == actual.data


class TestCorruptLog:
    """Whatever cannot be read back into today's types is `LogCorrupt`, with a message that says why."""

    @pytest.mark.parametrize(
        ("codec", "raw", "message"),
        [
            (network_codec(), stored(NETWORK_V1, v=1), "no upcaster from network.created v1"),
            (CODEC, stored(NETWORK_V1, v=2), "network.created v2 was written by a newer sand-es"),
            (
                CODEC,
                stored({**NETWORK_V1, "event": "network.renamed"}),
                "unknown event type 'network.renamed'",
            ),
            (CODEC, stored({k: v for k, v in NETWORK_V1.items() if k != "event"}), "unknown event type None"),
            (CODEC, b'{"id": "event-1", "v": ', "undecodable event"),
            (CODEC, b"[1, 2, 3]", "undecodable event"),
            (CODEC, b"", "undecodable event"),
            (CODEC, b'{"id": "event-1",}', "undecodable event"),
            (CODEC, stored({**NETWORK_V1, "vxlan_vni": 0}), "event event-1 does not fit its schema"),
            (CODEC, stored({**NETWORK_V1, "vxlan_vni": 2**24}), "$.vxlan_vni"),
            (CODEC, stored({**NETWORK_V1, "mtu": 100}), "$.mtu"),
            (CODEC, stored({k: v for k, v in NETWORK_V1.items() if k != "gateway"}), "gateway"),
            (CODEC, stored({**NETWORK_V1, "name": 12}), "$.name"),
        ],
        ids=[
            "missing-upcaster",
            "newer-version",
            "unknown-tag",
            "no-tag",
            "truncated-json",
            "not-an-object",
            "empty",
            "broken-json",
            "vni-zero",
            "vni-over-24-bits",
            "mtu-too-small",
            "missing-field",
            "wrong-type",
        ],
    )
    def test_raises_log_corrupt(self, codec: Codec, raw: bytes, message: str) -> None:
        """Unreadable stored bytes raise `LogCorrupt` naming the problem."""
        with pytest.raises(LogCorrupt, match=re.escape(message)):
            codec.decode(raw)

    def test_envelope_missing_metadata(self) -> None:
        """An envelope without its actor is undecodable."""
        raw = msgspec.json.encode(
            {"id": "e", "v": 1, "at": "2026-11-27T20:52:24Z", "command_id": "c", "data": NETWORK_V1}
        )
        with pytest.raises(LogCorrupt, match="undecodable event"):
            CODEC.decode(raw)
