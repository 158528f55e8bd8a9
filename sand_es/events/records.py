"""Positions in the log and the records read from it."""

from __future__ import annotations

import msgspec

from sand_es.events.codec import Envelope


class Position(msgspec.Struct, frozen=True, order=True, gc=False):
    """A place in the log: the sequence number of the last event and its etcd revision.

    `seq` numbers events 1, 2, 3… with no gap; it orders the log and keys the stored
    events. `rev` is the etcd revision of the transaction that wrote event `seq`;
    several events share a revision when one transaction wrote them. Revisions have
    gaps (other keys move them too), so code compares them, never counts on `+1`.
    """

    seq: int = 0
    rev: int = 0
    digest: str = ""
    """The digest of event `seq`'s stored bytes: the next append links to it (see `chain`)."""


START = Position()


class Record(msgspec.Struct, frozen=True, gc=False):
    """One event as read from the log, with its position."""

    seq: int
    rev: int
    envelope: Envelope
    digest: str = ""
    """Its stored bytes' digest; adapters fill it in at least on the last record of a batch."""

    @property
    def position(self) -> Position:
        """The log position just after this record."""
        return Position(self.seq, self.rev, self.digest)
