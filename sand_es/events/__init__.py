"""Events: the immutable facts of the log, their envelope and their codec."""

from sand_es.events.codec import CODEC, Codec, Envelope
from sand_es.events.types import (
    EVENT_TYPES,
    VNI_LIMIT,
    EndpointActivated,
    EndpointAdded,
    EndpointDeactivated,
    EndpointRemoved,
    Event,
    NetworkCreated,
    NetworkDeleted,
    tag_of,
)

__all__ = [
    "CODEC",
    "EVENT_TYPES",
    "VNI_LIMIT",
    "Codec",
    "EndpointActivated",
    "EndpointAdded",
    "EndpointDeactivated",
    "EndpointRemoved",
    "Envelope",
    "Event",
    "NetworkCreated",
    "NetworkDeleted",
    "tag_of",
]

from sand_es.events import chain
from sand_es.events.records import START, Position, Record

__all__ += ["START", "Position", "Record", "chain"]
