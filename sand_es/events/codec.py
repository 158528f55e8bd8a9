"""The one codec of the log: envelope <-> bytes, with upcasting on the way in.

Stored values are JSON (readable with `etcdctl get`), one envelope per key:

    {"id": "...", "v": 1, "at": "2026-11-27T20:52:24.123456Z", "actor": "host-a",
     "command_id": "...", "data": {"event": "network.created", ...}}

`data.event` is the event's tag and `v` its schema version. Decoders are built once;
the common case (current version) is a single typed decode, and only an event of
another version takes the slow path through the upcasters.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec

from sand_es.errors import LogCorrupt
from sand_es.events.types import Event, tag_of
from sand_es.events.upcast import CURRENT_VERSIONS, UPCASTERS, EventData, Upcaster


class Envelope(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One stored event with its metadata.

    `actor` is the hostname of the agent that appended it; `command_id` the command
    that produced it (several events may share one); `at` the appending agent's clock.
    """

    id: str
    v: int
    at: datetime
    actor: str
    command_id: str
    data: Event
    prev: str = ""
    """The digest of the previous event's stored bytes (`chain`): set by the log at append time."""

    @property
    def type(self) -> str:
        """The event's type tag."""
        return tag_of(type(self.data))


class _LooseEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    v: int
    at: datetime
    actor: str
    command_id: str
    data: dict[str, Any]
    prev: str = ""


class Codec:
    """Encodes envelopes and decodes them, upcasting older schema versions."""

    def __init__(
        self,
        *,
        versions: Mapping[str, int] = CURRENT_VERSIONS,
        upcasters: Mapping[tuple[str, int], Upcaster] = UPCASTERS,
    ) -> None:
        self._versions = versions
        self._upcasters = upcasters
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(Envelope)
        self._loose_decoder = msgspec.json.Decoder(_LooseEnvelope)

    def envelope(self, event: Event, *, event_id: str, at: datetime, actor: str, command_id: str) -> Envelope:
        """Wrap an event in an envelope stamped with its current schema version."""
        version = self._versions[tag_of(type(event))]
        return Envelope(id=event_id, v=version, at=at, actor=actor, command_id=command_id, data=event)

    def encode(self, envelope: Envelope) -> bytes:
        """The stored bytes of an envelope."""
        return self._encoder.encode(envelope)

    def decode(self, raw: bytes) -> Envelope:
        """Decode stored bytes into today's types; raise `LogCorrupt` if impossible."""
        try:
            envelope = self._decoder.decode(raw)
        except msgspec.ValidationError:
            return self._decode_other_version(raw)
        except msgspec.DecodeError as exc:
            raise LogCorrupt(f"undecodable event: {exc}") from exc
        if envelope.v != self._versions[envelope.type]:
            return self._decode_other_version(raw)
        return envelope

    def _decode_other_version(self, raw: bytes) -> Envelope:
        try:
            loose = self._loose_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            raise LogCorrupt(f"undecodable event: {exc}") from exc
        data = self._upcast(loose.data, loose.v)
        try:
            event: Event = msgspec.convert(data, Event)
        except msgspec.ValidationError as exc:
            raise LogCorrupt(f"event {loose.id} does not fit its schema: {exc}") from exc
        return Envelope(
            id=loose.id,
            v=self._versions[tag_of(type(event))],
            at=loose.at,
            actor=loose.actor,
            command_id=loose.command_id,
            data=event,
            prev=loose.prev,
        )

    def _upcast(self, data: EventData, version: int) -> EventData:
        tag = data.get("event")
        if not isinstance(tag, str) or tag not in self._versions:
            raise LogCorrupt(f"unknown event type {tag!r}")
        current = self._versions[tag]
        if version > current:
            raise LogCorrupt(
                f"{tag} v{version} was written by a newer sand-es (this one reads up to v{current})"
            )
        while version < current:
            upcaster = self._upcasters.get((tag, version))
            if upcaster is None:
                raise LogCorrupt(f"no upcaster from {tag} v{version}")
            data = {**upcaster(data), "event": tag}
            version += 1
        return data


#: The codec every adapter uses unless a test injects another one.
CODEC = Codec()
