"""Tamper evidence: every stored event names the digest of the one before it.

Each event's envelope carries `prev`, the SHA-256 of the previous event's stored bytes
(exactly as stored: what a verifier reads back), and the log's head records the digest
of the last event. Editing, deleting or reordering any stored event breaks a link that
`verify` finds: the next event's `prev`, or for the last event the head. The chain is
made by the log adapters at append time, so no caller can forget it.
"""

from __future__ import annotations

import hashlib
from typing import Final

GENESIS: Final = ""
"""The `prev` of event 1: nothing came before it."""


def digest(raw: bytes) -> str:
    """The digest of one stored event (lowercase hex SHA-256 of its bytes)."""
    return hashlib.sha256(raw).hexdigest()


def head_value(seq: int, last_digest: str) -> bytes:
    """What the head key holds: the last event's number and digest."""
    return f"{seq} {last_digest}".encode()


def parse_head(value: bytes) -> tuple[int, str]:
    """(seq, digest) from a head value; a head written before the chain existed has no digest."""
    seq, _, last_digest = value.decode().partition(" ")
    return int(seq), last_digest
