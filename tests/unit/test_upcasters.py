"""Schema evolution: old stored events still decode into today's types (the per-event migration).

Keyspace moves live in `migrations/`; a change of one event's shape lives in
`sand_es/events/upcast.py`, because every read needs it. No event is past version 1
yet, so the decode path is shown with a synthetic table, and the real tables are
held to the rule that makes that path work for every stored version.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from sand_es.errors import LogCorrupt
from sand_es.events import EVENT_TYPES, Codec, EndpointAdded, tag_of
from sand_es.events.upcast import CURRENT_VERSIONS, UPCASTERS, EventData

#: `endpoint.added` as a hypothetical v1 stored it: the address and MAC under other names, no MTU.
ADDED_V1 = {
    "event": "endpoint.added",
    "endpoint_id": "15397ba2-555e-43dc-be33-509892dec105",
    "network_id": "59957e62-591a-49d4-bd12-f93a30a9c911",
    "hostname": "hostA",
    "host_ip": "192.0.2.1",
    "ip": "198.18.0.2/24",
    "mac": "02:84:c6:12:00:02",
    "target_veth_name": "sandd76e",
    "overlay_veth_name": "sandba6d",
    "overlay_veth_mac": "62:4d:78:ab:f8:70",
}


def rename_address(data: EventData) -> EventData:
    """v1 → v2: `ip`/`mac` became SAND's `target_veth_ip`/`target_veth_mac`."""
    kept = {k: v for k, v in data.items() if k not in ("ip", "mac")}
    return {**kept, "target_veth_ip": data["ip"], "target_veth_mac": data["mac"]}


def add_mtu(data: EventData) -> EventData:
    """v2 → v3: the MTU became explicit; events before it used SAND's 1450."""
    return {"mtu": 1450, **data}


def stored(data: dict[str, Any], v: int) -> bytes:
    """An envelope as an older agent wrote it."""
    envelope = {"id": "e1", "v": v, "at": "2026-11-27T19:54:43Z", "actor": "hostA", "command_id": "c1"}
    return msgspec.json.encode({**envelope, "data": data})


CODEC_V3 = Codec(
    versions={**CURRENT_VERSIONS, "endpoint.added": 3},
    upcasters={("endpoint.added", 1): rename_address, ("endpoint.added", 2): add_mtu},
)


class TestOldVersionsDecode:
    """A stored old version passes through each upcaster in turn and comes out as today's type."""

    def test_v1_decodes_into_todays_type(self) -> None:
        """A v1 `endpoint.added` is upcast twice and decoded as the current `EndpointAdded`, at v3."""
        envelope = CODEC_V3.decode(stored(ADDED_V1, v=1))
        kept = {k: v for k, v in ADDED_V1.items() if k not in ("ip", "mac")}
        today = kept | {
            "target_veth_ip": "198.18.0.2/24",
            "target_veth_mac": "02:84:c6:12:00:02",
            "mtu": 1450,
        }
        assert (msgspec.convert(today, EndpointAdded), 3) == (envelope.data, envelope.v)

    def test_middle_version_takes_only_the_later_upcasters(self) -> None:
        """A v2 event (already `target_veth_ip`) skips the v1 upcaster and gets only v2 → v3."""
        v2 = rename_address(ADDED_V1)
        envelope = CODEC_V3.decode(stored(v2, v=2))
        assert msgspec.convert(add_mtu(v2), EndpointAdded) == envelope.data

    def test_missing_step_is_corrupt(self) -> None:
        """A version with no upcaster to the next one cannot be read: LogCorrupt, not a guess."""
        codec = Codec(versions={**CURRENT_VERSIONS, "endpoint.added": 3}, upcasters={})
        with pytest.raises(LogCorrupt, match=r"no upcaster from endpoint\.added v1"):
            codec.decode(stored(ADDED_V1, v=1))


class TestRealTables:
    """The shipped version and upcaster tables are complete and consistent."""

    @pytest.mark.parametrize("tag", [tag_of(t) for t in EVENT_TYPES])
    def test_every_older_version_has_an_upcaster(self, tag: str) -> None:
        """Each event tag has an upcaster from every version below its current one."""
        missing = [v for v in range(1, CURRENT_VERSIONS[tag]) if (tag, v) not in UPCASTERS]
        assert [] == missing

    def test_no_upcaster_is_stray(self) -> None:
        """Every upcaster starts from a version below its tag's current one (none is dead code)."""
        stray = [(tag, v) for tag, v in UPCASTERS if not 1 <= v < CURRENT_VERSIONS.get(tag, 0)]
        assert [] == stray
