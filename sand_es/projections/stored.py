"""Snapshots as bytes: every view at one position, for an agent to start from instead of event 1.

The payload is msgpack (msgspec decodes it straight into the view structs), compressed
with zlib at its fastest level: ids and names repeat across the views, so it shrinks
about 3×, which is less to store in etcd and to read back, and zlib's own checksum
catches a damaged payload. The shared tables (`FrozenMap`) are stored as the plain
mappings they stand for, and a fold started from a decoded snapshot re-shards them once.
A snapshot is only usable by code whose views have the same shape: `SCHEMA` names that shape, derived from the
views' own type definitions, so a change to any view makes older snapshots
incompatible (ignored, never misread) without anyone remembering to bump a number.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Final

import msgspec

from sand_es.errors import LogCorrupt
from sand_es.projections.sharded import encode_hook
from sand_es.projections.snapshot import Snapshot

FORMAT_VERSION: Final = 2
"""Bumped by hand when the payload's framing changes (the views' shape is tracked by `SCHEMA`)."""


def _schema() -> str:
    shape = msgspec.json.encode(msgspec.json.schema(Snapshot))
    return f"v{FORMAT_VERSION}-{hashlib.sha256(shape).hexdigest()[:16]}"


SCHEMA: Final = _schema()
"""The identity of the views' shape this code reads and writes."""

_encoder = msgspec.msgpack.Encoder(enc_hook=encode_hook)
_decoder = msgspec.msgpack.Decoder(Snapshot)


def encode_snapshot(snapshot: Snapshot) -> bytes:
    """The payload of a stored snapshot."""
    return zlib.compress(_encoder.encode(snapshot), 1)


def decode_snapshot(payload: bytes) -> Snapshot:
    """A snapshot from its payload; `LogCorrupt` if it is not one of this schema."""
    try:
        return _decoder.decode(zlib.decompress(payload))
    except (zlib.error, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise LogCorrupt(f"undecodable snapshot: {exc}") from exc
